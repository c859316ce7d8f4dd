"""The ``espfast up`` keys strongSwan users reach for (espfast/upkeys.py): ``remote`` as a
list (remote_addrs), pool ranges, proposal arrays, ``send_cert``, ``send_certreq``,
``intermediates``, ``auth = rsa|ecdsa``, ``fragmentation``, ``mobike``,
``mobike_no_nats``; and ``--check``
reporting every section's mistake, one line each."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from espfast.cli import main
from espfast.config import ConfigError, UpConfig, load_up
from espfast.control.pool import AddressPool
from espfast.static import write_private
from espfast.up import pair_configs

PSK = "a pre-shared key that is long enough"
A, B = pair_configs(PSK)


def load(tmp_path: Path, text: str) -> UpConfig:
    return load_up(write_private(tmp_path / "t.toml", text))


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    return str(e.value)


def with_lines(lines: str, text: str = A) -> str:
    """``text`` with ``lines`` added to its connection (before the child)."""
    return text.replace("\n[[connection.child]]", f"{lines}\n\n[[connection.child]]", 1)


def test_remote_address_limits_the_peers(tmp_path: Path) -> None:
    conn = load(tmp_path, A).connections[0]
    assert conn.remote == ("198.18.0.2", 500)
    assert conn.ike.accepts_from("198.18.0.2") and not conn.ike.accepts_from("198.18.0.3")
    anyone = load(tmp_path, B).connections[0]
    assert anyone.remote is None and anyone.ike.accepts_from("198.18.9.9")


def test_remote_list_with_prefixes_and_ranges(tmp_path: Path) -> None:
    text = A.replace(
        'remote = "198.18.0.2"',
        'remote = ["198.18.4.0/24", "198.18.0.2:4500", "198.18.5.10-198.18.5.20"]',
    )
    conn = load(tmp_path, text).connections[0]
    assert conn.remote == ("198.18.0.2", 4500)  # the first plain address
    ike = conn.ike
    for ok in ("198.18.4.77", "198.18.0.2", "198.18.5.10", "198.18.5.20"):
        assert ike.accepts_from(ok), ok
    for no in ("198.18.5.9", "198.18.5.21", "198.18.0.1", "2001:2::1", "junk"):
        assert not ike.accepts_from(no), no


def test_remote_without_a_plain_address_only_answers(tmp_path: Path) -> None:
    text = B.replace('remote = "%any"', 'remote = ["198.18.0.0/24"]')
    conn = load(tmp_path, text).connections[0]
    assert conn.remote is None and conn.children_to("start") == []
    assert conn.ike.accepts_from("198.18.0.1") and not conn.ike.accepts_from("198.18.1.1")


@pytest.mark.parametrize(("value", "words"), [
    ('"198.18.0.9-198.18.0.1"', "not a range"),
    ('"198.18.0.1-2001:2::1"', "not a range"),
    ('"198.18.0.1-x"', "'x' is not an IP address"),
    ("[]", "needs an address"),
    ('"198.18.0.0/16.5"', "not a prefix"),
])  # fmt: skip
def test_bad_remote(tmp_path: Path, value: str, words: str) -> None:
    text = A.replace('remote = "198.18.0.2"', f"remote = {value}")
    assert words in error_of(tmp_path, text)


def test_pool_range_hands_out_every_address_in_it(tmp_path: Path) -> None:
    text = with_lines('pool = ["198.19.100.10-198.19.100.13", "198.19.101.0/30"]', B)
    ike = load(tmp_path, text).connections[0].ike
    pool = AddressPool(ike.pool, ike.pool_exact)
    got = [pool.acquire(bytes([i]), 4, i) for i in range(8)]
    # The range: .10 to .13, all four; the prefix: neither network nor broadcast address.
    assert got == [ipaddress.ip_address(a) for a in (
        "198.19.100.10", "198.19.100.11", "198.19.100.12", "198.19.100.13",
        "198.19.101.1", "198.19.101.2")] + [None, None]  # fmt: skip


def test_proposals_as_toml_arrays(tmp_path: Path) -> None:
    arrays = A.replace('proposals = "', 'proposals = ["aes256-sha256-modp2048", "', 1)
    arrays = arrays.replace('x25519"\n', 'x25519"]\n', 1)
    arrays = arrays.replace(
        'esp_proposals = "aes128gcm16"', 'esp_proposals = ["aes256-sha256-modp2048", "aes128gcm16"]'
    )
    ike = load(tmp_path, arrays).connections[0].ike
    assert len(ike.ike_proposals) == 2 and len(ike.children[0].esp_proposals) == 2
    assert "needs at least one proposal" in error_of(tmp_path, A.replace(
        'esp_proposals = "aes128gcm16"', "esp_proposals = []"))  # fmt: skip


def test_fragmentation_and_mobike_keys(tmp_path: Path) -> None:
    ike = load(tmp_path, A).connections[0].ike
    assert ike.fragmentation and ike.mobike and ike.fragment_size == 1280
    off = load(tmp_path, with_lines('fragmentation = "no"\nmobike = false')).connections[0].ike
    assert not off.fragmentation and not off.mobike
    size = load(tmp_path, with_lines("fragmentation = true\nfragment_size = 1400")).connections[0]
    assert size.ike.fragmentation and size.ike.fragment_size == 1400
    accept = load(tmp_path, with_lines('fragmentation = "accept"')).connections[0].ike
    assert accept.fragmentation and accept.fragment_size > 60000  # announces, never splits
    assert "'maybe' is not one of yes, no" in error_of(tmp_path, with_lines('mobike = "maybe"'))
    assert "out of range" in error_of(tmp_path, with_lines("fragment_size = 100"))
    assert not ike.mobike_no_nats
    no_nats = load(tmp_path, with_lines('mobike_no_nats = "yes"')).connections[0].ike
    assert no_nats.mobike and no_nats.mobike_no_nats
    assert "needs mobike" in error_of(tmp_path, with_lines("mobike = false\nmobike_no_nats = true"))


def test_send_cert_and_certreq_need_certificates(tmp_path: Path) -> None:
    assert "no certificate to send" in error_of(tmp_path, with_lines('send_cert = "never"'))
    ike = load(tmp_path, with_lines("send_certreq = false")).connections[0].ike
    assert ike.auth.certreq == () and ike.auth.send_cert == "always"


def pki(tmp_path: Path) -> Path:
    """root CA (RSA) -> intermediate CA -> gw leaf, with strongSwan's pki."""
    import subprocess

    d = tmp_path / "pki"
    d.mkdir()

    def pki_cmd(*args: str, out: str) -> None:
        data = subprocess.run(["pki", *args], check=True, capture_output=True).stdout
        (d / out).write_bytes(data)

    pki_cmd("--gen", "--type", "rsa", "--size", "2048", "--outform", "pem", out="root.key")
    pki_cmd("--self", "--ca", "--in", str(d / "root.key"), "--dn", "CN=upkeys root",
            "--outform", "pem", out="root.crt")  # fmt: skip
    pki_cmd("--gen", "--type", "rsa", "--size", "2048", "--outform", "pem", out="im.key")
    pki_cmd("--issue", "--ca", "--in", str(d / "im.key"), "--type", "priv",
            "--cacert", str(d / "root.crt"), "--cakey", str(d / "root.key"),
            "--dn", "CN=upkeys intermediate", "--outform", "pem", out="im.crt")  # fmt: skip
    pki_cmd("--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem", out="gw.key")
    pki_cmd("--issue", "--in", str(d / "gw.key"), "--type", "priv",
            "--cacert", str(d / "im.crt"), "--cakey", str(d / "im.key"),
            "--dn", "CN=gw.upkeys.test", "--san", "gw.upkeys.test",
            "--outform", "pem", out="gw.crt")  # fmt: skip
    return d


def cert_lines(d: Path, extra: str = "", auth: str = "pubkey") -> str:
    return (f'auth = "{auth}"\ncert = "{d}/gw.crt"\nkey = "{d}/gw.key"\n'
            f'cacerts = ["{d}/root.crt"]\n{extra}\n')  # fmt: skip


def pubkey_text(d: Path, extra: str = "", auth: str = "pubkey") -> str:
    return A.replace(f'psk = "{PSK}"\n', cert_lines(d, extra, auth)).replace(
        'local_id = "198.18.0.1"', 'local_id = "gw.upkeys.test"'
    )


def test_intermediates_are_sent_after_our_certificate(tmp_path: Path) -> None:
    d = pki(tmp_path)
    ike = load(tmp_path, pubkey_text(d, f'intermediates = ["{d}/im.crt"]')).connections[0].ike
    assert len(ike.auth.certs) == 2 and ike.auth.send_cert == "always"
    ifasked = pubkey_text(d, 'send_cert = "ifasked"\nsend_certreq = false')
    auth = load(tmp_path, ifasked).connections[0].ike.auth
    assert auth.send_cert == "ifasked" and auth.certreq == ()
    # The root is not an issuer of our certificate: refused at start.
    wrong = pubkey_text(d, f'intermediates = ["{d}/root.crt"]')
    assert "did not issue" in error_of(tmp_path, wrong)


def test_auth_rsa_or_ecdsa_must_match_the_key(tmp_path: Path) -> None:
    d = pki(tmp_path)
    assert load(tmp_path, pubkey_text(d, auth="ecdsa")).connections[0].ike.auth.signer
    assert "but the key is ECDSA" in error_of(tmp_path, pubkey_text(d, auth="rsa"))
    assert "is not psk, pubkey, rsa or ecdsa" in error_of(tmp_path, pubkey_text(d, auth="dsa"))


def test_check_reports_every_section_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    second = B.split("[[connection]]", 1)[1].replace('name = "site"', 'name = "other"')
    text = (A.replace('mtu', 'mtu').replace('name = "espfast0"', 'name = "espfast0"\nmtu = 5')
            .replace('remote = "198.18.0.2"', 'remote = "198.18.0.2-1"')
            + "[[connection]]" + second.replace('esp_proposals = "aes128gcm16"',
                                                'esp_proposals = "aes128gcm12"'))  # fmt: skip
    conf = write_private(tmp_path / "bad.toml", text)
    assert main(["up", "-c", str(conf), "--check"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3, lines
    assert all(x.startswith(f"espfast up: {conf}: ") for x in lines), lines
    assert "interface.mtu" in lines[0]
    assert "connection[0].remote" in lines[1] and "connection[1].child[0]" in lines[2], lines


def test_reload_refusal_prints_a_line_per_mistake(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from espfast import ctl, operations

    def refuse(command: str, *args: object, **kw: object) -> None:
        raise ctl.DaemonError(f"reload: {operations.CONFIG_REFUSED}: f: one\nf: two")

    monkeypatch.setattr(ctl, "request", refuse)
    args = argparse.Namespace(socket=Path("/nonexistent"), timeout=1.0)
    assert operations.call("reload", args, str) == 2
    assert capsys.readouterr().err.splitlines() == ["espfast reload: f: one",
                                                    "espfast reload: f: two"]  # fmt: skip
