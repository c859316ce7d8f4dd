"""The responder front door: half-open limits, cookies under a flood, bad datagrams."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from ikepair import A, B, Pair, configs, events

from espfast.control.constants import NotifyType
from espfast.control.events import IkeSaDown
from espfast.control.ike_sa import IkeSa
from espfast.control.message import decode
from espfast.control.responder import Responder
from espfast.control.rng import DeterministicRng


def init_request(seed: str) -> bytes:
    ci, _ = configs()
    sa = IkeSa.initiate(ci, local=A, remote=B, rng=DeterministicRng(seed), now=0)
    ((data, _),) = sa.datagrams_to_send(0)
    return data


def test_flood_from_many_addresses_gets_cookies_and_the_responder_stays_up() -> None:
    _, cr = configs()
    responder = Responder([cr], B, DeterministicRng("r"), cookie_threshold=5)
    made = []
    for n in range(200):
        addr = (f"198.18.{1 + n // 250}.{n % 250 + 1}", 500)
        sa = responder.receive_datagram(init_request(f"flood{n}"), addr, float(n) / 100)
        if sa is not None:
            made.append(sa)
    assert len(made) == 5 and responder.counters.cookies_sent == 195
    replies = responder.datagrams_to_send(0)
    assert len(replies) == 195
    assert all(decode(d).notify(NotifyType.COOKIE) is not None for d, _ in replies)
    # A legitimate initiator still gets through, proving it owns its address.
    p = Pair(*configs(), start=True)
    p.responder = responder
    p.establish()
    assert p.i.is_established and p.round_trips == 3


def test_half_open_limit_drops_and_half_open_sas_time_out() -> None:
    _, cr = configs()
    responder = Responder([cr], B, DeterministicRng("r"), cookie_threshold=100,
                          half_open_limit=3)  # fmt: skip
    sas = [responder.receive_datagram(init_request(f"h{n}"), (f"198.18.0.{n + 10}", 500), 0)
           for n in range(4)]  # fmt: skip
    assert sas[3] is None and responder.counters.dropped_half_open_limit == 1
    sa = sas[0]
    assert sa is not None and sa.get_timer() == 30.0
    sa.handle_timer(30.0)
    assert sa.is_destroyed
    assert [type(e) for e in events(sa)] == [IkeSaDown]
    # The timed-out SA no longer counts: a new initiator fits again.
    assert responder.receive_datagram(init_request("late"), ("198.18.0.99", 500), 31) is not None


def test_non_init_datagrams_are_dropped() -> None:
    _, cr = configs()
    responder = Responder([cr], B, DeterministicRng("r"))
    p = Pair(*configs())
    p.establish()
    auth_request = p.i.tm.last_request_raw  # the last request (IKE_AUTH)
    assert responder.receive_datagram(auth_request, A, 0) is None
    assert responder.receive_datagram(b"\x00" * 10, A, 0) is None
    assert responder.counters.dropped_not_init == 1
    assert responder.counters.dropped_malformed == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_responder_and_ike_sa_never_raise(data: bytes) -> None:
    _, cr = configs()
    responder = Responder([cr], B, DeterministicRng("r"))
    responder.receive_datagram(data, A, 0)
    p = Pair(*configs())
    p.establish()
    assert p.r is not None
    assert p.r.tm.cached is not None
    # Also behind valid headers (our SPIs, the next Message ID, the right flags), so
    # that the bytes reach the decoder and the task manager.
    for sa, header in ((p.r, p.i.tm.last_request_raw[:28]), (p.i, p.r.tm.cached[1][0][:28])):
        sa.receive_datagram(data, B, 1)
        h = bytearray(header)
        h[20:24] = (2).to_bytes(4, "big")
        h[24:28] = (28 + len(data)).to_bytes(4, "big")
        if data:
            h[16] = data[0]  # any first payload type, SK included
        sa.receive_datagram(bytes(h) + data, B, 1)
        assert not sa.is_destroyed


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_ike_sa_init_request(data: st.DataObject) -> None:
    raw = bytearray(init_request("m"))
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _, cr = configs()
    responder = Responder([cr], B, DeterministicRng("r"))
    sa = responder.receive_datagram(bytes(raw), A, 0)
    # Either a half-open SA (it answered) or a refusal/drop that was counted.
    c = responder.counters
    if sa is None:
        assert c.refused + c.dropped_malformed + c.dropped_not_init == 1
    else:
        assert sa.datagrams_to_send(0) and not sa.is_destroyed


def test_the_connection_whose_proposals_match_answers() -> None:
    from dataclasses import replace

    from espfast.control.proposals import parse_ike

    ci, cr = configs(ike="aes128-sha256-modp2048")
    other = replace(cr, name="other", ike_proposals=parse_ike("aes256gcm16-prfsha384-ecp384"))
    p = Pair(ci, cr)
    p.responder = Responder([other, cr], B, DeterministicRng("r"))
    p.establish()
    assert p.r is not None and p.r.config.name == "gw-b"
    assert p.i.is_established
