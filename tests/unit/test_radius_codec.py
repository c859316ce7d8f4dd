"""The RADIUS codec (control/radius/codec.py) and the relay's checks (relay.py)."""

from __future__ import annotations

import hmac
import ipaddress
import os
import random

import pytest

from espfast.control.errors import RemoteProtocolError
from espfast.control.radius import Attr, Code, RadiusAnswer, RadiusError, RadiusRelay
from espfast.control.radius.codec import (
    MICROSOFT,
    MS_MPPE_RECV_KEY,
    MS_MPPE_SEND_KEY,
    Request,
    access_request,
    accounting_request,
    decode,
    eap_attributes,
    eap_message,
    encode_answer,
    framed_ip,
    md5,
    mppe_decrypt,
    mppe_encrypt,
    msk,
    verify_answer,
)
from espfast.control.radius.relay import answer_of

SECRET = b"xyzzy5461"


def server_answer(code: int, request: Request, attrs: list[tuple[int, bytes]], secret: bytes,
                  *, with_mac: bool = True) -> bytes:  # fmt: skip
    return encode_answer(code, request, list(attrs), secret, with_mac=with_mac)


def test_rfc2865_7_1_access_accept_authenticator() -> None:
    # RFC 2865 §7.1: "nemo" logs in; secret xyzzy5461. The Access-Request and the server's
    # Access-Accept, byte for byte; its Response Authenticator verifies with our check.
    req = bytes.fromhex(
        "010000380f403f9473978057bd83d5cb98f4227a"
        "01066e656d6f02120dbe708d93d413ce3196e43f782a0aee0406c0a80110"
        "0506" "00000003"
    )  # fmt: skip
    accept = bytes.fromhex(
        "0200002686fe220e7624ba2a1005f6bf9b55e0b2"
        "0606000000010f06000000000e06c0a80103"
    )  # fmt: skip
    p = decode(req)
    assert p.code == Code.ACCESS_REQUEST and p.get(Attr.USER_NAME) == b"nemo"
    auth = md5(accept[:4] + req[4:20] + accept[20:] + SECRET)
    assert auth == accept[4:20]
    a = decode(accept)
    assert a.get(Attr.SERVICE_TYPE) == bytes.fromhex("00000001")


def test_access_round_trip_and_message_authenticator() -> None:
    eap = bytes([2, 7]) + (300).to_bytes(2, "big") + bytes(296)
    attrs = [(Attr.USER_NAME, b"carol"), *eap_attributes(eap)]
    assert [len(v) for a, v in attrs[1:]] == [253, 47]  # RFC 3579 §3.1 split
    req = access_request(9, os.urandom(16), SECRET, attrs)
    p = decode(req.data)
    assert eap_message(p) == eap
    # the Message-Authenticator verifies as a server checks it
    ma = p.get(Attr.MESSAGE_AUTHENTICATOR)
    zeroed = req.data.replace(ma or b"", bytes(16))
    assert hmac.new(SECRET, zeroed, "md5").digest() == ma
    challenge = [(Attr.STATE, b"s1"), (Attr.EAP_MESSAGE, b"\x01\x08\x00\x05\x01")]
    answer = server_answer(Code.ACCESS_CHALLENGE, req, challenge, SECRET)
    got = verify_answer(answer, req, SECRET)
    assert got.get(Attr.STATE) == b"s1"


@pytest.mark.parametrize("what", ["secret", "authenticator", "mac", "no-mac", "identifier"])
def test_forged_answers_refused(what: str) -> None:
    req = access_request(1, os.urandom(16), SECRET, [(Attr.USER_NAME, b"u")])
    attrs = [(Attr.EAP_MESSAGE, b"\x03\x01\x00\x04")]
    if what == "secret":
        data = server_answer(Code.ACCESS_ACCEPT, req, attrs, b"wrong")
    elif what == "no-mac":
        data = server_answer(Code.ACCESS_ACCEPT, req, attrs, SECRET, with_mac=False)
    else:
        data = bytearray(server_answer(Code.ACCESS_ACCEPT, req, attrs, SECRET))
        if what == "authenticator":
            data[5] ^= 1
        elif what == "mac":
            data[-1] ^= 1  # the Message-Authenticator (also breaks the response auth)
            data[4:20] = md5(bytes(data[:4]) + req.authenticator + bytes(data[20:])
                                     + SECRET)  # fmt: skip
        else:
            data[1] ^= 1
        data = bytes(data)
    with pytest.raises(RadiusError):
        verify_answer(data, req, SECRET)


def test_accounting_authenticators() -> None:
    req = accounting_request(3, SECRET, [(Attr.ACCT_STATUS_TYPE, (1).to_bytes(4, "big"))])
    # RFC 2866 §3: MD5(Code+Identifier+Length+16 zero octets+attributes+secret)
    d = req.data
    assert md5(d[:4] + bytes(16) + d[20:] + SECRET) == d[4:20]
    answer = server_answer(Code.ACCOUNTING_RESPONSE, req, [], SECRET, with_mac=False)
    assert verify_answer(answer, req, SECRET).code == Code.ACCOUNTING_RESPONSE


def test_mppe_round_trip_and_msk_order() -> None:
    req_auth = os.urandom(16)
    recv, send = os.urandom(32), os.urandom(32)
    for key in (recv, send, b"k" * 15, b"k" * 16):
        enc = mppe_encrypt(key, SECRET, req_auth, b"\x80\x01")
        assert mppe_decrypt(enc, SECRET, req_auth) == key
    req = access_request(5, req_auth, SECRET, [(Attr.USER_NAME, b"u")])

    def vsa(t: int, key: bytes, salt: bytes) -> tuple[int, bytes]:
        v = mppe_encrypt(key, SECRET, req_auth, salt)
        return Attr.VENDOR_SPECIFIC, MICROSOFT.to_bytes(4, "big") + bytes([t, len(v) + 2]) + v

    data = server_answer(Code.ACCESS_ACCEPT, req, [
        (Attr.EAP_MESSAGE, b"\x03\x05\x00\x04"), (Attr.FRAMED_IP_ADDRESS, bytes([198, 19, 100, 7])),
        vsa(MS_MPPE_SEND_KEY, send, b"\x80\x02"), vsa(MS_MPPE_RECV_KEY, recv, b"\x80\x03"),
    ], SECRET)  # fmt: skip
    p = verify_answer(data, req, SECRET)
    assert msk(p, SECRET, req_auth) == recv + send  # strongSwan's eap-radius order
    a = answer_of(p, SECRET, req_auth)
    assert a.framed_ip == ipaddress.IPv4Address("198.19.100.7")
    relay = RadiusRelay("gw", "198.18.0.2[4500]", "198.18.0.1[4500]")
    assert relay.answered(a) == (b"\x03\x05\x00\x04", True)


def test_mppe_refuses_malformed() -> None:
    with pytest.raises(RadiusError):
        mppe_decrypt(b"\x00\x01" + bytes(16), SECRET, bytes(16))  # salt without high bit
    with pytest.raises(RadiusError):
        mppe_decrypt(b"\x80\x01" + bytes(15), SECRET, bytes(16))


@pytest.mark.parametrize(("value", "want"), [
    (bytes([198, 19, 100, 9]), "198.19.100.9"), (b"\xff\xff\xff\xfe", None),
    (b"\xff\xff\xff\xff", None),
])  # fmt: skip
def test_framed_ip(value: bytes, want: str | None) -> None:
    p = decode(bytes([2, 0, 0, 26]) + bytes(16) + bytes([8, 6]) + value)
    got = framed_ip(p)
    assert (str(got) if got else None) == want


@pytest.mark.parametrize("value", [bytes(4), bytes([224, 0, 0, 1]), bytes([127, 0, 0, 1]), b"\x01"])
def test_framed_ip_refused(value: bytes) -> None:
    p = decode(
        bytes([2, 0, 0, 20 + 2 + len(value)]) + bytes(16) + bytes([8, 2 + len(value)]) + value
    )
    with pytest.raises(RadiusError):
        framed_ip(p)


def test_relay_state_echo_and_refusals() -> None:
    relay = RadiusRelay("gw", "c", "d")
    first = relay.request(b"\x02\x01\x00\x0a\x01carol", b"carol")
    assert (Attr.STATE, b"st") not in first
    challenge = RadiusAnswer(Code.ACCESS_CHALLENGE, b"\x01\x02\x00\x06\x1a\x01", b"st")
    assert relay.answered(challenge) == (challenge.eap, False)
    assert (Attr.STATE, b"st") in relay.request(b"\x02\x02\x00\x06\x1a\x02", b"carol")
    for bad in (RadiusAnswer(Code.ACCESS_REJECT, b"\x04\x02\x00\x04"), RadiusAnswer(None),
                RadiusAnswer(Code.ACCESS_ACCEPT, b"\x03\x02\x00\x04"),  # no MSK
                RadiusAnswer(Code.ACCESS_CHALLENGE, b"\x03\x02\x00\x04"),  # not a request
                RadiusAnswer(Code.ACCESS_CHALLENGE)):  # fmt: skip
        with pytest.raises(RemoteProtocolError):
            relay.answered(bad)


def test_fuzz_any_bytes_parse_or_refuse() -> None:
    rnd = random.Random(3579)
    req = access_request(1, bytes(16), SECRET, [(Attr.USER_NAME, b"u")])
    good = server_answer(
        Code.ACCESS_CHALLENGE, req, [(Attr.EAP_MESSAGE, b"\x01\x01\x00\x04")], SECRET
    )
    for i in range(3000):
        if i % 2:
            data = bytearray(good)
            for _ in range(rnd.randint(1, 4)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        else:
            data = bytearray(rnd.randbytes(rnd.randint(0, 80)))
        try:
            p = decode(bytes(data))
            framed_ip(p)
            msk(p, SECRET, bytes(16))
            verify_answer(bytes(data), req, SECRET)
        except RemoteProtocolError:
            pass
