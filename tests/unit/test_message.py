"""Payload codec and message framing (RFC 7296 §3)."""

import contextlib
from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espfast.control.constants import (
    AuthMethod,
    CertEncoding,
    DhGroup,
    ExchangeType,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformType,
)
from espfast.control.errors import RemoteProtocolError
from espfast.control.events import TrafficSelector
from espfast.control.message import (
    HEADER_LEN,
    Message,
    check_rules,
    decode,
    encode,
)
from espfast.control.payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    DeletePayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    Transform,
    TsiPayload,
    TsrPayload,
    UnknownPayload,
    VendorIdPayload,
)

SA = SaPayload(
    (
        Proposal(1, ProtocolId.IKE, b"", (
            Transform(TransformType.ENCR, 20, 256), Transform(TransformType.PRF, 6),
            Transform(TransformType.DH, 20),
        )),
        Proposal(2, ProtocolId.ESP, b"\x01\x02\x03\x04", (
            Transform(TransformType.ENCR, 12, 128), Transform(TransformType.INTEG, 12),
            Transform(TransformType.ESN, 0),
        )),
    )
)  # fmt: skip
TS = TrafficSelector.from_network("198.18.1.0/24")
TS6 = TrafficSelector.from_network("2001:2::/64", ip_protocol=17, ports=(500, 4500))

ALL_PAYLOADS = (
    SA,
    KePayload(DhGroup.ECP_256, b"\x04" * 64),
    IdiPayload(IdType.FQDN, b"gw.example.org"),
    IdrPayload(IdType.IPV4_ADDR, bytes([198, 18, 0, 1])),
    CertPayload(CertEncoding.X509_SIGNATURE, b"\x30\x82cert"),
    CertReqPayload(CertEncoding.X509_SIGNATURE, b"\x11" * 20),
    AuthPayload(AuthMethod.PSK, b"\xaa" * 32),
    NoncePayload(b"\x5a" * 32),
    NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, b"\xde\xad\xbe\xef"),
    DeletePayload(ProtocolId.ESP, (b"\x00\x00\x00\x01", b"\x00\x00\x00\x02")),
    DeletePayload(ProtocolId.IKE),
    VendorIdPayload(b"espfast"),
    TsiPayload((TS, TS6)),
    TsrPayload((TS,)),
)


def msg(*payloads: object, exchange: int = ExchangeType.IKE_SA_INIT, response: bool = False
        ) -> Message:  # fmt: skip
    return Message(0x1122334455667788, 0, exchange, 0, response, True, tuple(payloads))  # type: ignore[arg-type]


def test_every_payload_roundtrips() -> None:
    m = msg(*ALL_PAYLOADS)
    data = encode(m)
    assert decode(data) == m
    # The IKE header: SPIs, next payload = SA, version 2.0, exchange, flags I, length.
    assert data[:8] == bytes.fromhex("1122334455667788")
    assert data[16:20] == bytes([PayloadType.SA, 0x20, 34, 0x08])
    assert int.from_bytes(data[24:28], "big") == len(data)


def test_traffic_selector_helpers() -> None:
    assert [str(n) for n in TS.networks()] == ["198.18.1.0/24"]
    narrow = TrafficSelector.from_network("198.18.1.128/25")
    assert TS.intersect(narrow) == narrow
    assert TS.intersect(TS6) is None
    assert TS.intersect(TrafficSelector.from_network("198.18.2.0/24")) is None
    assert TS6.start_addr == ip_address("2001:2::")


def test_header_errors() -> None:
    data = encode(msg(NoncePayload(b"n" * 16)))
    with pytest.raises(RemoteProtocolError, match="shorter than a header"):
        decode(data[:20])
    with pytest.raises(RemoteProtocolError, match="header length"):
        decode(data + b"\x00")  # trailing bytes
    with pytest.raises(RemoteProtocolError, match="header length"):
        decode(data[:-1])
    bad_version = data[:17] + b"\x30" + data[18:]
    with pytest.raises(RemoteProtocolError) as exc:
        decode(bad_version)
    assert exc.value.notify == NotifyType.INVALID_MAJOR_VERSION


def with_unknown(critical: bool) -> bytes:
    # A Nonce payload whose Next Payload names type 200, followed by a type-200 payload.
    body = b"n" * 16
    unknown = bytes([0, 0x80 if critical else 0]) + (4 + 3).to_bytes(2, "big") + b"xyz"
    chain = bytes([200, 0]) + (4 + len(body)).to_bytes(2, "big") + body + unknown
    header = encode(msg())[:HEADER_LEN]
    header = header[:16] + bytes([PayloadType.NONCE]) + header[17:24]
    return header + (HEADER_LEN + len(chain)).to_bytes(4, "big") + chain


def test_unknown_payload_skipped_unless_critical() -> None:
    m = decode(with_unknown(critical=False))
    assert m.payloads == (NoncePayload(b"n" * 16), UnknownPayload(200, b"xyz"))
    with pytest.raises(RemoteProtocolError) as exc:
        decode(with_unknown(critical=True))
    assert exc.value.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert exc.value.notify_data == bytes([200])


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (NoncePayload(b"short"), "nonce of 5 bytes"),
        (NoncePayload(b"x" * 257), "nonce of 257 bytes"),
        (IdiPayload(IdType.FQDN, b""), "empty identification"),
        (AuthPayload(AuthMethod.PSK, b""), "empty authentication"),
        (TsiPayload(()), "without selectors"),
    ],
)
def test_bad_payload_bodies(payload: object, error: str) -> None:
    with pytest.raises(RemoteProtocolError, match=error):
        decode(encode(msg(payload)))


def test_bad_substructures() -> None:
    data = bytearray(encode(msg(SA)))
    # The first proposal's "last substructure" marker (2 = more follow) set to 7.
    data[HEADER_LEN + 4] = 7
    with pytest.raises(RemoteProtocolError, match="substructure"):
        decode(bytes(data))
    bad_delete = DeletePayload(ProtocolId.ESP, (b"\x00\x01",))
    with pytest.raises(RemoteProtocolError, match="SPI size 2"):
        decode(encode(msg(bad_delete)))
    ts = SA.proposals[0].transforms

    def numbered(*nums: int) -> SaPayload:
        return SaPayload(tuple(Proposal(n, ProtocolId.IKE, b"", ts) for n in nums))

    for bad in ((3, 4), (1, 3), (0,)):
        with pytest.raises(RemoteProtocolError, match="out of sequence"):
            decode(encode(msg(numbered(*bad))))
    # A response carries the one proposal accepted, with its number in the offer (§3.3.1).
    assert decode(encode(msg(numbered(3)))).get(SaPayload) == numbered(3)


def test_payload_length_overruns_message() -> None:
    data = bytearray(encode(msg(NoncePayload(b"n" * 16))))
    data[HEADER_LEN + 2 : HEADER_LEN + 4] = (200).to_bytes(2, "big")
    with pytest.raises(RemoteProtocolError, match="truncated"):
        decode(bytes(data))
    data[HEADER_LEN + 2 : HEADER_LEN + 4] = (3).to_bytes(2, "big")
    with pytest.raises(RemoteProtocolError, match="payload length 3"):
        decode(bytes(data))


def test_bytes_after_the_last_payload_are_an_error() -> None:
    """Junk after the chain (Next Payload 0), the header's length patched to cover it."""
    data = encode(msg(NoncePayload(b"n" * 16))) + b"junk"
    data = data[:24] + len(data).to_bytes(4, "big") + data[28:]
    with pytest.raises(RemoteProtocolError, match="4 trailing bytes in message after its last"):
        decode(data)


def test_rules() -> None:
    init = msg(SA, KePayload(19, b"k" * 64), NoncePayload(b"n" * 32))
    check_rules(init)
    with pytest.raises(RemoteProtocolError, match="without NONCE"):
        check_rules(msg(SA, KePayload(19, b"k" * 64)))
    with pytest.raises(RemoteProtocolError, match="2 SA payloads"):
        check_rules(msg(SA, SA, KePayload(19, b"k"), NoncePayload(b"n" * 32)))
    with pytest.raises(RemoteProtocolError, match="AUTH payload not allowed"):
        check_rules(msg(*init.payloads, AuthPayload(2, b"a")))
    # An error response carries the notify alone.
    check_rules(msg(NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN), response=True))
    check_rules(msg(NotifyPayload(NotifyType.COOKIE, b"c" * 16), response=True))
    with pytest.raises(RemoteProtocolError, match="without encryption"):
        check_rules(msg(exchange=ExchangeType.INFORMATIONAL))
    with pytest.raises(RemoteProtocolError, match="unknown exchange"):
        check_rules(msg(exchange=99))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_any_bytes_parse_or_remote_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 255))
def test_fuzz_valid_header_random_chain(chain: bytes, first: int) -> None:
    header = encode(msg())[:16] + bytes([first, 0x20, 34, 0x08, 0, 0, 0, 0])
    data = header + (HEADER_LEN + len(chain)).to_bytes(4, "big") + chain
    try:
        m = decode(data)
        check_rules(m)
    except RemoteProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_valid_message(data: st.DataObject) -> None:
    raw = bytearray(encode(msg(*ALL_PAYLOADS)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(HEADER_LEN, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(RemoteProtocolError):
        decode(bytes(raw))


def crypter_pair() -> tuple[object, object]:
    from espfast.control.constants import EncrId
    from espfast.control.crypto import ENCR_ALGS, make_crypter
    from espfast.control.rng import DeterministicRng

    alg = ENCR_ALGS[EncrId.AES_GCM_16]
    key = bytes(range(20))
    rng = DeterministicRng()
    return make_crypter(alg, key, None, b"", rng), make_crypter(alg, key, None, b"", rng)


def test_encrypted_message_roundtrip_and_rules() -> None:
    tx, rx = crypter_pair()
    m = msg(IdiPayload(IdType.FQDN, b"a"), AuthPayload(AuthMethod.PSK, b"x" * 32),
            SA, TsiPayload((TS,)), TsrPayload((TS,)), exchange=ExchangeType.IKE_AUTH)  # fmt: skip
    data = encode(m, tx)  # type: ignore[arg-type]
    assert data[16] == PayloadType.SK
    got = decode(data, rx)  # type: ignore[arg-type]
    assert got == m and got.encrypted
    check_rules(got)
    with pytest.raises(RemoteProtocolError, match="before keys"):
        decode(data)
    with pytest.raises(RemoteProtocolError, match="authentication"):
        decode(data[:-1] + bytes([data[-1] ^ 0x80]), rx)  # type: ignore[arg-type]


def test_fragments_roundtrip() -> None:
    from espfast.control.message import decrypt_fragment, encode_fragments, reassemble

    tx, rx = crypter_pair()
    big = CertPayload(CertEncoding.X509_SIGNATURE, bytes(range(256)) * 12)
    m = msg(IdiPayload(IdType.FQDN, b"a"), big, exchange=ExchangeType.IKE_AUTH)
    frags = encode_fragments(m, tx, 1280)  # type: ignore[arg-type]
    assert len(frags) == 3 and all(len(f) <= 1280 for f in frags)
    pieces = [decrypt_fragment(f, rx) for f in frags]  # type: ignore[arg-type]
    assert [p[1].number for p in pieces] == [1, 2, 3] and pieces[0][1].total == 3
    assert pieces[0][2] == PayloadType.IDI
    got = reassemble(pieces[0][0], pieces[0][2], [p[3] for p in pieces])
    assert got.payloads == m.payloads
