"""The daemon fed mutated IKE datagrams over UDP (500, and 4500 with the non-ESP marker):
mutants of an IKE_SA_INIT request and of encrypted requests (whole and fragmented) of
half-open IKE SAs it really holds. Bounded: 4,000 datagrams, 30 s at most. It never logs
a traceback, stays up, counts what it drops, and a legitimate handshake completes after."""

from __future__ import annotations

from tests.security.secharness import end, responder, tool

COUNT = 4000


def test_mutated_ike_datagrams_are_dropped_and_counted() -> None:
    with responder("sec-fz", extra="cookie_threshold_ip = 100\nblock_threshold = 100\n") as (
        hosts, b, a_path,
    ):  # fmt: skip
        fuzz = tool(hosts.a, "fuzz", str(a_path), hosts.addr_b, "--source", hosts.addr_a,
                    "--count", str(COUNT), "--seconds", "30", "--seed", "7")  # fmt: skip
        legit = tool(hosts.a, "handshakes", str(a_path), hosts.addr_b, "--source",
                     hosts.addr_a, "--count", "1", "--timeout", "10")  # fmt: skip
        counts, _ = end(b)
    assert fuzz["sent"] == COUNT and fuzz["half_open"] == 2, fuzz
    assert legit["failed"] == 0, legit
    assert counts["datagrams_in"] >= COUNT // 2, counts
    dropped = counts["malformed"] + counts["ike_sa_init_dropped"] + counts["ike_fragments_dropped"]
    assert dropped > COUNT // 10, counts
