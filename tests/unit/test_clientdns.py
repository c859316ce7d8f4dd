"""espfast/clientdns.py: which resolver backend "auto" picks, the commands each runs, the
servers held while an IKE SA that got them is up, /etc/resolv.conf restored."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from espfast.clientdns import Resolver
from espfast.control.events import IkeSaDown, IkeSaUp


def up(ike_sa_id: int, dns: tuple[str, ...], vips: tuple[str, ...] = ("198.19.100.1",)) -> IkeSaUp:
    return IkeSaUp(ike_sa_id, "gw", "a@x", "gw", ("198.18.0.2", 4500), "x", vips, dns)


class Calls:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[list[str], str]] = []
        self.fail = fail

    def __call__(self, argv: Sequence[str], stdin: str) -> None:
        self.calls.append((list(argv), stdin))
        if self.fail:
            raise subprocess.CalledProcessError(1, list(argv), stderr=b"no")


def test_auto_prefers_resolvconf(tmp_path: Path) -> None:
    run = Calls()
    r = Resolver("efrw0", run=run, which=lambda p: f"/sbin/{p}", resolved=tmp_path)
    assert r.mode == "resolvconf"
    r.on_event(up(1, ("198.19.2.53", "198.19.2.54")))
    r.on_event(up(2, ("198.19.2.53",)))  # a second IKE SA, same server: nothing to do
    assert run.calls == [(["resolvconf", "-a", "efrw0"],
                          "nameserver 198.19.2.53\nnameserver 198.19.2.54\n")]  # fmt: skip
    r.on_event(IkeSaDown(1, "gw", "deleted"))
    assert run.calls[-1] == (["resolvconf", "-a", "efrw0"], "nameserver 198.19.2.53\n")
    r.on_event(IkeSaDown(2, "gw", "deleted"))
    assert run.calls[-1] == (["resolvconf", "-d", "efrw0"], "")
    assert r.applied == ()


def test_auto_resolvectl_only_where_resolved_runs(tmp_path: Path) -> None:
    only_resolvectl = {"resolvectl": "/usr/bin/resolvectl"}.get
    assert Resolver("efrw0", which=only_resolvectl, resolved=tmp_path / "no").mode == "off"
    run = Calls()
    r = Resolver("efrw0", run=run, which=only_resolvectl, resolved=tmp_path)
    assert r.mode == "resolvectl"
    r.on_event(up(1, ("198.19.2.53",)))
    r.close()
    assert [c for c, _ in run.calls] == [
        ["resolvectl", "dns", "efrw0", "198.19.2.53"],
        ["resolvectl", "domain", "efrw0", "~."],
        ["resolvectl", "revert", "efrw0"],
    ]


def test_only_our_own_lease_counts() -> None:
    run = Calls()
    r = Resolver("efgw0", "resolvconf", run=run)
    r.on_event(up(1, (), vips=()))  # a gateway's IKE SA: it gave, it got nothing
    r.on_event(up(2, ("198.19.2.53",), vips=()))
    r.on_event(IkeSaDown(3, "gw", "never seen"))
    r.close()
    assert run.calls == []


def test_a_failing_command_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    r = Resolver("efrw0", "resolvconf", run=Calls(fail=True))
    r.on_event(up(1, ("198.19.2.53",)))
    assert r.applied == ()
    assert "cannot apply the DNS servers" in caplog.text


def test_file_mode_restores_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 198.18.0.53\n")
    saved = tmp_path / "run" / "resolv.conf.saved"
    r = Resolver("efrw0", "file", resolv_conf=conf, saved=saved)
    r.on_event(up(1, ("198.19.2.53",)))
    assert "nameserver 198.19.2.53\n" in conf.read_text()
    assert "198.18.0.53" not in conf.read_text()
    assert saved.read_text() == "nameserver 198.18.0.53\n"
    r.on_event(up(1, ("198.19.2.54",)))  # new servers: the saved copy stays the original
    assert "nameserver 198.19.2.54\n" in conf.read_text()
    r.close()
    assert conf.read_text() == "nameserver 198.18.0.53\n"
    assert not saved.exists()
