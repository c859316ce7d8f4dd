"""Review item 7: one authenticated identity asks for more IKE SAs, and more Child SAs on
one of them, than ike_sas_per_identity / child_sas_per_ike_sa allow: the IKE SAs past the
cap fail with AUTHENTICATION_FAILED, the Child SAs with NO_ADDITIONAL_SAS, and the daemon
holds no more than the caps. (That per-datagram work does not grow with the number of
IKE SAs is measured by ``python -m bench.dos scale``.)"""

from __future__ import annotations

from tests.security.secharness import end, responder, tool

CAP_IKE, CAP_CHILD = 3, 3


def test_one_identity_is_held_to_its_caps() -> None:
    extra = (f"ike_sas_per_identity = {CAP_IKE}\nchild_sas_per_ike_sa = {CAP_CHILD}\n"
             "cookie_threshold_ip = 100\nblock_threshold = 100\n")  # fmt: skip
    with responder("sec-id", extra=extra) as (hosts, b, a_path):
        got = tool(hosts.a, "caps", str(a_path), hosts.addr_b, "--source", hosts.addr_a,
                   "--count", str(CAP_IKE + 2), "--children", str(CAP_CHILD + 1),
                   "--timeout", "15")  # fmt: skip
        counts, _ = end(b)
    assert got["ike_up"] == CAP_IKE, got
    refused = got["ike_refused"]
    assert isinstance(refused, list) and len(refused) == 2, got
    assert all("AUTHENTICATION_FAILED" in r for r in refused), got
    # The IKE_AUTH Child SA and CAP_CHILD - 1 more; the others refused.
    assert got["children_up"] == CAP_CHILD - 1 and got["children_refused"] == 2, got
    assert all("NO_ADDITIONAL_SAS" in r for r in got["child_failures"]), got  # type: ignore[attr-defined]
    assert counts["ike_sas_up"] == CAP_IKE, counts
