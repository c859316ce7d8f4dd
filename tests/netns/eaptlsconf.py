"""``espfast up`` configs for road warriors with certificates inside EAP-TLS: a CA made
with ``espfast pki``, the gateway's certificate, clients' certificates (carol; dave,
revoked in the CA's CRL; mallory, carol's name from a CA nobody trusts), and the
gateway's and a client's connection lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from updaemon import client_conf, gateway_conf

from espfast.cli import main
from espfast.static import write_private

GW_ID = "gw.eaptls.test"
CAROL = "carol@eaptls.test"
DAVE = "dave@eaptls.test"
GW_NET, DNS, POOL = "198.19.2.1", "198.19.2.53", "198.19.100.0/24"


@dataclass(frozen=True)
class TlsPki:
    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca" / "ca.crt"

    @property
    def crl(self) -> Path:
        return self.root / "ca" / "ca.crl"

    def cert(self, name: str) -> Path:
        return self.root / "certs" / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.root / "certs" / f"{name}.key"

    def files(self, name: str) -> dict[str, bytes]:
        """A charon client's swanctl files: its certificate and key, our CA."""
        return {f"x509/{name}.crt": self.cert(name).read_bytes(),
                f"private/{name}.key": self.key(name).read_bytes(),
                "x509ca/ca.crt": self.ca.read_bytes()}  # fmt: skip


def make_tls_pki(root: Path) -> TlsPki:
    ca, certs, other = root / "ca", root / "certs", root / "other"
    assert main(["pki", "ca", "--out", str(ca), "--dn", "O=espfast, CN=eap-tls test ca"]) == 0
    assert main(["pki", "issue", "--ca", str(ca), "--id", GW_ID, "--name", "gw",
                 "--out", str(certs)]) == 0  # fmt: skip
    for name, ident in (("carol", CAROL), ("dave", DAVE)):
        assert main(["pki", "issue", "--ca", str(ca), "--id", ident, "--client",
                     "--name", name, "--out", str(certs)]) == 0  # fmt: skip
    assert main(["pki", "crl", "--ca", str(ca), "--revoke", str(certs / "dave.crt")]) == 0
    assert main(["pki", "ca", "--out", str(other), "--dn", "O=other, CN=untrusted ca"]) == 0
    assert main(["pki", "issue", "--ca", str(other), "--id", CAROL, "--client",
                 "--name", "mallory", "--out", str(certs)]) == 0  # fmt: skip
    return TlsPki(root)


def gateway_lines(pki: TlsPki) -> str:
    return (f'auth = "pubkey"\ncert = "{pki.cert("gw")}"\nkey = "{pki.key("gw")}"\n'
            f'cacerts = ["{pki.ca}"]\ncrls = ["{pki.crl}"]\nremote_auth = "eap-tls"')  # fmt: skip


def client_lines(pki: TlsPki, name: str = "carol", eap_id: str = CAROL) -> str:
    return (f'local_auth = "eap-tls"\neap_id = "{eap_id}"\ncert = "{pki.cert(name)}"\n'
            f'key = "{pki.key(name)}"\ncacerts = ["{pki.ca}"]')  # fmt: skip


def gateway_toml(tmp_path: Path, pki: TlsPki, *, listen: str, inner: str = f"{GW_NET}/24",
                 local_ts: str = "198.19.2.0/24", extra: str = "") -> Path:  # fmt: skip
    conf = gateway_conf(listen=listen, local_id=GW_ID, auth=gateway_lines(pki), pool=POOL,
                        dns=DNS, inner=inner, local_ts=local_ts)  # fmt: skip
    conf = conf.replace("[interface]\n", f"[interface]\n{extra}")
    return write_private(tmp_path / "gw.toml", conf)


def client_toml(tmp_path: Path, pki: TlsPki, *, gateway: str, listen: str, name: str = "carol",
                eap_id: str = CAROL, local_ts: str = "198.19.2.0/24") -> Path:  # fmt: skip
    conf = client_conf(listen=listen, gateway=gateway, local_id=eap_id, remote_id=GW_ID,
                       auth=client_lines(pki, name, eap_id), remote_ts=local_ts)  # fmt: skip
    return write_private(tmp_path / f"rw-{name}-{eap_id.split('@')[0]}.toml", conf)
