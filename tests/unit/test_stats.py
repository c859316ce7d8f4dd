from __future__ import annotations

import dataclasses

from espfast.dataplane import Stats
from espfast.static import format_report


def _stats(**moved: int) -> Stats:
    zero = {f.name: 0 for f in dataclasses.fields(Stats)}
    return Stats(**(zero | moved))


def test_offload_and_traffic_counters_are_not_drops() -> None:
    s = _stats(rx_packets=10, tx_packets=9, tx_gso=3, rx_gro=2, tun_gro=1, tun_tso=4, no_sa=2)
    assert s.drops() == {"no_sa": 2}


def test_static_report_lists_only_drops_as_dropped() -> None:
    g = dataclasses.asdict(_stats(tx_packets=5, tx_gso=7, replay_drops=1))
    report = {"interface": "espfast0", "seconds": 1.0, "global": g, "sas": [],
              "ike_datagrams_ignored": 0}  # fmt: skip
    text = format_report(report)
    assert "dropped: replay_drops 1" in text
    assert "tx_gso" not in text
