"""EAP-MSCHAPv2 (draft-kamath-pppext-eap-mschapv2-02) over the MS-CHAPv2 algorithms of
RFC 2759 §8, with the MSK from the MPPE master keys of RFC 3079 §3.

The EAP-MSCHAPv2 Type-Data (after EAP Type 26):

+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
|    OpCode     | MS-CHAPv2-ID  |  MS-Length (EAP Length - 5)   |
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
Challenge (1): Value-Size=16 | Challenge(16) | Name
Response (2):  Value-Size=49 | Peer-Challenge(16) | Reserved(8) | NT-Response(24)
               | Flags(1) | Name
Success (3):   request: "S=<40 hex digits> M=<message>"; response: nothing more
Failure (4):   request: "E=691 R=0 C=<32 hex> V=3 M=<message>"; response: OpCode alone
               (then the authenticator sends EAP-Failure)

Secrets: only NT password hashes are kept (MD4 of the UTF-16LE password); responses are
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import IntEnum

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from ..errors import RemoteProtocolError
from .md4 import md4

CHALLENGE_LEN = 16
NT_RESPONSE_LEN = 24
RESPONSE_VALUE_LEN = 49  # Peer-Challenge + Reserved + NT-Response + Flags
MSK_LEN = 64

# RFC 2759 §8.7 and RFC 3079 §3.4: the constants of the key derivations.
_AUTH_MAGIC1 = b"Magic server to client signing constant"
_AUTH_MAGIC2 = b"Pad to make it do more than one iteration"
_MPPE_MAGIC1 = b"This is the MPPE Master Key"
_MPPE_MAGIC2 = (b"On the client side, this is the send key; "
                b"on the server side, it is the receive key.")  # fmt: skip
_MPPE_MAGIC3 = (b"On the client side, this is the receive key; "
                b"on the server side, it is the send key.")  # fmt: skip
_SHS_PAD1 = bytes(40)
_SHS_PAD2 = b"\xf2" * 40


class OpCode(IntEnum):
    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4
    CHANGE_PASSWORD = 7


def nt_password_hash(password: str) -> bytes:
    """RFC 2759 §8.3 NtPasswordHash: MD4 of the password in UTF-16LE."""
    return md4(password.encode("utf-16-le"))


def challenge_hash(peer_challenge: bytes, auth_challenge: bytes, username: bytes) -> bytes:
    """RFC 2759 §8.2: SHA-1(PeerChallenge | AuthenticatorChallenge | UserName)[:8], the
    user name without any "DOMAIN\\" part."""
    _, _, user = username.rpartition(b"\\")
    return hashlib.sha1(peer_challenge + auth_challenge + user).digest()[:8]  # noqa: S324


def _des_key(seven: bytes) -> bytes:
    """RFC 2759 §8.6 DesEncrypt: 56 key bits spread over 8 octets (parity bits unset;
    DES ignores them)."""
    bits = int.from_bytes(seven, "big")
    return bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """RFC 2759 §8.5: the 24-octet response, three single-DES encryptions of the
    challenge keyed by the zero-padded 21-octet password hash. Single DES is TripleDES
    with K1 = K2 = K3 (``cryptography`` keeps DES only in that form)."""
    padded = password_hash + bytes(21 - len(password_hash))
    out = b""
    for i in range(3):
        key = _des_key(padded[7 * i : 7 * i + 7])
        # One 8-octet block, as RFC 2759 defines it: ECB is the protocol, not a choice.
        enc = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # noqa: S305
        out += enc.update(challenge) + enc.finalize()
    return out


def generate_nt_response(auth_challenge: bytes, peer_challenge: bytes, username: bytes,
                         password_hash: bytes) -> bytes:  # fmt: skip
    """RFC 2759 §8.1 GenerateNTResponse (from the password hash)."""
    return challenge_response(challenge_hash(peer_challenge, auth_challenge, username),
                              password_hash)  # fmt: skip


def authenticator_response(password_hash: bytes, nt_response: bytes, peer_challenge: bytes,
                           auth_challenge: bytes, username: bytes) -> bytes:  # fmt: skip
    """RFC 2759 §8.7 GenerateAuthenticatorResponse: the 42 characters "S=<hex>"."""
    digest = hashlib.sha1(md4(password_hash) + nt_response + _AUTH_MAGIC1).digest()  # noqa: S324
    chal = challenge_hash(peer_challenge, auth_challenge, username)
    digest = hashlib.sha1(digest + chal + _AUTH_MAGIC2).digest()  # noqa: S324
    return b"S=" + digest.hex().upper().encode()


def master_key(password_hash: bytes, nt_response: bytes) -> bytes:
    """RFC 3079 §3.4 GetMasterKey."""
    return hashlib.sha1(md4(password_hash) + nt_response + _MPPE_MAGIC1).digest()[:16]  # noqa: S324


def asymmetric_start_key(master: bytes, *, send: bool, server: bool) -> bytes:
    """RFC 3079 §3.4 GetAsymmetricStartKey, 16 octets."""
    magic = _MPPE_MAGIC3 if send == server else _MPPE_MAGIC2
    return hashlib.sha1(master + _SHS_PAD1 + magic + _SHS_PAD2).digest()[:16]  # noqa: S324


def msk(password_hash: bytes, nt_response: bytes) -> bytes:
    """The EAP-MSCHAPv2 MSK, the same on both ends: the server's MasterReceiveKey |
    MasterSendKey, zero-padded to 64 octets (as Microsoft's and strongSwan's peers)."""
    master = master_key(password_hash, nt_response)
    receive = asymmetric_start_key(master, send=False, server=True)
    send = asymmetric_start_key(master, send=True, server=True)
    return receive + send + bytes(MSK_LEN - 32)


# -- the packets ---------------------------------------------------------------------------


def pack(opcode: int, ms_id: int, body: bytes) -> bytes:
    """Type-Data of an EAP-MSCHAPv2 packet (MS-Length counts from OpCode: EAP length - 5)."""
    return bytes([opcode, ms_id]) + (4 + len(body)).to_bytes(2, "big") + body


def unpack(data: bytes) -> tuple[int, int, bytes]:
    """(OpCode, MS-CHAPv2-ID, rest) of Type-Data; Success/Failure responses are one octet."""
    if len(data) == 1 and data[0] in (OpCode.SUCCESS, OpCode.FAILURE):
        return data[0], 0, b""
    if len(data) < 4:
        raise RemoteProtocolError(f"EAP-MSCHAPv2 packet of {len(data)} bytes")
    ms_len = int.from_bytes(data[2:4], "big")
    if ms_len != len(data):
        raise RemoteProtocolError(f"EAP-MSCHAPv2 MS-Length {ms_len}, packet {len(data)} bytes")
    return data[0], data[1], bytes(data[4:])


class MschapV2Server:
    """The authenticator: issue a challenge, check the response against the user's NT
    hash, prove our knowledge of it (the authenticator response), derive the MSK."""

    def __init__(self, challenge: bytes, ms_id: int, name: bytes = b"espfast") -> None:
        if len(challenge) != CHALLENGE_LEN:
            raise ValueError("the challenge is 16 octets")
        self.challenge = challenge
        self.ms_id = ms_id
        self.name = name
        self.msk: bytes | None = None

    def challenge_data(self) -> bytes:
        return pack(OpCode.CHALLENGE, self.ms_id,
                    bytes([CHALLENGE_LEN]) + self.challenge + self.name)  # fmt: skip

    @staticmethod
    def parse_response(rest: bytes) -> tuple[bytes, bytes, bytes]:
        """(Peer-Challenge, NT-Response, Name) of a Response's body."""
        if len(rest) < 1 + RESPONSE_VALUE_LEN or rest[0] != RESPONSE_VALUE_LEN:
            raise RemoteProtocolError("EAP-MSCHAPv2 response of the wrong size")
        value = rest[1 : 1 + RESPONSE_VALUE_LEN]
        return value[:16], value[24:48], bytes(rest[1 + RESPONSE_VALUE_LEN :])

    def verify(self, peer_challenge: bytes, nt_response: bytes, name: bytes,
               password_hash: bytes) -> bytes | None:  # fmt: skip
        """The Success request's Type-Data if ``nt_response`` proves ``password_hash``
        (constant-time comparison), else None. Sets ``msk`` on success."""
        expected = generate_nt_response(self.challenge, peer_challenge, name, password_hash)
        if not hmac.compare_digest(expected, nt_response):
            return None
        self.msk = msk(password_hash, nt_response)
        auth = authenticator_response(password_hash, nt_response, peer_challenge,
                                      self.challenge, name)  # fmt: skip
        return pack(OpCode.SUCCESS, self.ms_id, auth + b" M=Welcome")

    def failure_data(self, challenge: bytes) -> bytes:
        """A Failure request's Type-Data (draft-kamath-pppext-eap-mschapv2 §2, RFC 2759
        §6): error 691 (authentication failure), no retry (R=0), a fresh challenge as
        the format asks, version 3. The same for a wrong password and an unknown user."""
        if len(challenge) != CHALLENGE_LEN:
            raise ValueError("the challenge is 16 octets")
        text = f"E=691 R=0 C={challenge.hex().upper()} V=3 M=Authentication failed"
        return pack(OpCode.FAILURE, self.ms_id, text.encode())


def parse_failure(rest: bytes) -> int | None:
    """The error code (E=) of a Failure request's message, or None if it has none."""
    for token in rest.split(b" "):
        if token.startswith(b"E=") and token[2:].isdigit():
            return int(token[2:])
    return None


class MschapV2Peer:
    """The peer: answer the challenge with our NT hash, check the server's proof."""

    def __init__(self, name: bytes, password_hash: bytes, peer_challenge: bytes) -> None:
        self.name = name
        self.password_hash = password_hash
        self.peer_challenge = peer_challenge
        self.expected_auth = b""
        self.nt_response = b""
        self.msk: bytes | None = None

    def respond(self, ms_id: int, rest: bytes) -> bytes:
        """The Response Type-Data to a Challenge's body."""
        if len(rest) < 1 + CHALLENGE_LEN or rest[0] != CHALLENGE_LEN:
            raise RemoteProtocolError("EAP-MSCHAPv2 challenge of the wrong size")
        challenge = rest[1 : 1 + CHALLENGE_LEN]
        self.nt_response = generate_nt_response(challenge, self.peer_challenge, self.name,
                                                self.password_hash)  # fmt: skip
        self.expected_auth = authenticator_response(self.password_hash, self.nt_response,
                                                    self.peer_challenge, challenge,
                                                    self.name)  # fmt: skip
        value = self.peer_challenge + bytes(8) + self.nt_response + b"\x00"
        return pack(OpCode.RESPONSE, ms_id, bytes([RESPONSE_VALUE_LEN]) + value + self.name)

    def check_success(self, rest: bytes) -> bool:
        """Whether a Success request carries the authenticator response we expect."""
        if not self.expected_auth:
            return False
        auth = rest.split(b" ", 1)[0]
        if not hmac.compare_digest(auth.upper(), self.expected_auth):
            return False
        self.msk = msk(self.password_hash, self.nt_response)
        return True
