"""Two IKE daemons doing random things to each other at random moments — new, rekeyed
and deleted Child SAs, IKE SA rekeys (collisions included), liveness checks — over a
link that duplicates, reorders and (in the later tests) loses datagrams. Seeded, so a
failure replays exactly. At the end, once the link is quiet, both sides must agree on
every Child SA: each inbound SPI on one side is the outbound SPI on the other, and on
the IKE SA: the same one on both sides, or none on either.

The seeds are contiguous ranges, not picked: every seed must pass. Hypothesis adds
seeds (and loss rates) nobody chose."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ikepair import A, B, configs

from espfast.control.config import Lifetime
from espfast.control.manager import IkeManager
from espfast.control.rng import DeterministicRng
from espfast.control.tasks.ike_rekey import REPLACED_GRACE

NEVER = Lifetime(0, 0, 0)
DPD = 30.0
# Long enough, once the link is clean, for a liveness check or the grace period of a
# rekeyed IKE SA the peer never deleted, plus a whole retransmission cycle (4 s x 1.8^k
# over 9 tries: about 990 s): an end whose peer gave up on a lossy link notices and
# closes its IKE SA too.
QUIET = REPLACED_GRACE + 2 * 1000.0 + DPD
OPS = ("rekey_child", "rekey_ike", "dpd", "newchild", "delchild", "reauth")


class Chaos:
    def __init__(self, seed: int, loss: float, dup: float) -> None:
        self.rand = random.Random(seed)
        self.loss, self.dup = loss, dup
        ci, cr = configs()
        ci, cr = (
            replace(c, retransmit_tries=8, lifetime=NEVER, dpd_delay=DPD,
                    children=(replace(c.children[0], lifetime=NEVER),))
            for c in (ci, cr)
        )  # fmt: skip
        self.a = IkeManager([ci], rng=DeterministicRng(f"a{seed}"), local=A)
        self.b = IkeManager([cr], rng=DeterministicRng(f"b{seed}"), local=B)
        self.a.initiate(ci, local=A, remote=B, now=0)
        self.now = 0.0

    def deliver(self, lossy: bool) -> bool:
        moved = False
        for src, dst, host in ((self.a, self.b, A[0]), (self.b, self.a, B[0])):
            sent = src.datagrams_to_send(self.now)
            if lossy:
                self.rand.shuffle(sent)
            for data, remote, port in sent:
                if lossy and self.rand.random() < self.loss:
                    continue
                copies = 2 if lossy and self.rand.random() < self.dup else 1
                for _ in range(copies):
                    dst.receive_datagram(data, (host, port), self.now, remote)
                moved = True
        for m in (self.a, self.b):
            while m.next_event() is not None:
                pass
        return moved

    def tick(self) -> bool:
        timers = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
        if not timers:
            return False
        self.now = max(self.now, min(timers))
        self.a.handle_timer(self.now)
        self.b.handle_timer(self.now)
        return True

    def poke(self) -> None:
        side = self.rand.choice([self.a, self.b])
        sas = [s for s in side.sas if s.is_established]
        if not sas:
            return
        sa = self.rand.choice(sas)
        op = self.rand.choice(OPS)
        kids = list(sa.children)
        if op == "rekey_child" and kids:
            sa.rekey_child(self.rand.choice(kids), self.now)
        elif op == "rekey_ike":
            sa.rekey(self.now)
        elif op == "dpd":
            sa.check_liveness(self.now)
        elif op == "newchild":
            sa.create_child(sa.config.children[0], self.now)
        elif op == "reauth" and side is self.a:
            # Reauthentication comes from the original initiator only, as on reauth_time
            # (both ends reauthenticating at once would leave two IKE SAs).
            sa.reauthenticate(self.now)
        elif op == "delchild" and kids:
            sa.delete_child(self.rand.choice(kids), self.now)

    def run(self, steps: int = 90) -> None:
        for _ in range(steps):
            if self.rand.random() < 0.3:
                self.poke()
            if not self.deliver(lossy=True):
                self.tick()
        end = self.now + QUIET  # quiet down over a clean link
        for _ in range(5000):
            if self.deliver(lossy=False):
                continue
            timers = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
            if not timers or min(timers) > end:
                break
            self.tick()
        assert not self.a.datagrams_to_send(self.now) and not self.b.datagrams_to_send(self.now)

    def check(self) -> None:
        ours = {spi: c.spi_out for s in self.a.sas for spi, c in s.children.items()}
        theirs = {spi: c.spi_out for s in self.b.sas for spi, c in s.children.items()}
        assert {out: spi for spi, out in ours.items()} == theirs
        # One IKE SA on both sides, the same; or none on either (the handshake itself
        # can time out on a lossy link: half-open SAs live 30 s).
        pairs_a = {(s.spi_i, s.spi_r) for s in self.a.sas}
        pairs_b = {(s.spi_i, s.spi_r) for s in self.b.sas}
        assert pairs_a == pairs_b and len(pairs_a) <= 1
        # Nothing left half-way: no IKE SA waiting for a §2.8.2 collision to settle,
        # none rekeyed away but still kept, no exchange outstanding.
        for s in self.a.sas + self.b.sas:
            assert s.is_established and not s.on_hold and s.replaced_by is None
            assert s.tm.active is None


@pytest.mark.parametrize("seed", range(100))
def test_chaos_with_duplicates_and_reordering(seed: int) -> None:
    chaos = Chaos(seed, loss=0.0, dup=0.1)
    chaos.run()
    chaos.check()


@pytest.mark.parametrize("seed", range(300))
def test_chaos_with_loss(seed: int) -> None:
    # 30 % loss each way: requests and answers are lost, retransmission cycles run out,
    # IKE SA rekeys collide with answers missing (RFC 7296 §2.8.2).
    chaos = Chaos(1000 + seed, loss=0.3, dup=0.1)
    chaos.run()
    chaos.check()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), loss=st.floats(0.0, 0.4))
# Found by Hypothesis: an IKE SA rekey collision (§2.8.2) won by A while B never got
# A's answer to its own rekey; the grace period that closes the SA A made for B's
# rekey never reached the manager's timers, and A kept it forever.
@example(seed=11984012, loss=0.375)
def test_chaos_with_seeds_from_hypothesis(seed: int, loss: float) -> None:
    chaos = Chaos(seed, loss=loss, dup=0.1)
    chaos.run()
    chaos.check()
