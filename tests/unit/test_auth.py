"""AUTH computation (RFC 7296 §2.15): signed octets and PSK, checked against HMAC done
by hand, and identity matching."""

import hashlib
import hmac

from espfast.control.auth import KEY_PAD, id_matches, psk_auth, psk_verify, signed_octets
from espfast.control.constants import IdType
from espfast.control.crypto import Prf


def test_signed_octets_layout() -> None:
    prf = Prf("sha256")
    message = b"IKE_SA_INIT request bytes"
    nonce = b"N" * 32
    id_body = bytes([IdType.FQDN, 0, 0, 0]) + b"a.example.org"
    sk_p = b"k" * 32
    octets = signed_octets(message, nonce, prf, sk_p, id_body)
    maced = hmac.new(sk_p, id_body, hashlib.sha256).digest()
    assert octets == message + nonce + maced


def test_psk_auth_known_answer() -> None:
    # AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>), by hand:
    secret, octets = b"s3cret", b"octets"
    pad_key = hmac.new(secret, b"Key Pad for IKEv2", hashlib.sha384).digest()
    expected = hmac.new(pad_key, octets, hashlib.sha384).digest()
    prf = Prf("sha384")
    assert KEY_PAD == b"Key Pad for IKEv2"
    assert psk_auth(prf, secret, octets) == expected
    assert psk_verify(prf, secret, octets, expected)
    assert not psk_verify(prf, secret, octets, expected[:-1] + b"\x00")
    assert not psk_verify(prf, b"other", octets, expected)


def test_identity_matching() -> None:
    fqdn = (IdType.FQDN, b"gw.example.org")
    assert id_matches(fqdn, (IdType.FQDN, b"*.example.org"))
    assert id_matches(fqdn, (IdType.FQDN, b"GW.example.org"))
    assert not id_matches(fqdn, (IdType.FQDN, b"other.example.org"))
    assert not id_matches(fqdn, (IdType.RFC822_ADDR, b"gw.example.org"))
    # Undecodable identities fall back to an exact comparison.
    assert id_matches((200, b"x"), (200, b"x"))
    assert not id_matches((200, b"x"), (200, b"y"))
