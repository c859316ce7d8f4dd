"""tests/preflight.py names the Debian package behind a missing peer, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.preflight as preflight
from tests.interop.strongswan import CHARON_PLUGINS


def test_every_plugin_the_tests_load_has_a_package() -> None:
    for plugin in CHARON_PLUGINS.split():
        package = preflight._plugin_package(plugin)
        assert package in {*preflight.PLUGIN_PACKAGES.values(), preflight.LIBSTRONGSWAN}


def test_missing_plugin_is_one_line_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A plugin directory like Debian's without libstrongswan-standard-plugins.
    for plugin in CHARON_PLUGINS.split():
        if plugin != "openssl":
            (tmp_path / f"libstrongswan-{plugin}.so").touch()
    monkeypatch.setattr(preflight, "PLUGIN_DIR", tmp_path)
    monkeypatch.setattr(preflight, "CHECKS", [preflight.Check("charon", preflight.check_charon)])
    monkeypatch.setattr(preflight.os, "access", lambda path, mode: True)
    assert preflight.main() == 1
    err = capsys.readouterr().err
    assert err == (
        "preflight: install libstrongswan-standard-plugins: "
        "charon's plugins openssl are not installed\n"
    )


def test_missing_programs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    present = set(preflight.PROGRAMS) - {"iperf3", "tcpdump"}
    monkeypatch.setattr(preflight.shutil, "which", lambda p: f"/bin/{p}" if p in present else None)
    assert preflight.main() == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["preflight: install iperf3 tcpdump: iperf3, tcpdump not found"]


def test_one_line_per_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(problem: str, package: str | None) -> preflight.Check:
        def run() -> None:
            raise preflight.Missing(problem, package)

        return preflight.Check(problem, run)

    checks = [fails("pki fails", "pkg-a"), fails("no tun", None), fails("charon fails", "pkg-a")]
    monkeypatch.setattr(preflight, "CHECKS", checks)
    assert preflight.main() == 1
    assert capsys.readouterr().err.splitlines() == [
        "preflight: install pkg-a: pki fails; charon fails",
        "preflight: no tun",
    ]
