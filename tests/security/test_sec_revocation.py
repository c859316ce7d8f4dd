"""Revocation (adversarial review, item 2): ``espfast pki crl`` writes a CRL and a real
``espfast up`` takes it (``crls``, ``revocation = "strict"``). A peer whose certificate is
not revoked gets in (strict: the CA's CRL is current and does not list it); once the CA
revokes it (``espfast pki crl --revoke``, the same file extended while the daemon runs)
the same peer is refused with AUTHENTICATION_FAILED, and the daemon says so in one log
line naming the certificate. A CRL update that does not parse is one log line, and the
revocation stays in force."""

from __future__ import annotations

import re
from pathlib import Path

from cryptography import x509

from espfast.cli import main
from espfast.control.events import IkeSaDown, IkeSaUp
from espfast.netns import TwoHosts
from tests.netns.updaemon import counters
from tests.security.secpeer import attack, peer_config, pki, pubkey_configs, start_b


def test_revoked_certificate_is_refused_after_the_crl_changes(tmp_path: Path) -> None:
    ca = pki(tmp_path)
    assert main(["pki", "crl", "--ca", str(ca)]) == 0  # a current CRL revoking nothing
    crl_lines = f'crls = ["{ca}/ca.crl"]\nrevocation = "strict"\n'
    a_path, b_path = pubkey_configs(tmp_path, ca, crl_lines)
    peer = peer_config(a_path)
    serial = x509.load_pem_x509_certificate((ca / "a.crt").read_bytes()).serial_number
    with TwoHosts.create("sec-crl") as hosts:
        b = start_b(hosts, b_path)
        before = attack(hosts, peer)
        assert main(["pki", "crl", "--ca", str(ca), "--revoke", str(ca / "a.crt")]) == 0
        after = attack(hosts, peer)
        (ca / "ca.crl").write_bytes(b"-----BEGIN X509 CRL-----\ncut short")
        still = attack(hosts, peer)
        status, out, err = b.stop()
    assert isinstance(before, IkeSaUp), before
    assert isinstance(after, IkeSaDown), after
    assert "AUTHENTICATION_FAILED" in after.reason, after
    assert isinstance(still, IkeSaDown) and "AUTHENTICATION_FAILED" in still.reason, still
    assert status == 0, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "is revoked" in line]
    assert len(lines) == 2 and lines[0].split(": ", 1)[1] == lines[1].split(": ", 1)[1], err
    bad = [line for line in err.splitlines() if "not a usable CRL" in line]
    assert len(bad) == 1 and bad[0].endswith("the CRL read before stays in force"), err
    assert re.search(
        rf"WARNING espfast\.daemon: site: IKE SA down: IKE_AUTH refused: authentication "
        rf'failed: certificate "CN=a\.example\.test" \(serial {serial:x}\) is revoked \(CRL '
        rf"of CN=espfast Root CA,O=espfast: revoked on \d{{4}}-\d\d-\d\d\)$",
        lines[0],
    ), lines[0]
    c = counters(out)
    assert c["ike_sas_up"] == 1 and c["ike_protocol_errors"] == 2, out
