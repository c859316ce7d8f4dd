"""Log and terminal injection (adversarial review, item 10): a peer whose identity carries a
newline followed by a whole forged log line, ESC sequences (clear the screen, set the
terminal's title) and a right-to-left override authenticates to a real ``espfast up``
(which takes any identity). Its identity reaches the daemon's log, ``espfast status``
and its JSON only escaped: no forged line, no control character, the escaped text there
to read."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from espfast.control.constants import IdType
from espfast.control.events import IkeSaUp
from espfast.netns import TwoHosts
from espfast.static import control_socket_in
from tests.security.secpeer import attack, configs, peer_config, start_b

FORGED = "2026-01-01 00:00:00,000 WARNING espfast.daemon: forged line"
IDENTITY = f"evil.example.test\n{FORGED}\x1b[2J\x1b]0;pwned\x07\u202etxt.exe"
ESCAPED = "evil.example.test\\n" + FORGED + "\\x1b[2J\\x1b]0;pwned\\x07\\u202etxt.exe"


def no_control_characters(text: str, where: str) -> None:
    bad = [c for c in text if not c.isprintable() and c != "\n"]
    assert not bad, f"{where}: {bad!r} in {text!r}"


def test_identity_with_newline_and_escapes_is_escaped_everywhere(tmp_path: Path) -> None:
    a_path, b_path = configs(tmp_path, any_id=True)
    good = peer_config(a_path)
    evil = dataclasses.replace(good, local_id=(IdType.FQDN, IDENTITY.encode()))
    with TwoHosts.create("sec-log") as hosts:
        b = start_b(hosts, b_path, "-v")
        up = attack(hosts, evil)
        argv = [sys.executable, "-m", "espfast", "status", "--socket",
                str(control_socket_in(hosts.b))]  # fmt: skip
        table = hosts.b.run(*argv, check=False)
        doc = hosts.b.run(*argv, "--json", check=False)
        status, _, err = b.stop()
    assert isinstance(up, IkeSaUp), up
    assert status == 0, err
    # The log: the IKE SA up line names the peer escaped; nothing starts a forged line.
    no_control_characters(err, "log")
    assert not any(line.startswith(FORGED) for line in err.splitlines()), err
    assert any("IKE SA up" in line and ESCAPED in line for line in err.splitlines()), err
    # espfast status: the table and the JSON document.
    assert table.returncode == 0 and doc.returncode == 0, table.stderr + doc.stderr
    no_control_characters(table.stdout, "status")
    assert ESCAPED in table.stdout, table.stdout
    assert not any(line.startswith(FORGED) for line in table.stdout.splitlines())
    ike_sas = json.loads(doc.stdout)["ike_sas"]
    assert [sa["remote_id"] for sa in ike_sas] == [ESCAPED], ike_sas
