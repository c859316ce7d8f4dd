""".ci/freshroot reads the Debian archive from the machine's apt configuration: one-line
.list files and deb822 .sources alike, enabled entries of this release only (release,
-updates, -security), even before any `apt-get update` (no Release files yet)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]

SOURCES_LIST = """\
deb http://one.example.test/debian bookworm main contrib
deb-src http://one.example.test/debian bookworm main
"""
DEB822 = """\
Types: deb
URIs: http://two.example.test/debian
Suites: bookworm-updates
Components: main

Types: deb
URIs: http://sec.example.test/debian-security
Suites: bookworm-security
Components: main non-free-firmware

Types: deb
URIs: http://off.example.test/debian
Suites: bookworm-backports
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example.test/debian
Suites: bookworm
Components: main
"""


def sources(tmp_path: Path) -> list[str]:
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (tmp_path / "lists").mkdir()
    (tmp_path / "sources.list").write_text(SOURCES_LIST)
    (parts / "debian.sources").write_text(DEB822)
    (parts / "third.list").write_text("deb http://third.example.test/apt nodistro main\n")
    (parts / "off.list.disabled").write_text("deb http://x.example.test/debian bookworm main\n")
    conf = tmp_path / "apt.conf"
    conf.write_text(
        f'Dir::Etc::sourcelist "{tmp_path}/sources.list";\n'
        f'Dir::Etc::sourceparts "{parts}";\n'
        f'Dir::State::lists "{tmp_path}/lists";\n'
    )
    proc = subprocess.run(
        [str(TOP / ".ci" / "freshroot"), "--sources"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "APT_CONFIG": str(conf)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_sources_from_list_and_deb822(tmp_path: Path) -> None:
    # This machine's release decides which suites count; the fixture is bookworm's.
    release = dict(
        line.split("=", 1) for line in Path("/etc/os-release").read_text().split() if "=" in line
    )
    assert release.get("VERSION_CODENAME") == "bookworm"
    lines = sources(tmp_path)
    assert lines[0] == "# debootstrap from http://one.example.test/debian/"
    assert [ln for ln in lines if ln.startswith("deb ")] == [
        "deb http://one.example.test/debian/ bookworm main contrib",
        "deb http://two.example.test/debian/ bookworm-updates main",
        "deb http://sec.example.test/debian-security/ bookworm-security main non-free-firmware",
    ]
