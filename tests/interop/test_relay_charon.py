"""strongSwan <-> strongSwan through the impairment relay (a -- r -- b): IKE survives 30%
loss of its datagrams in each direction, and ESP passes the relay untouched.

Proves the relay with a real IKEv2 peer before espfast's own lossy-network scenarios use
it: IKE on 500 and (after IKE_SA_INIT, with the non-ESP marker) on 4500 is told apart from
ESP in UDP on 4500, and the retransmissions that make it through get answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from espfast.impair import Impairment, relay
from espfast.netns import ThreeHosts
from tests.interop.conftest import INNER_A, INNER_B, CharonFactory
from tests.interop.strongswan import Psk, psk_pair

PSK = Psk(ids=("a.relay.test", "b.relay.test"), secret=b"relay interop test secret")
# Fast retransmissions (0.5 s, x1.4) so that a lost exchange costs little time; charon's
# defaults (4 s, x1.8) would make the test slow, not different.
RETRANSMIT = {"retransmit_timeout": "0.5", "retransmit_base": "1.4", "retransmit_tries": "10"}


@pytest.fixture
def three() -> Iterator[ThreeHosts]:
    with ThreeHosts.create("rly") as hosts:
        for ns, inner in ((hosts.a, INNER_A), (hosts.b, INNER_B)):
            ns.run("ip", "addr", "add", f"{inner}/32", "dev", "lo")
        yield hosts


def test_ike_under_30_percent_loss(
    three: ThreeHosts, charons: CharonFactory, tmp_path: Path
) -> None:
    lossy = Impairment(drop=0.3, match="ike")
    conf_a, conf_b = psk_pair((three.addr_a, three.addr_b), PSK, ("198.19.1.0/24", "198.19.2.0/24"))
    # Seed 33 drops the first IKE datagram each way (the IKE_SA_INIT request, then the
    # response to its retransmission), and more later: both ends must retransmit.
    with relay(three, tmp_path / "relay", ab=lossy, ba=lossy, seed=33) as r:
        a = charons.start(three.a, conf_a, settings=RETRANSMIT)
        b = charons.start(three.b, conf_b, settings=RETRANSMIT)
        assert "CHILD_SA net{1} established" in a.initiate("net", timeout=30)
        b.wait_child("net", timeout=10)
        three.a.run("ping", "-c", "5", "-i", "0.1", "-W", "2", "-I", INNER_A, INNER_B)
        stats = r.stop()
    assert stats["ab"]["dropped"] > 0 and stats["ba"]["dropped"] > 0
    assert stats["ab"]["matched"] >= 2 + stats["ab"]["dropped"]  # IKE_SA_INIT + IKE_AUTH
    # ESP was not IKE: 5 echo requests a -> b and 5 replies, none impaired.
    assert stats["ab"]["seen"] - stats["ab"]["matched"] >= 5
    assert stats["ba"]["seen"] - stats["ba"]["matched"] >= 5
    assert int(b.installed_children("net")[0]["packets-in"]) >= 5
    assert "retransmit" in a.log(None) + b.log(None)
