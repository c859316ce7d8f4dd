"""The EAP user file (espfast/users.py), ``espfast user add|del|list`` and the config
keys of EAP connections (remote_auth, users, local_auth, eap_id, password_file)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from espfast import users
from espfast.cli import main
from espfast.config import ConfigError, load_up
from espfast.control.eap import nt_password_hash
from espfast.static import write_private


def add(path: Path, name: str, password: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(["user", "-f", str(path), "add", name])


def test_add_list_del(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path = tmp_path / "etc" / "users"  # (its directory is made, 0700)
    assert add(path, "carol", "pw one", monkeypatch) == 0
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert add(path, "DOMAIN\\dave", "pw two", monkeypatch) == 0
    assert add(path, "carol", "pw three", monkeypatch) == 0  # a new password
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert "pw" not in text  # no plaintext, only NT hashes
    assert users.load(path) == {"carol": nt_password_hash("pw three"),
                                "DOMAIN\\dave": nt_password_hash("pw two")}  # fmt: skip
    capsys.readouterr()
    assert main(["user", "-f", str(path), "list"]) == 0
    assert capsys.readouterr().out == "carol\nDOMAIN\\dave\n"  # names only
    assert main(["user", "-f", str(path), "del", "carol"]) == 0
    assert list(users.load(path)) == ["DOMAIN\\dave"]
    assert main(["user", "-f", str(path), "del", "carol"]) == 1
    assert "no user 'carol'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["", "a b", "tab\there", "#comment", "x" * 256, "nul\0"])
def test_bad_names_are_refused(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert add(tmp_path / "users", name, "pw", monkeypatch) == 1
    assert not (tmp_path / "users").exists()


def test_empty_password_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert add(tmp_path / "users", "carol", "", monkeypatch) == 1


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602])
def test_file_others_may_read_or_write_is_refused(
    tmp_path: Path, mode: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "users"
    assert add(path, "carol", "pw", monkeypatch) == 0
    path.chmod(mode)
    with pytest.raises(users.UserFileError, match="lets others read or write it"):
        users.load(path)
    assert main(["user", "-f", str(path), "list"]) == 1


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("carol\n", "not name:NT-hash"),
        ("carol:1234\n", "32 hex digits"),
        ("carol:" + "zz" * 16 + "\n", "not hex"),
        (f"carol:{'00' * 16}\ncarol:{'11' * 16}\n", "listed twice"),
        (f"a b:{'00' * 16}\n", "no spaces"),
    ],
)
def test_malformed_file(tmp_path: Path, text: str, error: str) -> None:
    path = write_private(tmp_path / "users", "# comment\n\n" + text)
    with pytest.raises(users.UserFileError, match=error) as info:
        users.load(path)
    assert f"{path}:" in str(info.value)


def test_lookup_follows_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path = tmp_path / "users"
    assert add(path, "carol", "pw", monkeypatch) == 0
    uf = users.UserFile(path)
    assert uf.lookup("carol") == nt_password_hash("pw") and uf.lookup("dave") is None
    assert add(path, "dave", "pw2", monkeypatch) == 0
    assert uf.lookup("dave") == nt_password_hash("pw2")
    path.chmod(0o644)
    assert uf.lookup("carol") is None  # unsafe now: nobody gets in
    assert "refusing every user" in capsys.readouterr().err


def test_password_is_never_read_from_the_command_line() -> None:
    with pytest.raises(SystemExit):
        main(["user", "add", "carol", "secret"])


# -- config ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    assert main(["pki", "ca", "--out", str(root)]) == 0
    assert main(["pki", "issue", "--ca", str(root), "--id", "gw.eap.test", "--name", "gw",
                 "--out", str(root)]) == 0  # fmt: skip
    return root


def conf(tmp_path: Path, lines: str, remote: str = "%any") -> Path:
    return write_private(
        tmp_path / "up.toml",
        f"""
[interface]
name = "ef0"
listen = "198.18.0.2:4500"

[[connection]]
name = "rw"
remote = "{remote}"
{lines}

[[connection.child]]
name = "net"
local_ts = ["198.19.2.0/24"]
remote_ts = ["198.19.100.0/24"]
""",
    )


def gateway_lines(pki: Path) -> str:
    return (f'local_id = "gw.eap.test"\nauth = "pubkey"\ncert = "{pki}/gw.crt"\n'
            f'key = "{pki}/gw.key"\nremote_auth = "eap-mschapv2"\nusers = "users"')  # fmt: skip


def test_gateway_and_client_configs(pki: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    assert add(tmp_path / "users", "carol", "pw", monkeypatch) == 0
    gw = load_up(conf(tmp_path, gateway_lines(pki)))
    auth = gw.connections[0].ike.auth
    assert auth.eap_users is not None and auth.eap_users("carol") == nt_password_hash("pw")
    assert auth.signer is not None and auth.eap_identity is None
    write_private(tmp_path / "carol.pw", "pw\n")
    cl = load_up(conf(tmp_path, f'local_auth = "eap-mschapv2"\neap_id = "carol"\n'
                      f'password_file = "carol.pw"\ncacerts = ["{pki}/ca.crt"]',
                      remote="198.18.0.2"))  # fmt: skip
    ike = cl.connections[0].ike
    assert ike.auth.eap_identity == "carol" and ike.auth.eap_nt_hash == nt_password_hash("pw")
    assert ike.auth.signer is None and ike.auth.verifier is not None
    assert "pw" not in repr(ike)


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ('psk = "a long enough pre-shared key"\nremote_auth = "eap-mschapv2"',
         'EAP needs auth = "pubkey"'),
        ('local_id = "gw.eap.test"\nauth = "pubkey"\ncert = "{pki}/gw.crt"\n'
         'key = "{pki}/gw.key"\nremote_auth = "eap-mschapv2"\nusers = "missing"',
         "No such file"),
        ('remote_auth = "eap-md5"', "eap-mschapv2"),
        ('local_auth = "eap-mschapv2"\neap_id = "carol"\npassword = "pw"', "cacerts"),
        ('local_auth = "eap-mschapv2"\npassword = "pw"\ncacerts = ["{pki}/ca.crt"]', "eap_id"),
        ('local_auth = "eap-mschapv2"\neap_id = "carol"\ncacerts = ["{pki}/ca.crt"]',
         "password"),
    ],
)  # fmt: skip
def test_bad_eap_configs(pki: Path, tmp_path: Path, lines: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        load_up(conf(tmp_path, lines.replace("{pki}", str(pki))))


def test_a_new_user_is_no_reason_to_renew_the_gateway(
    pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from espfast.reload import fingerprints

    assert add(tmp_path / "users", "carol", "pw", monkeypatch) == 0
    path = conf(tmp_path, gateway_lines(pki))
    before = fingerprints(load_up(path))
    assert add(tmp_path / "users", "dave", "pw", monkeypatch) == 0
    assert fingerprints(load_up(path)) == before
