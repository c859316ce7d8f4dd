"""Review item 5: half-open IKE SAs each sent every fragment but the last of messages
of 30 fragments of 60 kB (RFC 7383), under the expected Message ID and others. Only the
expected one is reassembled, within 64 KiB per IKE SA: the daemon's memory stays flat
(before the bound, this held about 7 MiB per half-open SA) and the drops are counted."""

from __future__ import annotations

from tests.security.secharness import end, responder, rss_kib, tool

MIB = 1024


def test_fragment_sets_that_never_complete_cost_no_memory() -> None:
    with responder("sec-fr") as (hosts, b, a_path):
        before = rss_kib(b.pid)
        sent = tool(hosts.a, "fragments", str(a_path), hosts.addr_b, "--source", hosts.addr_a,
                    "--sas", "10", "--messages", "4", "--size", "60000")  # fmt: skip
        # The last fragments are in once b has answered something later: a ping of IKE.
        tool(hosts.a, "handshakes", str(a_path), hosts.addr_b, "--source", hosts.addr_a,
             "--count", "1", "--timeout", "10")  # fmt: skip
        growth = rss_kib(b.pid) - before
        counts, _ = end(b)
    assert sent["half_open"] > 0 and sent["fragments"] > 100, sent
    assert growth < 16 * MIB, f"RSS grew by {growth} KiB under {sent}"
    assert counts["ike_fragments_dropped"] > 0, counts
