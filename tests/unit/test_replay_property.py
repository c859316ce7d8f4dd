"""The anti-replay window (through the whole decap path: ESN inference, check before
decryption, update after the ICV) against a reference model: a set of the numbers seen
and the highest one. Packets are made by the cryptography package, with any sequence
number, near and across 2^32."""

from __future__ import annotations

from dp_helpers import A4, B4, NET_A, NET_B, esp_gcm, ipv4_udp, keys, params
from hypothesis import given, settings
from hypothesis import strategies as st

from espfast.dataplane import Direction, EspError, EspSa, Transform

SPI = 0x7777
T = Transform.AES128GCM16


class Model:
    """RFC 4303 §3.4.3 in its plainest form."""

    def __init__(self, window: int, floor: int) -> None:
        # initial_seq is a floor: every number up to it counts as received
        self.window, self.top, self.floor, self.seen = window, floor, floor, set[int]()

    def accept(self, seq: int) -> bool:
        ok = seq > self.floor and seq not in self.seen and self.top - seq < self.window
        if ok:
            self.seen.add(seq)
            self.top = max(self.top, seq)
        return ok


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, bool, int, list[int]]:
    window = draw(st.sampled_from([1, 2, 32, 63, 64, 65, 128, 1024, 8192]))
    esn = draw(st.booleans())
    if esn:
        start = draw(st.sampled_from([0, 2**32 - 70, 2**32 + 3, 2**33 - 10, 2**63]))
    else:
        start = draw(st.sampled_from([0, 1000, 2**32 - 300]))
    small = st.integers(-window - 3, 2 * window + 3)
    jump = st.integers(window, 2**31 - window - 1)  # far ahead, still inferable with ESN
    deltas = draw(st.lists(st.one_of(small, small, small, jump, st.just(0)), max_size=40))
    return window, esn, start, deltas


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_window_matches_model(sc: tuple[int, bool, int, list[int]]) -> None:
    window, esn, start, deltas = sc
    enc, _ = keys(T)
    sa = EspSa(
        params(
            T, Direction.IN, enc, b"", spi=SPI, esn=esn, window=window, local=NET_B, remote=NET_A
        ),
        initial_seq=start,
    )
    model = Model(window, start)
    limit = 2**64 - 1 if esn else 2**32 - 1
    inner = ipv4_udp(A4, B4, b"replay")
    rejected = 0
    for delta in deltas:
        seq = model.top + delta
        if not 0 <= seq <= limit:
            continue
        expect = model.accept(seq)
        try:
            got = sa.decap(esp_gcm(enc, SPI, seq, inner, esn=esn)) == inner
        except EspError as e:
            assert e.reason in ("replay", "auth")  # auth: an old number read as a new epoch
            got = False
            rejected += 1
        assert got == expect, f"seq {seq} (top {model.top}, window {window}, esn {esn})"
    s = sa.stats()
    assert s.replay_drops + s.auth_failures == rejected
    assert s.seq == model.top
