"""IKE_AUTH with EAP-TLS (RFC 7296 §2.16, RFC 5216/9190) between an in-memory initiator
(the road warrior: its certificate inside EAP-TLS) and responder (the gateway: its
certificate in IKE AUTH and in TLS), and the ``espfast up`` keys that configure it."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
from ikepair import Pair, events
from test_ike_auth_certs import NOW, cert_configs, pki

from espfast.cli import main
from espfast.config import ConfigError, load_up
from espfast.control.auth import certificate_auth, certificate_check, certificate_identity
from espfast.control.config import IkeConfig
from espfast.control.eap.tls import EapTlsPeer, EapTlsSetup
from espfast.control.events import ChildSaUp, IkeSaDown, IkeSaUp
from espfast.control.tasks.ike_auth_eap import IkeAuthEap
from espfast.static import write_private
from tests.unit.profile_pki import CLIENT_ID, GATEWAY_ADDR, GATEWAY_ID, gateway_toml, make_pki


def eaptls_configs(eap_id: str = "a.example.org", tls13: bool = True
                   ) -> tuple[IkeConfig, IkeConfig]:  # fmt: skip
    ci, cr = cert_configs()
    trust, cred_a, cred_b = pki("ecdsa")
    check = certificate_check(trust, NOW.timestamp)
    gw = EapTlsSetup.server(cred_b, trust.cas, check)
    client = replace(certificate_auth(None, trust, NOW.timestamp), eap_identity=eap_id,
                     eap_tls_peer=EapTlsSetup.client(cred_a, check, tls13=tls13))  # fmt: skip
    return replace(ci, auth=client), replace(cr, remote_id=None, auth=replace(cr.auth, eap_tls=gw))


@pytest.mark.parametrize("tls13", [True, False], ids=["tls13", "tls12"])
def test_eap_tls_handshake_and_msk_auth(tls13: bool) -> None:
    p = Pair(*eaptls_configs(tls13=tls13))
    # IKE_SA_INIT { SA, KEi, Ni } -->   <-- { SA, KEr, Nr, CERTREQ }
    p.roundtrip()
    assert p.i is not None
    task = next(t for t in (p.i.tm.active, *p.i.tm.queue) if isinstance(t, IkeAuthEap))
    # IKE_AUTH { IDi, CERTREQ, IDr, SAi2, TSi, TSr } -->        (no AUTH: EAP)
    # <-- { IDr, CERT, AUTH, EAP(Request/Identity) }
    # IKE_AUTH { EAP(Response/Identity) } -->  <-- { EAP(Request/TLS Start) }
    # IKE_AUTH { EAP(Response/TLS ClientHello) } -->  <-- { EAP(Request/TLS ServerHello..) }
    # IKE_AUTH { EAP(Response/TLS Certificate, CertificateVerify, Finished) } -->
    # <-- { EAP(Request/TLS [Finished] | commitment) }
    # IKE_AUTH { EAP(Response/TLS ack) } -->  <-- { EAP(Success) }
    # IKE_AUTH { AUTH(MSK) } -->  <-- { AUTH(MSK), SAr2, TSi, TSr }
    p.establish(max_round_trips=12)
    assert p.r is not None and p.i.is_established and p.r.is_established
    assert p.r.pending_auth is None
    assert isinstance(task.peer, EapTlsPeer)
    assert task.peer.version == ("TLSv1.3" if tls13 else "TLSv1.2")
    assert [type(e) for e in events(p.i)] == [IkeSaUp, ChildSaUp]
    ev_r = events(p.r)
    assert [type(e) for e in ev_r] == [IkeSaUp, ChildSaUp]
    up = ev_r[0]
    assert isinstance(up, IkeSaUp) and up.remote_id == "a.example.org"
    # The gateway knows the client as its certificate's holder, as with IKE certificates.
    _, cred_a, _ = pki("ecdsa")
    assert p.r.peer_key == certificate_identity(cred_a.cert)


def test_eap_identity_not_in_certificate_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    p = Pair(*eaptls_configs(eap_id="c.example.org"))
    p.roundtrip()
    with caplog.at_level(logging.INFO, logger="espfast.control"):
        for _ in range(8):
            p.roundtrip()
            if p.i is not None and p.i.is_destroyed:
                break
    assert p.i is not None and p.i.is_destroyed
    assert p.r is not None and p.r.is_destroyed
    down = [e for e in events(p.i) if isinstance(e, IkeSaDown)]
    assert down and "AUTHENTICATION_FAILED" in down[0].reason
    lines = [r.getMessage() for r in caplog.records if "'c.example.org'" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"gw-b[{p.r.ike_sa_id & 0xFFFF}]: EAP-TLS authentication "
                               "of 'c.example.org' failed: ")  # fmt: skip


# -- espfast up configuration ----------------------------------------------------------------


def client_toml(path: Path, pki_root: Path, extra: str = "") -> Path:
    return write_private(
        path,
        f"""
[interface]
name = "efrw0"

[[connection]]
name = "home"
remote = "{GATEWAY_ADDR}"
local_auth = "eap-tls"
cert = "{pki_root}/certs/alice.crt"
key = "{pki_root}/certs/alice.key"
cacerts = ["{pki_root}/ca/ca.crt"]
remote_id = "{GATEWAY_ID}"
vips = ["0.0.0.0"]
{extra}
[[connection.child]]
name = "net"
remote_ts = ["198.19.2.0/24"]
""",
    )


def test_config_gateway_and_client(tmp_path: Path) -> None:
    p = make_pki(tmp_path / "pki")
    gw = gateway_toml(p, tmp_path / "gw.toml")
    write_private(gw, gw.read_text().replace("pool = [", 'remote_auth = "eap-tls"\npool = ['))
    auth = load_up(gw).connections[0].ike.auth
    assert auth.eap_tls is not None and auth.eap_server and auth.signer is not None
    (conn,) = load_up(client_toml(tmp_path / "rw.toml", p.root)).connections
    a = conn.ike.auth
    assert a.eap_tls_peer is not None and a.signer is None and a.certs == ()
    assert a.eap_identity == f"CN={CLIENT_ID}"  # the certificate's subject by default
    (conn,) = load_up(client_toml(tmp_path / "rw2.toml", p.root,
                                  f'eap_id = "{CLIENT_ID}"\n')).connections  # fmt: skip
    assert conn.ike.auth.eap_identity == CLIENT_ID


def test_config_eap_tls_gateway_needs_cas(tmp_path: Path) -> None:
    p = make_pki(tmp_path / "pki")
    gw = gateway_toml(p, tmp_path / "gw.toml")
    text = gw.read_text().replace(f'cacerts = ["{p.ca}"]\n', 'remote_auth = "eap-tls"\n')
    write_private(gw, text)
    with pytest.raises(ConfigError, match="cacerts"):
        load_up(gw)


def test_reload_sees_eap_tls_unchanged_until_a_file_changes(tmp_path: Path) -> None:
    from espfast.reload import fingerprints

    p = make_pki(tmp_path / "pki")
    gw = gateway_toml(p, tmp_path / "gw.toml")
    write_private(gw, gw.read_text().replace("pool = [", 'remote_auth = "eap-tls"\npool = ['))
    before = fingerprints(load_up(gw))
    assert fingerprints(load_up(gw)) == before  # the TLS context is no part of it
    assert main(["pki", "crl", "--ca", str(p.ca.parent), "--out", str(tmp_path / "ca.crl")]) == 0
    write_private(gw, gw.read_text().replace("pool = [", f'crls = ["{tmp_path}/ca.crl"]\npool = ['))
    assert fingerprints(load_up(gw)) != before
