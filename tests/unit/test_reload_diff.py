"""What ``espfast reload`` counts as added, removed, changed and unchanged
(espfast/reload.py): every setting that makes a connection's SAs, the contents of its
credential files, and which ``[interface]`` changes need a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from espfast.cli import main
from espfast.config import load_up
from espfast.reload import diff, fingerprints, interface_changes
from espfast.static import write_private
from espfast.up import pair_configs

PSK = "a pre-shared key for the reload test"
SECOND = """
[[connection]]
name = "other"
remote = "198.18.0.3"
local_id = "198.18.0.1"
psk = "another pre-shared key, long enough"

[[connection.child]]
name = "net"
local_ts = ["198.19.1.0/24"]
remote_ts = ["198.19.3.0/24"]
"""


def load(path: Path, text: str) -> dict[str, bytes]:
    return fingerprints(load_up(write_private(path, text)))


@pytest.mark.parametrize(
    ("edit", "changed"),
    [
        (lambda t: t, False),
        (lambda t: t.replace("[[connection]]", "# a comment\n[[connection]]", 1), False),
        (
            lambda t: t.replace('esp_proposals = "aes128gcm16"', 'esp_proposals = "aes256gcm16"'),
            True,
        ),
        (
            lambda t: t.replace(
                'proposals = "aes128gcm16-prfsha256-x25519"',
                'proposals = "aes256gcm16-prfsha384-ecp384"',
            ),
            True,
        ),
        (lambda t: t.replace(PSK, PSK + "!"), True),
        (lambda t: t.replace('remote_id = "198.18.0.2"', 'remote_id = "198.18.0.9"'), True),
        (
            lambda t: t.replace('remote_ts = ["198.19.2.0/24"]', 'remote_ts = ["198.19.4.0/24"]'),
            True,
        ),
        (lambda t: t + "rekey_time = 60\n", True),  # the child's
        (lambda t: t.replace('remote = "198.18.0.2"', 'remote = "198.18.0.5"'), True),
        (
            lambda t: t.replace('addresses = ["198.19.1.1/24"]', 'addresses = ["198.19.1.2/24"]'),
            False,
        ),
    ],
)
def test_what_counts_as_changed(tmp_path: Path, edit: object, changed: bool) -> None:
    assert callable(edit)
    text, _ = pair_configs(PSK)
    old = load(tmp_path / "a.toml", text + SECOND)
    new = load(tmp_path / "a.toml", edit(text) + SECOND)
    d = diff(old, new)
    assert d.changed == (("site",) if changed else ())
    assert d.unchanged == (("other",) if changed else ("site", "other"))
    assert d.added == d.removed == ()


def test_added_and_removed(tmp_path: Path) -> None:
    text, _ = pair_configs(PSK)
    old = load(tmp_path / "a.toml", text)
    new = load(tmp_path / "a.toml", text.replace('name = "site"', 'name = "renamed"') + SECOND)
    d = diff(old, new)
    assert (d.added, d.removed, d.changed, d.unchanged) == (("renamed", "other"), ("site",), (), ())
    assert d.summary() == "2 added, 1 removed, 0 changed, 0 unchanged"


def test_psk_file_and_certificate_contents_count(tmp_path: Path) -> None:
    """The same file names with new contents: a new PSK, a reissued certificate and key."""
    text, _ = pair_configs(PSK)
    write_private(tmp_path / "site.psk", PSK)
    text = text.replace(f'psk = "{PSK}"', 'psk_file = "site.psk"')
    old = load(tmp_path / "a.toml", text)
    assert diff(old, load(tmp_path / "a.toml", text)).changed == ()
    write_private(tmp_path / "site.psk", PSK + " again")
    assert diff(old, load(tmp_path / "a.toml", text)).changed == ("site",)

    pki = tmp_path / "pki"
    assert main(["pki", "ca", "--out", str(pki)]) == 0
    issue = ["pki", "issue", "--ca", str(pki), "--id", "a.example.test", "--name", "a",
             "--out", str(pki)]  # fmt: skip
    assert main(issue) == 0
    cert_text = text.replace('psk_file = "site.psk"', 'auth = "pubkey"\ncert = "pki/a.crt"\n'
                             'key = "pki/a.key"\ncacerts = ["pki/ca.crt"]').replace(
        'local_id = "198.18.0.1"', 'local_id = "a.example.test"')  # fmt: skip
    old = load(tmp_path / "a.toml", cert_text)
    assert diff(old, load(tmp_path / "a.toml", cert_text)).changed == ()
    assert main([*issue, "--force"]) == 0  # a new key and certificate under the same names
    assert diff(old, load(tmp_path / "a.toml", cert_text)).changed == ("site",)


def test_interface_changes_that_need_a_restart(tmp_path: Path) -> None:
    text, _ = pair_configs(PSK)
    old = load_up(write_private(tmp_path / "a.toml", text)).interface
    live = text.replace('addresses = ["198.19.1.1/24"]', 'addresses = ["198.19.1.2/24"]\n'
                        'cookie_threshold = 5\nmetrics = "198.18.0.1:9469"')  # fmt: skip
    assert interface_changes(old, load_up(write_private(tmp_path / "b.toml", live)).interface) == []
    moved = text.replace("198.18.0.1:4500", "198.18.0.7:4500").replace("espfast0", "espfast1")
    new = load_up(write_private(tmp_path / "c.toml", moved)).interface
    assert interface_changes(old, new) == ["name", "listen"]


def test_metrics_needs_a_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, _ = pair_configs(PSK)
    path = write_private(
        tmp_path / "a.toml", text.replace("[interface]\n", '[interface]\nmetrics = "198.18.0.1"\n')
    )
    assert main(["up", "--check", "-c", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"espfast up: {path}: interface.metrics: '198.18.0.1': needs a port (ADDR:PORT)\n"
    )
