"""Review item 8, connection policy: the responder picks a connection by proposal in
IKE_SA_INIT, before the peer says who it is; after IKE_AUTH the connection must be the
one whose identity and authentication matched (a catch-all ``%any`` connection listed
first must not lock a site out), and its IKE proposals must allow what was negotiated
(else AUTHENTICATION_FAILED, as strongSwan's peer config lookup).

Gateway ``espfast up`` in b; the site, an ``espfast up`` in a; the attacker, espfast's
control plane driven from the test (tests/security/sec_authz.py) at 198.18.0.3 with the
site's own PSK and identity."""

from __future__ import annotations

from pathlib import Path

from sec_authz import Attacker, daemon_status, ike_config
from updaemon import ping

from espfast.control.proposals import parse_ike
from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private

GW_NET = "198.19.2.1"
SITE_KEY = "the site's own pre-shared key, long enough"
AES128 = "aes128gcm16-prfsha256-x25519"
AES256 = "aes256gcm16-prfsha384-x25519"


def connection(name: str, remote_id: str | None, psk: str, proposals: str | None,
               remote_ts: str) -> str:  # fmt: skip
    rid = f'remote_id = "{remote_id}"' if remote_id else ""
    props = f'proposals = "{proposals}"' if proposals else ""
    return f"""
[[connection]]
name = "{name}"
remote = "%any"
local_id = "gw.site.test"
{rid}
psk = "{psk}"
{props}

[[connection.child]]
name = "net"
local_ts = ["198.19.2.0/24"]
remote_ts = ["{remote_ts}"]
"""


def gateway(*connections: str) -> str:
    return f"""
[interface]
name = "efgw0"
addresses = ["{GW_NET}/24"]
listen = "198.18.0.2:4500"
{"".join(connections)}"""


def site(listen: str, proposals: str, name: str = "efsite0") -> str:
    return f"""
[interface]
name = "{name}"
addresses = ["198.19.1.1/24"]
listen = "{listen}:4500"

[[connection]]
name = "gw"
remote = "198.18.0.2"
local_id = "a.site.test"
remote_id = "gw.site.test"
psk = "{SITE_KEY}"
proposals = "{proposals}"

[[connection.child]]
name = "net"
local_ts = ["198.19.1.0/24"]
remote_ts = ["198.19.2.0/24"]
"""


def test_a_catch_all_connection_listed_first_does_not_lock_out_a_site(tmp_path: Path) -> None:
    """ "open" (any identity, the road warriors' key, default proposals, which include the
    site's) comes first in the gateway's config; the site still gets its connection."""
    gw_conf = gateway(
        connection("open", None, "the road warriors' key, long enough", None, "198.19.50.0/24"),
        connection("site-a", "a.site.test", SITE_KEY, AES128, "198.19.1.0/24"),
    )
    with TwoHosts.create("lock") as hosts:
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw_conf), "-v", command="up")
        peer = start_in(hosts.a, write_private(tmp_path / "site.toml", site("198.18.0.1", AES128)),
                        command="up")  # fmt: skip
        try:
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=15), gw.stderr_head
            (ike,) = daemon_status(hosts.b)["ike_sas"]
            assert (ike["name"], ike["remote_id"]) == ("site-a", "a.site.test")
        finally:
            peer.stop()
            gw.stop()


def test_a_peer_gets_only_the_algorithms_its_connection_allows(tmp_path: Path) -> None:
    """Site a's connection allows aes128gcm16 only, site c's aes256gcm16. Holding a's
    key, the attacker offers aes256gcm16 (IKE_SA_INIT takes it for c's connection) and
    authenticates as a: refused. The same credential with a's algorithms comes up."""
    gw_conf = gateway(
        connection("site-c", "c.site.test", "site c's pre-shared key, long enough", AES256,
                   "198.19.3.0/24"),
        connection("site-a", "a.site.test", SITE_KEY, AES128, "198.19.1.0/24"),
    )  # fmt: skip
    with TwoHosts.create("algs") as hosts:
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw_conf), "-v", command="up")
        attacker = Attacker(hosts)
        try:
            cfg = ike_config(tmp_path / "atk.toml", site("198.18.0.3", AES128, "efatk0"),
                             ike_proposals=parse_ike(AES256))  # fmt: skip
            sa = attacker.connect(cfg)
            outcome = attacker.outcome(sa)
            assert "IkeSaUp" not in outcome, outcome
            assert any("AUTHENTICATION_FAILED" in o for o in outcome), outcome
            assert daemon_status(hosts.b)["ike_sas"] == []
            # The credential is good: with the algorithms of its connection, it is let in.
            sa = attacker.connect(ike_config(tmp_path / "ok.toml",
                                             site("198.18.0.3", AES128, "efatk0")))  # fmt: skip
            assert attacker.outcome(sa)[:2] == ["IkeSaUp", "ChildSaUp"], attacker.outcome(sa)
            (ike,) = daemon_status(hosts.b)["ike_sas"]
            assert (ike["name"], ike["proposal"]) == ("site-a", AES128)
        finally:
            attacker.close()
            _, _, err = gw.stop()
    assert "no connection for peer a.site.test" in err, err
