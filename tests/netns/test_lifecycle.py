"""The SA lifecycle between two ``espfast up`` daemons in namespaces: rekeying under
traffic without loss, dead peer detection and its actions, and a restarted peer.

Rekeying: the Child SA rekeys every 2 s and the IKE SA every 5 s on both sides (so both
initiate rekeys, and now and then they collide: RFC 7296 §2.8.1/§2.8.2) while
sequence-numbered UDP datagrams (udpflow.py) go both ways for 30 s beside an iperf3 TCP
run: some fifteen Child SA rekeys and six IKE SA rekeys, each with its DELETE. Every
datagram is counted: none may be lost, duplicated or reordered. Reauthentication (a new
IKE SA from scratch, then the old one deleted) is counted the same way.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from updaemon import counters, drops, kill, one_tunnel, peek, ping, status

from espfast.impair import Impairment, relay
from espfast.netns import ThreeHosts, TwoHosts, wait_for
from espfast.static import start_in, write_private
from espfast.tools.udpflow import Flows, check_flows, flow, flow_with_tcp
from espfast.up import pair_configs

PSK = "a pre-shared key long enough for the lifecycle tests"
A_IN, B_IN = "198.19.1.1", "198.19.2.1"
IKE_ANCHOR = 'proposals = "aes128gcm16-prfsha256-x25519"\n'
CHILD_ANCHOR = 'esp_proposals = "aes128gcm16"\n'


def configs(
    tmp_path: Path,
    ike: str = "",
    child: str = "",
    *,
    both: bool = False,
    outer: tuple[str, str] = ("198.18.0.1", "198.18.0.2"),
) -> list[Path]:
    """a initiates, b answers; ``ike`` / ``child`` lines go into a's connection / child
    (and into b's too with ``both``)."""
    paths = []
    for i, text in enumerate(pair_configs(PSK, outer=outer)):
        if i == 0 or both:
            text = text.replace(IKE_ANCHOR, IKE_ANCHOR + ike).replace(
                CHILD_ANCHOR, CHILD_ANCHOR + child
            )
        paths.append(write_private(tmp_path / f"{'ab'[i]}.toml", text))
    return paths


@dataclass
class Run:
    """What :func:`flows_between` saw."""

    flows: Flows
    a: dict[str, int]  # each daemon's counters
    b: dict[str, int]
    final: tuple[list[dict[str, Any]], list[dict[str, Any]]]  # each side's IKE SAs at the end
    settled: bool  # one tunnel on each side was seen after the flows


def flows_between(a_conf: Path, b_conf: Path, count: int, tcp_seconds: int) -> Run:
    """``espfast up`` with these configs in two namespaces; ``count`` datagrams each way
    2 ms apart beside an iperf3 run (rate-limited: it must complete, and the datagrams
    must not lose to it; 2 cores are shared by everything here), every one counted."""
    with TwoHosts.create("l5") as hosts:
        b = start_in(hosts.b, b_conf, command="up")
        a = start_in(hosts.a, a_conf, command="up")
        assert wait_for(lambda: ping(hosts.a, B_IN), timeout=15)
        flows = flow_with_tcp(
            hosts.a, hosts.b, A_IN, B_IN, count=count, interval=0.002, tcp_seconds=tcp_seconds,
            tcp_rate="40M",
        )  # fmt: skip
        final = status(hosts.a), status(hosts.b)
        # Rekeys go on: wait (bounded) for a moment of one tunnel on each side. A stale SA
        # would never leave.
        settled = wait_for(lambda: one_tunnel(hosts.a) and one_tunnel(hosts.b), timeout=10)
        rc_a, out_a, err_a = a.stop()
        rc_b, out_b, err_b = b.stop()
    assert (rc_a, rc_b) == (0, 0), err_a + err_b
    check_flows(flows, count, out_a + out_b)
    run = Run(flows, counters(out_a), counters(out_b), final, settled)
    print("a:", run.a, "\nb:", run.b)
    return run


def test_rekeys_under_traffic_lose_nothing(tmp_path: Path) -> None:
    a_conf, b_conf = configs(tmp_path, "rekey_time = 5\n", "rekey_time = 2\n", both=True)
    run = flows_between(a_conf, b_conf, 15000, tcp_seconds=25)  # about 30 s
    ca, cb, elapsed = run.a, run.b, run.flows.elapsed
    # Each side sees every Child SA rekey (whoever started it) as ChildSaRekeyed, and every
    # IKE SA rekey as IkeSaRekeyed. Rekeys come every 1.8-2 s (Child) and 4.5-5 s (IKE).
    assert ca["child_sas_rekeyed"] >= elapsed / 2.5, ca
    assert cb["child_sas_rekeyed"] >= elapsed / 2.5, cb
    assert ca["ike_sas_rekeyed"] >= 4 and cb["ike_sas_rekeyed"] >= 4
    assert ca["event_errors"] == cb["event_errors"] == 0
    # No stale SA anywhere: one IKE SA with one Child SA each side (the last rekey may be
    # under way: then its successor is the one extra).
    for sas in run.final:
        assert len(sas) in (1, 2) and len(sas[-1]["child_sas"]) in (1, 2), sas
    assert run.settled, run.final


def test_reauthentication_under_traffic_loses_nothing(tmp_path: Path) -> None:
    """reauth_time = 3 on a: every 3 s a sets up a new IKE SA from scratch (IKE_SA_INIT,
    IKE_AUTH with the Child SA) beside the old one, then deletes the old one
    (make-before-break, RFC 7296 §2.8.3); b's Child SAs rekey every 2 s meanwhile. b sees
    each new IKE SA as a new peer's, with a Child SA like the one it has: it sends on the
    new one once a does (or once the old one is deleted)."""
    a_conf, b_conf = configs(tmp_path, "reauth_time = 3\nrekey_time = 0\n")
    b_conf.write_text(b_conf.read_text().replace(CHILD_ANCHOR, CHILD_ANCHOR + "rekey_time = 2\n"))
    run = flows_between(a_conf, b_conf, 5000, tcp_seconds=8)  # about 10 s
    ca, cb = run.a, run.b
    assert run.settled, run.final  # the old IKE SA goes once its successor is complete
    assert ca["ike_sas_reauthenticated"] >= run.flows.elapsed / 4, ca
    # b: a new IKE SA each time (the last may be under way), the old one deleted by a.
    assert 0 <= cb["ike_sas_up"] - ca["ike_sas_reauthenticated"] <= 1, cb
    assert ca["ike_sas_down"] <= 1  # the shutdown's: a reauthentication takes nothing down
    assert ca["event_errors"] == cb["event_errors"] == 0
    assert cb["child_sas_rekeyed"] >= 1


def test_dead_peer_cleared(tmp_path: Path) -> None:
    """dpd_action = clear: a notices within dpd_delay + dpd_timeout, its SAs go, and so
    does its route into the TUN device."""
    a_conf, b_conf = configs(tmp_path, "dpd_delay = 1\ndpd_timeout = 3\n")
    with TwoHosts.create("l5") as hosts:
        b = start_in(hosts.b, b_conf, command="up")
        a = start_in(hosts.a, a_conf, command="up")
        assert wait_for(lambda: ping(hosts.a, B_IN), timeout=15)
        assert "198.19.2.0/24" in hosts.a.run("ip", "route").stdout
        kill(b)
        killed = time.monotonic()
        assert wait_for(lambda: not status(hosts.a), timeout=10, interval=0.2)
        noticed = time.monotonic() - killed
        routes = hosts.a.run("ip", "route").stdout
        time.sleep(1.5)  # nothing restarts it
        later = status(hosts.a)
        rc_a, _out_a, err_a = a.stop()
    print(f"dead peer noticed after {noticed:.1f} s")
    # At worst: a whole dpd_delay of silence after the last read, then dpd_timeout of
    # unanswered liveness checks; plus 3 s for a loaded 2-CPU machine. A dead peer that
    # was never noticed fails the wait above; this says DPD, not something slower, did it.
    assert noticed < 2 * 1 + 3 + 3, err_a
    assert "198.19.2.0/24" not in routes
    assert later == [] and rc_a == 0
    assert "IKE SA down (dpd)" in err_a and "initiating again" not in err_a


def test_dead_peer_restarted_and_back(tmp_path: Path) -> None:
    """dpd_action = restart: a keeps trying; once b is back, so is the tunnel, with no
    stale SA on either side."""
    a_conf, b_conf = configs(
        tmp_path, "dpd_delay = 1\ndpd_timeout = 2\n", 'dpd_action = "restart"\n'
    )
    with TwoHosts.create("l5") as hosts:
        b = start_in(hosts.b, b_conf, command="up")
        a = start_in(hosts.a, a_conf, command="up")
        assert wait_for(lambda: ping(hosts.a, B_IN), timeout=15)
        kill(b)
        assert wait_for(lambda: "IKE SA down (dpd)" in peek(a), timeout=10)
        time.sleep(1)  # a tries again, in vain
        b = start_in(hosts.b, b_conf, command="up")
        back = time.monotonic()
        assert wait_for(lambda: ping(hosts.a, B_IN), timeout=20), peek(a)
        print(f"tunnel back {time.monotonic() - back:.1f} s after b restarted")
        assert wait_for(lambda: one_tunnel(hosts.a) and one_tunnel(hosts.b), timeout=5)
        a.stop()
        b.stop()


def test_restarted_initiator_clears_stale_sas(tmp_path: Path) -> None:
    """a dies without a word and comes back: its INITIAL_CONTACT makes b drop the old IKE
    SA and its Child SA; one tunnel remains on each side, and it carries traffic."""
    a_conf, b_conf = configs(tmp_path)
    with TwoHosts.create("l5") as hosts:
        b = start_in(hosts.b, b_conf, command="up")
        a = start_in(hosts.a, a_conf, command="up")
        assert wait_for(lambda: ping(hosts.a, B_IN), timeout=15)
        old = status(hosts.b)[0]["spi_i"]
        kill(a)
        restarted = time.monotonic()
        a = start_in(hosts.a, a_conf, command="up")
        assert wait_for(lambda: ping(hosts.a, B_IN), timeout=15)
        print(f"tunnel back {time.monotonic() - restarted:.1f} s after a restarted")
        assert wait_for(lambda: one_tunnel(hosts.b), timeout=5), status(hosts.b)
        assert status(hosts.b)[0]["spi_i"] != old and one_tunnel(hosts.a)
        assert ping(hosts.b, A_IN)
        a.stop()
        b.stop()


def test_lossy_network(tmp_path: Path) -> None:
    """Through the impairment relay (seeded). First IKE alone suffers: 30 % of IKE datagrams
    lost and 20 % duplicated in each direction while IKE_SA_INIT, IKE_AUTH and rekeys
    (Child SA every 3 s, IKE SA every 7 s, both sides) run; each side answers the other's
    retransmitted and duplicated requests from its cache, and nothing is processed twice:
    both install the same number of Child SAs and no Child SA is refused. Then ESP alone:
    20 % duplicated and 20 % reordered (within 3 packets): the replay window drops every
    duplicate, the reordered datagrams are all delivered."""
    ike = "rekey_time = 7\ndpd_delay = 5\ndpd_timeout = 30\nretransmit_tries = 10\n"
    with ThreeHosts.create("l5") as hosts:
        a_conf, b_conf = configs(
            tmp_path, ike, "rekey_time = 3\n", both=True, outer=(hosts.addr_a, hosts.addr_b)
        )
        lossy = Impairment(drop=0.3, duplicate=0.2, match="ike")
        with relay(hosts, tmp_path / "relay", ab=lossy, ba=lossy, seed=5) as r:
            b = start_in(hosts.b, b_conf, command="up")
            a = start_in(hosts.a, a_conf, command="up")
            assert wait_for(lambda: ping(hosts.a, B_IN), timeout=30), peek(a)
            time.sleep(12)  # four Child SA rekeys, one or two IKE SA rekeys, all lossy
            ike_stats = r.stats()
            r.update(
                ab=Impairment(duplicate=0.2, reorder=0.2, reorder_gap=3, match="esp"),
                ba=Impairment(),
            )
            base = r.stats()["ab"]["duplicated"]
            got = flow(hosts.a, hosts.b, B_IN, count=2000, interval=0.001, idle=2.0)
            esp_stats = r.stop()
            # Rekeys go on every few seconds, each with a moment of two Child SAs (the old
            # one until its DELETE): wait (bounded) for a moment of exactly one on each side;
            # an orphaned SA would never leave.
            tunnels = (
                wait_for(lambda: one_tunnel(hosts.a) and one_tunnel(hosts.b), timeout=10),
                True,
            )
            if not tunnels[0]:
                print("status a:", status(hosts.a), "\nstatus b:", status(hosts.b))
            rc_a, out_a, err_a = a.stop()
            rc_b, out_b, err_b = b.stop()
    assert (rc_a, rc_b) == (0, 0), err_a + err_b
    ca, cb = counters(out_a), counters(out_b)
    print("relay (IKE phase):", ike_stats, "\nrelay (ESP phase):", esp_stats)
    print("a:", ca, "\nb:", cb, "\ndrops b:", drops(out_b))
    # IKE: the loss was real, and everything completed regardless.
    for d in ("ab", "ba"):
        assert ike_stats[d]["dropped"] > 0 and ike_stats[d]["duplicated"] > 0, ike_stats
    assert ca["ike_sas_up"] == cb["ike_sas_up"] == 1 and ca["ike_sas_down"] <= 1
    assert ca["child_sas_rekeyed"] >= 3 and ca["ike_sas_rekeyed"] >= 1, ca
    assert ca["ike_retransmits"] + cb["ike_retransmits"] > 0
    assert ca["ike_requests_answered_from_cache"] + cb["ike_requests_answered_from_cache"] > 0
    # Never processed twice: the same Child SAs on both sides, none refused as a duplicate.
    assert ca["child_sas_installed"] == cb["child_sas_installed"], (ca, cb)
    assert ca["event_errors"] == cb["event_errors"] == 0
    assert all(tunnels), tunnels
    # ESP: every datagram once, duplicates dropped by the replay window, reordering kept.
    assert sorted(got) == list(range(2000)), sorted(set(range(2000)) - set(got))[:20]
    assert any(y < x for x, y in itertools.pairwise(got))  # reordered ones were accepted
    esp_duplicates = esp_stats["ab"]["duplicated"] - base
    assert esp_duplicates > 100 and esp_stats["ab"]["reordered"] > 100, esp_stats
    assert drops(out_b).get("replay_drops", 0) >= 0.95 * esp_duplicates


def test_trap_negotiates_on_traffic_and_after_a_dead_peer(tmp_path: Path) -> None:
    """start_action = trap: nothing is negotiated until a packet for the remote prefix
    meets the route into the TUN device and finds no SA (the dataplane's no_sa counter).
    dpd_action = trap: after b dies, a keeps the route and negotiates again only when
    traffic comes, once b is back."""
    a_conf, b_conf = configs(
        tmp_path, "dpd_delay = 1\ndpd_timeout = 2\n", 'start_action = "trap"\ndpd_action = "trap"\n'
    )
    with TwoHosts.create("l5") as hosts:
        b = start_in(hosts.b, b_conf, command="up")
        a = start_in(hosts.a, a_conf, command="up")
        time.sleep(1.5)
        assert status(hosts.a) == [] and status(hosts.b) == []  # nothing yet
        assert "198.19.2.0/24" in hosts.a.run("ip", "route").stdout  # the trap's route
        assert wait_for(lambda: ping(hosts.a, B_IN), timeout=10), peek(a)
        assert one_tunnel(hosts.a) and one_tunnel(hosts.b)
        kill(b)
        assert wait_for(lambda: not status(hosts.a), timeout=10, interval=0.2)
        assert "198.19.2.0/24" in hosts.a.run("ip", "route").stdout  # trapped again
        b = start_in(hosts.b, b_conf, command="up")
        time.sleep(1.5)
        assert status(hosts.a) == []  # no traffic, no negotiation
        assert wait_for(lambda: ping(hosts.a, B_IN), timeout=10), peek(a)
        assert one_tunnel(hosts.a) and one_tunnel(hosts.b)
        _, out_a, _ = a.stop()
        b.stop()
    assert counters(out_a)["traps_acquired"] >= 2
