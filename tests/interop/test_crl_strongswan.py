"""CRLs and certificates made by strongSwan's own ``pki`` (the strongswan-pki package), read
by espfast's trust store with each revocation policy: the outcomes strongSwan's revocation
plugin gives for the same files (a revoked certificate, one that names a CRL URI, one that
names none; with the CA's CRL and without it)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from espfast.control.certs import AuthenticationError, TrustStore, load_certificate_file
from espfast.netns import which


def pki(workdir: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """``pki ARGS`` in ``workdir``; its stdout (strongSwan's plugin chatter goes to stderr)."""
    done = subprocess.run(["pki", *args], cwd=workdir, input=stdin, capture_output=True,
                          check=True, timeout=60)  # fmt: skip
    return done.stdout


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.crt; a.crt (names a CRL URI) revoked in ca.crl; b.crt (no URI) not revoked."""
    if which("pki") is None:
        pytest.fail("strongSwan's pki is not installed (make deps installs strongswan-pki)")
    d = tmp_path_factory.mktemp("sspki")
    (d / "ca.key").write_bytes(pki(d, "--gen", "--type", "ecdsa", "--size", "256"))
    (d / "ca.crt").write_bytes(pki(d, "--self", "--ca", "--lifetime", "30", "--in", "ca.key",
                                   "--dn", "C=CH, O=strongSwan, CN=strongSwan CA",
                                   "--outform", "pem"))  # fmt: skip
    for name, extra in (("a", ["--crl", "http://crl.example.test/ca.crl"]), ("b", [])):
        (d / f"{name}.key").write_bytes(pki(d, "--gen", "--type", "ecdsa", "--size", "256"))
        public = pki(d, "--pub", "--in", f"{name}.key")
        (d / f"{name}.crt").write_bytes(pki(
            d, "--issue", "--lifetime", "30", "--cacert", "ca.crt", "--cakey", "ca.key",
            "--dn", f"CN={name}.example.test", "--san", f"{name}.example.test", *extra,
            "--outform", "pem", stdin=public,
        ))  # fmt: skip
    (d / "ca.crl").write_bytes(pki(d, "--signcrl", "--cacert", "ca.crt", "--cakey", "ca.key",
                                   "--reason", "key-compromise", "--cert", "a.crt",
                                   "--lifetime", "1", "--outform", "pem"))  # fmt: skip
    return d


# (policy, with the CRL) -> what happens to a.crt (revoked, names a URI) and b.crt
EXPECTED = {
    ("strict", True): ("revoked", "ok"),
    ("ifuri", True): ("revoked", "ok"),
    ("relaxed", True): ("revoked", "ok"),
    ("strict", False): ("status failed", "status skipped"),
    ("ifuri", False): ("status failed", "ok"),
    ("relaxed", False): ("ok", "ok"),
}


@pytest.mark.parametrize(("policy", "with_crl"), EXPECTED)
def test_strongswan_pki_files(files: Path, policy: str, with_crl: bool) -> None:
    crls = [files / "ca.crl"] if with_crl else []
    store = TrustStore.load([files / "ca.crt"], crls, revocation=policy)
    for name, expected in zip("ab", EXPECTED[policy, with_crl], strict=True):
        cert = load_certificate_file(files / f"{name}.crt")[0]
        if expected == "ok":
            assert store.verify_chain(cert, [], time.time())[0] == cert
            continue
        with pytest.raises(AuthenticationError) as exc:
            store.verify_chain(cert, [], time.time())
        words = "reason key_compromise" if expected == "revoked" else expected
        assert words in str(exc.value), exc.value
