"""Authenticated nonsense: well-formed, correctly encrypted messages with random payloads,
exchange types, flags and Message IDs, thrown at established IKE SAs. Whatever a peer
with the keys sends, receive_datagram answers or drops it and never raises."""

from __future__ import annotations

from ipaddress import ip_address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikepair import Pair, configs

from espfast.control.constants import (
    AuthMethod,
    CertEncoding,
    DhGroup,
    ExchangeType,
    IdType,
    NotifyType,
    ProtocolId,
    TransformType,
    TsType,
)
from espfast.control.events import TrafficSelector
from espfast.control.message import Message
from espfast.control.payloads import (
    AuthPayload,
    CertPayload,
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
)

small = st.integers(0, 255)
transforms = st.builds(Transform, st.sampled_from(list(TransformType)), st.integers(0, 40),
                       st.none() | st.sampled_from([128, 192, 256, 7]))  # fmt: skip
proposals = st.builds(
    Proposal, st.just(1), st.sampled_from([ProtocolId.IKE, ProtocolId.ESP, 9]),
    st.sampled_from([b"", b"\x00\x00\x01\x00", bytes(8), b"\x01"]),
    st.lists(transforms, max_size=6).map(tuple),
)  # fmt: skip
# Any order: a range that ends before it starts (addresses or ports) is the peer's to send.
selectors = st.builds(
    lambda lo, hi, proto, ports: TrafficSelector(TsType.IPV4_ADDR_RANGE, proto, *ports,
                                                 ip_address(lo), ip_address(hi)),
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.sampled_from([0, 6, 17]),
    st.sampled_from([(0, 65535), (80, 80), (443, 80), (65535, 0)]),
)  # fmt: skip
sa_payloads = st.builds(
    SaPayload,
    st.lists(proposals, min_size=1, max_size=3).map(
        lambda ps: tuple(Proposal(i + 1, p.protocol, p.spi, p.transforms) for i, p in enumerate(ps))
    ),
)
payloads = st.one_of(
    sa_payloads,
    st.builds(KePayload, st.sampled_from([*list(DhGroup), 99]), st.binary(max_size=140)),
    st.builds(NoncePayload, st.binary(min_size=16, max_size=64)),
    st.builds(
        NotifyPayload,
        st.sampled_from([*list(NotifyType), 3, 9999, 40000]),
        st.binary(max_size=12),
        st.sampled_from(list(ProtocolId)),
        st.sampled_from([b"", b"\x00\x00\x01\x00", bytes(8)]),
    ),
    st.builds(
        DeletePayload,
        st.just(ProtocolId.ESP),
        st.lists(st.binary(min_size=4, max_size=4), max_size=3).map(tuple),
    ),
    st.just(DeletePayload(ProtocolId.IKE)),
    st.builds(IdiPayload, st.sampled_from(list(IdType)), st.binary(min_size=1, max_size=20)),
    st.builds(IdrPayload, st.sampled_from(list(IdType)), st.binary(min_size=1, max_size=20)),
    st.builds(AuthPayload, st.sampled_from(list(AuthMethod)), st.binary(min_size=1, max_size=64)),
    st.builds(TsiPayload, st.lists(selectors, min_size=1, max_size=2).map(tuple)),
    st.builds(CertPayload, st.just(CertEncoding.X509_SIGNATURE), st.binary(max_size=200)),
    st.builds(TsrPayload, st.lists(selectors, min_size=1, max_size=2).map(tuple)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(payloads, max_size=7),
    st.sampled_from([*list(ExchangeType), 40]),
    st.booleans(),
    st.integers(0, 4),
)
def test_encrypted_nonsense_never_raises(body: list[object], exchange: int, response: bool,
                                         mid: int) -> None:  # fmt: skip
    p = Pair(*configs())
    p.establish()
    assert p.r is not None
    for sender, receiver in ((p.i, p.r), (p.r, p.i)):
        msg = Message(sender.spi_i, sender.spi_r, exchange, receiver.tm.peer_mid + mid - 2
                      if not response else sender.tm.peer_mid + mid - 2, response,
                      sender.initiator, tuple(body))  # type: ignore[arg-type]  # fmt: skip
        if msg.message_id < 0:
            continue
        for data in sender.encode(msg):
            receiver.receive_datagram(data, ("198.18.0.9", 4500), 1.0)
        receiver.datagrams_to_send(1.0)
        while receiver.next_event() is not None:
            pass
        # Every bad input was caught by a check of ours, none by the last-resort net.
        assert receiver.tm.counters.unexpected_errors == 0
