"""Review item 4: one address opens half-open IKE SAs as fast as it can (answering
COOKIEs, never authenticating). It gets at most block_threshold of them, and a client at
another address still gets its IKE SA."""

from __future__ import annotations

from tests.security.secharness import end, responder, tool

HALF_OPEN_LIMIT, BLOCK = 40, 5


def test_one_address_cannot_fill_the_half_open_pool() -> None:
    extra = f"half_open_limit = {HALF_OPEN_LIMIT}\n"
    with responder("sec-ho", extra=extra) as (hosts, b, a_path):
        legit = "198.18.0.3"
        hosts.a.run("ip", "addr", "add", f"{legit}/24", "dev", "veth-a")
        held = tool(hosts.a, "hold", str(a_path), hosts.addr_b, "--source", hosts.addr_a,
                    "--count", str(4 * HALF_OPEN_LIMIT), "--seconds", "10")  # fmt: skip
        other = tool(hosts.a, "handshakes", str(a_path), hosts.addr_b, "--source", legit,
                     "--count", "2", "--timeout", "10")  # fmt: skip
        counts, _ = end(b)
    assert 0 < held["half_open"] <= BLOCK, held  # (strongSwan's block_threshold default)
    assert other["failed"] == 0, other
    assert counts["ike_sa_init_dropped"] > 0 and counts["ike_sas_up"] == 2, counts
