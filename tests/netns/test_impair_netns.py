"""The impairment relay between real namespaces: a -- r (relay) -- b.

Sequence-numbered UDP datagrams (udpflow.py) go a -> b through the relay; the test
compares what arrived with the relay's counters. Probabilities are seeded, so the counts
are reproducible for the same traffic; the drop-rate check is a statistical bound anyway.
"""

from __future__ import annotations

import json
import math
import re
import signal
import socket
import struct
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from espfast.impair import Impairment, relay, start_relay
from espfast.netns import Namespace, ThreeHosts, wait_for
from espfast.static import Running, pair_configs, start_in, write_private
from espfast.tools.udpflow import flow

N = 1000


@pytest.fixture
def hosts() -> Iterator[ThreeHosts]:
    with ThreeHosts.create("rly") as h:
        yield h


def ping(ns: Namespace, dst: str, count: int = 3, interval: float = 0.1, wait: int = 3) -> str:
    """ping's output; ``wait`` is how long a reply may take (the relay is a Python process
    on a shared machine: give it slack where a late reply is not the point)."""
    return ns.run(
        "ping", "-c", str(count), "-i", str(interval), "-W", str(wait), dst,
        check=False, timeout=60,
    ).stdout  # fmt: skip


def received(ping_output: str) -> int:
    m = re.search(r"(\d+) received", ping_output)
    assert m, ping_output
    return int(m.group(1))


def test_no_impairment_everything_arrives_in_order(hosts: ThreeHosts, tmp_path: Path) -> None:
    with relay(hosts, tmp_path) as r:
        assert received(ping(hosts.a, hosts.addr_b)) == 3
        got_ab = flow(hosts.a, hosts.b, hosts.addr_b, count=N)
        got_ba = flow(hosts.b, hosts.a, hosts.addr_a, count=300)
        stats = r.stop()
    assert got_ab == list(range(N))
    assert got_ba == list(range(300))
    # The datagrams really went through the relay (3 echo requests + the flow).
    assert stats["ab"]["seen"] == stats["ab"]["forwarded"] >= N + 3
    assert stats["ba"]["seen"] == stats["ba"]["forwarded"] >= 300 + 3
    for d in ("ab", "ba"):
        assert stats[d]["dropped"] == stats[d]["duplicated"] == stats[d]["reordered"] == 0


def test_addresses_are_not_translated(hosts: ThreeHosts, tmp_path: Path) -> None:
    """b sees a's real address (no NAT), as IKE's NAT detection must."""
    with relay(hosts, tmp_path):
        rx = hosts.b.popen(
            "python3", "-c",
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.bind(('{hosts.addr_b}', 4500)); s.settimeout(10); print(s.recvfrom(100)[1])",
            stdout=-1,
        )  # fmt: skip
        assert wait_for(lambda: ":4500" in hosts.b.run("ss", "-Huln").stdout, timeout=10)
        hosts.a.run(
            "python3", "-c",
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.bind(('{hosts.addr_a}', 4500)); s.sendto(b'x', ('{hosts.addr_b}', 4500))",
        )  # fmt: skip
        out, _ = rx.communicate(timeout=15)
    assert out.decode().strip() == f"('{hosts.addr_a}', 4500)"


def test_drop_rate_within_statistical_bound(hosts: ThreeHosts, tmp_path: Path) -> None:
    p = 0.3
    with relay(hosts, tmp_path, ab=Impairment(drop=p, match="port:5001"), seed=11) as r:
        got = flow(hosts.a, hosts.b, hosts.addr_b, count=N)
        stats = r.stop()["ab"]
    lost = N - len(got)
    # 5 standard deviations of a binomial(N, p): fails by chance about once in 3.5 million.
    bound = 5 * math.sqrt(N * p * (1 - p))
    assert abs(lost - N * p) < bound, (lost, bound)
    assert stats["dropped"] == lost  # every loss is the relay's, on purpose
    assert got == sorted(got) and len(set(got)) == len(got)  # no reordering or duplicates


def test_ipv6_through_the_relay(hosts: ThreeHosts, tmp_path: Path) -> None:
    n, p = 400, 0.3
    with relay(hosts, tmp_path, ab=Impairment(drop=p, match="port:5001"), seed=6) as r:
        assert received(ping(hosts.a, hosts.addr6_b)) == 3
        got = flow(hosts.a, hosts.b, hosts.addr6_b, count=n)
        stats = r.stop()["ab"]
    assert abs(n - len(got) - n * p) < 5 * math.sqrt(n * p * (1 - p))
    assert stats["dropped"] == n - len(got)
    assert stats["seen"] >= n + 3


def test_same_seed_same_losses(hosts: ThreeHosts, tmp_path: Path) -> None:
    runs = []
    for i in range(2):
        with relay(hosts, tmp_path / str(i), ab=Impairment(drop=0.3, match="port:5001"), seed=5):
            runs.append(flow(hosts.a, hosts.b, hosts.addr_b, count=200))
    assert runs[0] == runs[1]
    assert len(runs[0]) < 200


def test_duplicates_arrive_twice(hosts: ThreeHosts, tmp_path: Path) -> None:
    with relay(hosts, tmp_path, ab=Impairment(duplicate=0.25, match="udp"), seed=3) as r:
        got = flow(hosts.a, hosts.b, hosts.addr_b, count=400)
        stats = r.stop()["ab"]
    counts = Counter(got)
    assert set(counts) == set(range(400))
    twice = [seq for seq, n in counts.items() if n == 2]
    assert max(counts.values()) == 2
    assert len(twice) == stats["duplicated"] > 0
    assert got == sorted(got)  # a copy follows its original


def test_reordered_datagrams_arrive_out_of_order(hosts: ThreeHosts, tmp_path: Path) -> None:
    imp = Impairment(reorder=0.1, reorder_gap=3, match="udp")
    with relay(hosts, tmp_path, ab=imp, seed=4) as r:
        got = flow(hosts.a, hosts.b, hosts.addr_b, count=400)
        stats = r.stop()["ab"]
    assert sorted(got) == list(range(400))  # nothing lost, nothing doubled
    assert got != sorted(got)
    # A datagram arrives late exactly when the relay held it back and a later one overtook it.
    late = [seq for i, seq in enumerate(got) if any(later < seq for later in got[i + 1 :])]
    overtaken = {later for i, later in enumerate(got) if any(s > later for s in got[:i])}
    assert late  # something overtook something
    assert len(overtaken) == stats["reordered"] > 0
    # ... and by at most reorder_gap datagrams each (held ones cannot hold each other up).
    for seq in overtaken:
        assert sum(1 for s in got[: got.index(seq)] if s > seq) <= imp.reorder_gap


def test_delay_adds_to_the_round_trip(hosts: ThreeHosts, tmp_path: Path) -> None:
    with relay(hosts, tmp_path, ab=Impairment(delay=0.05), ba=Impairment(delay=0.03)) as r:
        out = ping(hosts.a, hosts.addr_b, count=3, interval=0.2)
        stats = r.stop()
    assert received(out) == 3
    rtt_min = float(re.search(r"= ([\d.]+)/", out).group(1))  # type: ignore[union-attr]
    assert 80.0 <= rtt_min < 500.0
    assert stats["ab"]["delayed"] == 3 and stats["ba"]["delayed"] == 3


def test_match_selects_only_that_port(hosts: ThreeHosts, tmp_path: Path) -> None:
    with relay(hosts, tmp_path, ab=Impairment(drop=1.0, match="port:5001")) as r:
        assert flow(hosts.a, hosts.b, hosts.addr_b, count=50, port=5001, idle=0.5) == []
        assert flow(hosts.a, hosts.b, hosts.addr_b, count=50, port=5002) == list(range(50))
        assert received(ping(hosts.a, hosts.addr_b)) == 3
        stats = r.stop()["ab"]
    assert stats["dropped"] == stats["matched"] == 50


def test_update_changes_a_running_relay(hosts: ThreeHosts, tmp_path: Path) -> None:
    """A blackout and back (how a DPD test takes a peer away without killing it)."""
    with relay(hosts, tmp_path) as r:
        assert received(ping(hosts.a, hosts.addr_b)) == 3
        r.update(ab=Impairment(drop=1.0))
        assert received(ping(hosts.a, hosts.addr_b, wait=1)) == 0
        r.update(ab=Impairment())
        assert received(ping(hosts.a, hosts.addr_b)) == 3
        stats = r.stop()
    assert stats["generation"] == 2
    assert stats["ab"]["dropped"] == 3


def test_killed_relay_fails_closed(hosts: ThreeHosts, tmp_path: Path) -> None:
    """Without the relay process, traffic stops rather than bypassing the impairments; a new
    relay takes over, and after a clean exit r routes plainly again."""
    with relay(hosts, tmp_path / "1") as r:
        assert received(ping(hosts.a, hosts.addr_b, count=1)) == 1
        r.proc.kill()
        r.proc.wait(10)
        assert received(ping(hosts.a, hosts.addr_b, count=1, wait=1)) == 0
        assert received(ping(hosts.a, hosts.addr6_b, count=1, wait=1)) == 0
    with relay(hosts, tmp_path / "2") as r:
        assert received(ping(hosts.a, hosts.addr_b, count=1)) == 1
        assert r.stop()["ab"]["seen"] == 1
    assert received(ping(hosts.a, hosts.addr_b, count=1)) == 1
    assert received(ping(hosts.a, hosts.addr6_b, count=1)) == 1
    assert hosts.r.run("ip", "rule").stdout.count("lookup") == 3  # local, main, default


def test_time_limit_ends_the_relay(hosts: ThreeHosts, tmp_path: Path) -> None:
    # Long enough that the ping below surely happens while it runs, even on a busy machine.
    r = start_relay(hosts, tmp_path, max_seconds=3.0, ab=Impairment(drop=1.0))
    assert received(ping(hosts.a, hosts.addr_b, count=1, wait=1)) == 0
    assert r.proc.wait(10) == 0  # by itself
    assert r.proc.stdout is not None
    final = json.loads(r.proc.stdout.read())
    assert final["reason"] == "time limit" and 3.0 <= final["seconds"] < 8.0
    assert final["ab"]["dropped"] == 1
    assert received(ping(hosts.a, hosts.addr_b, count=1)) == 1  # plain routing again


def test_bad_config_is_refused(hosts: ThreeHosts, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ab": {"drop": 2}}))
    proc = hosts.r.run(sys.executable, "-m", "espfast.impair", "--config", str(bad), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "espfast.impair: drop must be a probability in [0, 1], not 2"
    # A refused reload keeps the old config and the relay running.
    with relay(hosts, tmp_path / "ok") as r:
        r.config_path.write_text('{"ab": {"drop": "lots"}}')
        r.proc.send_signal(signal.SIGHUP)
        assert received(ping(hosts.a, hosts.addr_b)) == 3
        stats = r.stop()
    assert stats["generation"] == 0
    assert stats["ab"]["dropped"] == 0


def raw_ipv4(src: str, dst: str, proto: int, payload: bytes, *, frag: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, frag, 64, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    return header + payload


def test_relay_survives_odd_packets(hosts: ThreeHosts, tmp_path: Path) -> None:
    """Truncated UDP headers, unknown protocols, fragments, short and bogus ESP/IKE: the
    relay classifies them without falling over and keeps relaying."""
    a, b = hosts.addr_a, hosts.addr_b
    odd = [
        raw_ipv4(a, b, 17, b"\x11\x94"),  # UDP header cut short
        raw_ipv4(a, b, 17, b"\x11\x94\x11\x94\x00\x09\x00\x00\xff"),  # NAT keepalive
        raw_ipv4(a, b, 17, b"\x01\xf4\x01\xf4\x00\x0a\x00\x00\x00\x00"),  # tiny "IKE"
        raw_ipv4(a, b, 17, b"\x11\x94\x11\x94\x00\x0b\x00\x00\x00\x00\x00"),  # cut marker
        raw_ipv4(a, b, 50, b""),  # ESP, empty
        raw_ipv4(a, b, 50, b"\x00\x00\x10\x00" * 3),
        raw_ipv4(a, b, 253, b"garbage" * 10),  # experimental protocol number
        raw_ipv4(a, b, 17, b"\x00" * 30, frag=0x2001),  # a non-first fragment of UDP
        raw_ipv4(a, b, 6, b"\xff" * 3),  # TCP header cut short
    ]
    imp = Impairment(drop=0.5, duplicate=0.5, reorder=0.5, match="ike,esp,port:4500")
    with relay(hosts, tmp_path, ab=imp, seed=9) as r:
        script = (
            "import socket, sys, json\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n"
            f"for p in json.loads(sys.argv[1]):\n"
            f"    for _ in range(10): s.sendto(bytes.fromhex(p), ('{b}', 0))\n"
        )
        hosts.a.run("python3", "-c", script, json.dumps([p.hex() for p in odd]))
        assert wait_for(lambda: r.stats()["ab"]["seen"] >= len(odd) * 10, timeout=10)
        assert received(ping(hosts.a, b)) == 3
        stats = r.stop()
    assert r.proc.returncode == 0
    assert stats["ab"]["matched"] > 0


def static_pair(hosts: ThreeHosts, tmp_path: Path) -> tuple[Running, Running]:
    text_a, text_b = pair_configs(outer=(hosts.addr_a, hosts.addr_b))
    conf_a = write_private(tmp_path / "a.toml", text_a)
    conf_b = write_private(tmp_path / "b.toml", text_b)
    side_a = start_in(hosts.a, conf_a, "--json")
    side_b = start_in(hosts.b, conf_b, "--json")
    return side_a, side_b


def stopped(side: Running) -> dict[str, Any]:
    status, out, err = side.stop()
    assert status == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def test_static_tunnel_through_lossy_relay(hosts: ThreeHosts, tmp_path: Path) -> None:
    imp = Impairment(drop=0.05, match="esp")
    with relay(hosts, tmp_path / "relay", ab=imp, ba=imp, seed=1) as r:
        side_a, side_b = static_pair(hosts, tmp_path)
        out = ping(hosts.a, "198.19.2.1", count=40, interval=0.02, wait=5)
        stats = r.stop()
        report_b = stopped(side_b)
        stopped(side_a)
    assert received(out) >= 30  # about 0.95^2 of 40 get there and back
    assert stats["ab"]["dropped"] + stats["ba"]["dropped"] > 0  # seeded: the same every run
    lost_ab = stats["ab"]["dropped"]
    assert report_b["global"]["rx_packets"] == stats["ab"]["matched"] - lost_ab
    assert report_b["global"]["auth_failures"] == report_b["global"]["replay_drops"] == 0


def test_static_tunnel_esp_duplicates_are_replay_drops(hosts: ThreeHosts, tmp_path: Path) -> None:
    imp = Impairment(duplicate=0.5, match="esp")
    with relay(hosts, tmp_path / "relay", ab=imp, seed=2) as r:
        side_a, side_b = static_pair(hosts, tmp_path)
        assert received(ping(hosts.a, "198.19.2.1", count=20, interval=0.02, wait=5)) == 20
        stats = r.stop()["ab"]
        report_b = stopped(side_b)
        stopped(side_a)
    assert stats["duplicated"] > 0
    assert report_b["global"]["replay_drops"] == stats["duplicated"]
    assert report_b["global"]["rx_packets"] == stats["matched"]
    assert report_b["global"]["auth_failures"] == 0


def test_static_tunnel_accepts_reordered_esp(hosts: ThreeHosts, tmp_path: Path) -> None:
    """ESP reordered within the replay window is accepted: every datagram arrives, in the
    relay's order, and the dataplane counts no replay drops."""
    imp = Impairment(reorder=0.2, reorder_gap=5, match="esp")
    with relay(hosts, tmp_path / "relay", ab=imp, seed=3) as r:
        side_a, side_b = static_pair(hosts, tmp_path)
        got = flow(hosts.a, hosts.b, "198.19.2.1", count=300)
        stats = r.stop()["ab"]
        report_b = stopped(side_b)
        stopped(side_a)
    assert sorted(got) == list(range(300))
    assert got != sorted(got)
    assert stats["reordered"] > 0
    assert report_b["global"]["replay_drops"] == 0
    assert report_b["global"]["rx_packets"] == stats["matched"]
