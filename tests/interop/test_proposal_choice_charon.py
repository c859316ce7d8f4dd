"""Review item 11: ``espfast up`` initiates with two IKE and two ESP proposals; charon
(responder) accepts only the second of each and answers SA(proposal #2), keeping the
number it had in our offer (RFC 7296 §3.3.1). espfast takes the answer (it used to refuse
it as "proposal number 2 out of sequence") and the tunnel carries ping."""

from __future__ import annotations

from pathlib import Path

from espfast.netns import TwoHosts
from espfast.static import start_in, write_private
from tests.interop.conftest import INNER_B, CharonFactory
from tests.interop.test_up_charon import (
    PSK_AUTH,
    espfast_conf,
    espfast_status,
    start_charon,
    tunnel_works,
)

OURS_IKE = "aes256gcm16-prfsha384-x25519,aes128gcm16-prfsha256-x25519"
OURS_ESP = "aes256gcm16,aes128gcm16"
CHARONS_IKE, CHARONS_ESP = "aes128gcm16-prfsha256-x25519", "aes128gcm16"


def test_charon_picks_our_second_proposals(charons: CharonFactory, tmp_path: Path) -> None:
    with TwoHosts.create("prop2") as hosts:
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        charon = start_charon(hosts, charons, "psk", CHARONS_IKE, CHARONS_ESP, {})
        text = espfast_conf(hosts, initiate=True, esp=OURS_ESP, ike=OURS_IKE, auth=PSK_AUTH)
        up = start_in(hosts.a, write_private(tmp_path / "a.toml", text), "-v", command="up")
        try:
            child = charon.wait_child("net")
            assert tunnel_works(hosts)
            (ours,) = espfast_status(hosts)["ike_sas"]
        finally:
            code, _, err = up.stop()
        assert code == 0, err
        assert child["encr-alg"] == "AES_GCM_16" and child.get("encr-keysize") == "128", child
        assert ours["proposal"] == CHARONS_IKE
        (mine,) = ours["child_sas"]
        assert mine["transform"] == CHARONS_ESP
        assert "out of sequence" not in err, err
