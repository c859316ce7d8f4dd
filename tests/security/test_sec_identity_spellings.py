"""Review item 6, one certificate, many identities: a client whose certificate proves
several IDs (its e-mail address and FQDN in any letter case, its subject DN, its key
ID) connects under six spellings. It is one identity: one lease from the pool, so
another client still gets an address (leases and ``unique`` key on the canonical
identity, the certificate's subject).

Gateway ``espfast up`` in b with a pool of six addresses; the attacker, espfast's
control plane driven from the test (tests/security/sec_authz.py) at 198.18.0.3 with
alice's certificate; bob, an ``espfast up`` client in a, comes after."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from sec_authz import Attacker, daemon_status, ike_config
from updaemon import client_conf, gateway_conf, ping

from espfast.cli import main
from espfast.control.constants import IdType
from espfast.control.events import IkeSaUp
from espfast.control.identity import Identity
from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private

GW_NET = "198.19.2.1"


def pki(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    assert main(["pki", "ca", "--out", str(d)]) == 0
    for args in (["--id", "gw.vip.test", "--name", "gw"],
                 ["--id", "alice@vip.test", "--san", "alice.vip.test", "--name", "alice",
                  "--client"],
                 ["--id", "bob@vip.test", "--name", "bob", "--client"]):  # fmt: skip
        assert main(["pki", "issue", "--ca", str(d), "--out", str(d), *args]) == 0
    return d


def auth(d: Path, who: str) -> str:
    return (f'auth = "pubkey"\ncert = "{d}/{who}.crt"\nkey = "{d}/{who}.key"\n'
            f'cacerts = ["{d}/ca.crt"]')  # fmt: skip


def spellings(cert_path: Path) -> list[tuple[int, bytes]]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    dn = Identity.from_name(cert.subject)
    return [
        (IdType.RFC822_ADDR, b"alice@vip.test"),
        (IdType.RFC822_ADDR, b"ALICE@Vip.Test"),
        (IdType.FQDN, b"alice.vip.test"),
        (IdType.FQDN, b"Alice.VIP.test"),
        (int(dn.type), dn.data),
        (IdType.KEY_ID, ski),
    ]


def test_one_certificate_under_six_spellings_takes_one_address(tmp_path: Path) -> None:
    d = pki(tmp_path)
    gw_conf = gateway_conf(listen="198.18.0.2", local_id="gw.vip.test", auth=auth(d, "gw"),
                           pool="198.19.100.0/29", dns="198.19.2.53", inner=f"{GW_NET}/24",
                           local_ts="198.19.2.0/24")  # fmt: skip
    alice = client_conf(listen="198.18.0.3", gateway="198.18.0.2", local_id="alice@vip.test",
                        remote_id="gw.vip.test", auth=auth(d, "alice"),
                        remote_ts="198.19.2.0/24", name="efatk0")  # fmt: skip
    bob = client_conf(listen="198.18.0.1", gateway="198.18.0.2", local_id="bob@vip.test",
                      remote_id="gw.vip.test", auth=auth(d, "bob"),
                      remote_ts="198.19.2.0/24")  # fmt: skip
    with TwoHosts.create("spell") as hosts:
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw_conf), "-v", command="up")
        attacker = Attacker(hosts)
        client = None
        try:
            leases = []
            for ident in spellings(d / "alice.crt"):
                cfg = ike_config(tmp_path / "alice.toml", alice, local_id=ident)
                sa = attacker.connect(cfg)
                ups = [e for e in attacker.event(IkeSaUp) if e.ike_sa_id == sa.ike_sa_id]
                leases.append(ups[0].virtual_ips if ups else attacker.outcome(sa))
            assert leases == [("198.19.100.1",)] * 6, leases
            # Bob comes after alice's six: the pool still has addresses for him.
            client = start_in(hosts.a, write_private(tmp_path / "bob.toml", bob), command="up")
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=15)
            doc = daemon_status(hosts.b)
            vips = {s["remote_id"]: s.get("peer_virtual_ips") for s in doc["ike_sas"]}
            assert vips["bob@vip.test"] == ["198.19.100.2"], vips
        finally:
            attacker.close()
            if client is not None:
                client.stop()
            gw.stop()
