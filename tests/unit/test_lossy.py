"""IKE over a lossy link: 30 % loss each way, duplicates and reordering (seeded), the
clock advanced timer by timer. Every exchange completes, and duplicated requests are
answered from the response cache, never processed twice."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from ikepair import A, B, configs

from espfast.control.config import Lifetime
from espfast.control.events import ChildSaRekeyed, ChildSaUp, IkeSaRekeyed, IkeSaUp
from espfast.control.manager import IkeManager
from espfast.control.rng import DeterministicRng


class LossyLink:
    def __init__(self, seed: int, loss: float = 0.3, dup: float = 0.25, swap: float = 0.2):
        self.rand = random.Random(seed)
        self.loss, self.dup, self.swap = loss, dup, swap
        self.dropped = self.duplicated = 0

    def carry(self, datagrams: list[bytes]) -> list[bytes]:
        out = []
        for d in datagrams:
            if self.rand.random() < self.loss:
                self.dropped += 1
                continue
            out.append(d)
            if self.rand.random() < self.dup:
                self.duplicated += 1
                out.append(d)
        if len(out) > 1 and self.rand.random() < self.swap:
            out[0], out[1] = out[1], out[0]
        return out


class Net:
    def __init__(self, seed: int) -> None:
        ci, cr = configs()
        # Lifetimes off: the clock jumps from timer to timer, and scheduled rekeys would
        # mix with the ones this test starts.
        never = Lifetime(0, 0, 0)
        ci, cr = (
            replace(c, retransmit_tries=12, lifetime=never,
                    children=(replace(c.children[0], lifetime=never),))
            for c in (ci, cr)
        )  # fmt: skip
        self.ci = ci
        self.a = IkeManager([], rng=DeterministicRng(f"a{seed}"), local=A)
        self.b = IkeManager([cr], rng=DeterministicRng(f"b{seed}"), local=B)
        self.link = LossyLink(seed)
        self.now = 0.0
        self.events: dict[str, list[object]] = {"a": [], "b": []}

    def step(self) -> None:
        moved = False
        for src, dst, host in ((self.a, self.b, A[0]), (self.b, self.a, B[0])):
            sent = src.datagrams_to_send(self.now)
            by_data = {d: (remote, port) for d, remote, port in sent}
            for data in self.link.carry([d for d, _, _ in sent]):
                remote, port = by_data[data]
                dst.receive_datagram(data, (host, port), self.now, remote)
                moved = True
        for name, m in (("a", self.a), ("b", self.b)):
            while (e := m.next_event()) is not None:
                self.events[name].append(e)
        if not moved:
            timers = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
            self.now = max(self.now, min(timers)) if timers else self.now + 1
            self.a.handle_timer(self.now)
            self.b.handle_timer(self.now)

    def until(self, done: object, steps: int = 400) -> None:
        for _ in range(steps):
            if done():  # type: ignore[operator]
                return
            self.step()
        raise AssertionError("did not complete over the lossy link")

    def count(self, name: str, kind: type) -> int:
        return sum(isinstance(e, kind) for e in self.events[name])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_everything_completes_under_loss_duplication_and_reordering(seed: int) -> None:
    net = Net(seed)
    net.a.initiate(net.ci, local=A, remote=B, now=0)
    net.until(lambda: net.count("a", ChildSaUp) and net.count("b", ChildSaUp))
    # Child SA rekey, then IKE SA rekey, each through the same lossy link.
    (sa,) = net.a.sas
    (spi,) = sa.children
    sa.rekey_child(spi, net.now)
    net.until(lambda: net.count("a", ChildSaRekeyed) and net.count("b", ChildSaRekeyed)
              and len(net.a.sas[0].children) == 1 and len(net.b.sas[0].children) == 1)  # fmt: skip
    net.a.sas[0].rekey(net.now)
    net.until(lambda: net.count("b", IkeSaRekeyed) and len(net.a.sas) == 1
              and len(net.b.sas) == 1)  # fmt: skip
    # Each exchange took effect exactly once on each side, however often it was sent.
    for side in ("a", "b"):
        assert net.count(side, IkeSaUp) == 1
        assert net.count(side, ChildSaUp) == 1
        assert net.count(side, ChildSaRekeyed) == 1
        assert net.count(side, IkeSaRekeyed) == 1
    assert net.link.dropped > 3 and net.link.duplicated > 0
    (a_sa,), (b_sa,) = net.a.sas, net.b.sas
    assert (a_sa.spi_i, a_sa.spi_r) == (b_sa.spi_i, b_sa.spi_r)
    assert set(a_sa.children) == {c.spi_out for c in b_sa.children.values()}
