"""``espfast up -c`` with bad certificate settings: one clear line each, exit status 2,
before anything is opened (so no root needed). The certificates come from ``espfast
pki`` (espfast/ca.py), the bad ones made with its own functions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from espfast.ca import cert_pem, generate_key, issue_cert, key_pem, load_ca
from espfast.cli import main
from espfast.control.identity import Identity
from espfast.static import write_private
from espfast.up import pair_configs

ID = "a.example.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca/ (trusted) and other/ (a second CA), a.crt in both, and expired/future/a.crt
    issued by ca/ outside their validity."""
    root = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other"):
        assert main(["pki", "ca", "--out", str(root / ca)]) == 0
        assert main(["pki", "issue", "--ca", str(root / ca), "--id", ID, "--name", "a",
                     "--out", str(root / ca)]) == 0  # fmt: skip
    ca_cert, ca_key = load_ca(root / "ca")
    now = dt.datetime.now(dt.UTC)
    for name, start in (("expired", now - dt.timedelta(days=10)),
                        ("future", now + dt.timedelta(days=10))):  # fmt: skip
        key = generate_key()
        cert = issue_cert(ca_cert, ca_key, key.public_key(), Identity.parse(ID), now=start, days=1)
        (root / name).mkdir()
        (root / name / "a.crt").write_bytes(cert_pem(cert))
        write_private(root / name / "a.key", key_pem(key).decode())
    return root


def up_config(tmp_path: Path, *, local_id: str, cert: Path, key: Path, ca: Path) -> Path:
    text = pair_configs("a pre-shared key long enough for the test")[0]
    text = text.replace('psk = "a pre-shared key long enough for the test"', (
        f'auth = "pubkey"\ncert = "{cert}"\nkey = "{key}"\ncacerts = ["{ca}"]'
    ))  # fmt: skip
    text = text.replace('local_id = "198.18.0.1"', f'local_id = "{local_id}"')
    return write_private(tmp_path / "a.toml", text)


# case -> (local_id, cert, key, cacerts relative to the pki, words of the one error line)
CASES = {
    "expired cert": (ID, "expired/a.crt", "expired/a.key", "ca/ca.crt",
                     ["connection[0].cert", "expired on"]),
    "cert not yet valid": (ID, "future/a.crt", "future/a.key", "ca/ca.crt",
                           ["connection[0].cert", "not valid before"]),
    "identity not in cert": ("b.example.test", "ca/a.crt", "ca/a.key", "ca/ca.crt",
                             ["connection[0].local_id", "b.example.test", "does not match"]),
    "missing key file": (ID, "ca/a.crt", "ca/none.key", "ca/ca.crt",
                         ["connection[0].cert", "none.key", "No such file"]),
    "key of another cert": (ID, "ca/a.crt", "other/a.key", "ca/ca.crt",
                            ["connection[0].cert", "does not belong to certificate"]),
    "missing CA file": (ID, "ca/a.crt", "ca/a.key", "ca/none.crt",
                        ["connection[0].cacerts", "none.crt", "No such file"]),
    "CA file is no certificate": (ID, "ca/a.crt", "ca/a.key", "ca/a.key",
                                  ["connection[0].cacerts", "not an X.509 certificate"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_certificate_settings_one_clear_error(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    local_id, cert, key, ca, words = CASES[case]
    path = up_config(tmp_path, local_id=local_id, cert=pki / cert, key=pki / key, ca=pki / ca)
    assert main(["up", "-c", str(path)]) == 2
    out, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert line.startswith("espfast up: ") and out == ""
    for word in words:
        assert word in line, (word, line)
    assert "PRIVATE KEY" not in line


def test_good_certificate_settings_pass_the_check(pki: Path, tmp_path: Path) -> None:
    """The same config with a matching identity, valid cert and its key is accepted
    (a certificate from a CA we do not trust for peers is fine for ourselves)."""
    for ca in ("ca", "other"):
        path = up_config(tmp_path, local_id=ID, cert=pki / ca / "a.crt",
                         key=pki / ca / "a.key", ca=pki / "ca" / "ca.crt")  # fmt: skip
        assert main(["up", "-c", str(path), "--check"]) == 0
