"""The ways people install espfast, tried as they would be, outside the repo's venv.

- ``pip install .`` and a wheel from ``python -m build``, each into a new venv: the C
  dataplane is compiled, the package is complete (espfast.control, py.typed, no top-level
  ``control``), and the ``espfast`` command runs from a directory outside the tree.
  Both build from a copy of the tree (only the files git would ship), so nothing built
  in the working tree can stand in for what the build should have made.
- packaging/espfast.service passes ``systemd-analyze verify`` and its offline security
  review, and says what README.md says.
- packaging/Containerfile passes hadolint, copies what exists, installs Debian packages
  that exist, and its run stage has every library the compiled dataplane links to.

These need the network for Python packages (PyPI, as ``make deps`` does).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from espfast.ctl import DEFAULT_SOCKET

TOP = Path(__file__).resolve().parents[2]
UNIT = TOP / "packaging" / "espfast.service"
CONTAINERFILE = TOP / "packaging" / "Containerfile"
UNIT_ESPFAST = "/opt/espfast/bin/espfast"  # where the unit (and README) install it
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "__pycache__", "*.so", "*.egg-info", "_dataplane.c", "results"
)
TIMEOUT = 900  # a build compiles the dataplane and may download packages


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 0, f"{' '.join(map(str, argv))}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def source_copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(TOP, src, ignore=IGNORE, symlinks=True)
    return src


def new_venv(path: Path) -> Path:
    run(sys.executable, "-m", "venv", path)
    run(path / "bin" / "python", "-m", "pip", "install", "-q", "--upgrade", "pip")
    return path


def check_installed(venv: Path, workdir: Path) -> None:
    """The installed command and package work from ``workdir``, away from the tree."""
    workdir.mkdir(exist_ok=True)
    where = run(
        venv / "bin" / "python",
        "-c",
        "import espfast, espfast._dataplane, espfast.control.ike_sa; print(espfast.__file__)",
        cwd=workdir,
    )
    assert Path(where.strip()).is_relative_to(venv), where
    assert "espfast" in run(venv / "bin" / "espfast", "--help", cwd=workdir)
    config = workdir / "a.toml"
    shutil.copy(TOP / "examples" / "static-gcm-a.toml", config)
    config.chmod(0o600)
    run(venv / "bin" / "espfast", "static", "--check", "-c", config, cwd=workdir)
    top_level = [p.name for p in (venv / "lib").glob("python3*/site-packages/control")]
    assert top_level == [], "control/ must be installed as espfast.control only"


def test_pip_install_dot(tmp_path: Path) -> None:
    src = source_copy(tmp_path)
    venv = new_venv(tmp_path / "venv")
    run(venv / "bin" / "pip", "install", "-q", src, cwd=tmp_path)
    check_installed(venv, tmp_path / "elsewhere")


def test_wheel(tmp_path: Path) -> None:
    src = source_copy(tmp_path)
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, src, cwd=tmp_path)
    (wheel,) = dist.glob("espfast-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(re.fullmatch(r"espfast/_dataplane\..*\.so", n) for n in names), names
    assert "espfast/control/__init__.py" in names
    assert "espfast/py.typed" in names
    assert not any(n.startswith(("control/", "tests/", "csrc/")) for n in names)
    venv = new_venv(tmp_path / "venv")
    run(venv / "bin" / "pip", "install", "-q", wheel, cwd=tmp_path)
    check_installed(venv, tmp_path / "elsewhere")


# --- the systemd unit --------------------------------------------------------------------


def unit_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings[key] = f"{settings[key]} {value}" if key in settings else value
    return settings


def test_unit_verifies(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this venv's espfast.
    espfast = Path(sys.prefix) / "bin" / "espfast"
    assert espfast.exists()
    unit = tmp_path / "espfast.service"
    unit.write_text(UNIT.read_text().replace(UNIT_ESPFAST, str(espfast)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", unit], capture_output=True, text=True, timeout=60
    )
    # verify also reads the machine's other units (a package's deprecated setting is a
    # warning about that package): only what it says of ours counts.
    ours = [line for line in (proc.stdout + proc.stderr).splitlines()
            if "espfast" in line]  # fmt: skip
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr
    # The offline security review: exposure at most 3.0 of 10 ("OK"); this one is 1.8.
    review = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=30", unit],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert review.returncode == 0, review.stdout[-3000:] + review.stderr


def test_unit_settings() -> None:
    s = unit_settings()
    assert s["ExecStart"].split()[0] == UNIT_ESPFAST
    assert f"--socket {DEFAULT_SOCKET}" in s["ExecStart"]
    assert s["RuntimeDirectory"] == DEFAULT_SOCKET.parent.name
    assert set(s["CapabilityBoundingSet"].split()) == {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}
    assert s["AmbientCapabilities"] == s["CapabilityBoundingSet"]
    assert s["User"] != "root"
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "DevicePolicy": "closed",
        "DeviceAllow": "/dev/net/tun rw",
        "StateDirectory": "espfast",
    }.items():
        assert s[key] == value, key
    assert UNIT_ESPFAST in (TOP / "README.md").read_text()


# --- the Containerfile -------------------------------------------------------------------


def containerfile_stages() -> list[list[str]]:
    """The instructions of each stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def apt_packages(stage: list[str]) -> set[str]:
    found: set[str] = set()
    for line in stage:
        for m in re.finditer(r"apt-get install ((?:-\S+\s+)*)([a-z0-9.+\- ]+)", line):
            found |= {w for w in m[2].split() if not w.startswith("-")}
    return found


def package_of(path: str) -> str:
    """The Debian package that has ``path`` (dpkg knows it under /lib or /usr/lib)."""
    real = os.path.realpath(path)
    for candidate in dict.fromkeys((path, real, real.removeprefix("/usr"))):
        proc = subprocess.run(
            ["dpkg-query", "-S", candidate], capture_output=True, text=True, timeout=60
        )
        if proc.returncode == 0:
            return proc.stdout.split(":")[0]
    raise AssertionError(f"no Debian package has {path}")


def test_containerfile_lints() -> None:
    out = run(Path(sys.prefix) / "bin" / "hadolint", CONTAINERFILE, cwd=TOP)
    assert out.strip() == ""


def test_containerfile_contents() -> None:
    build, runtime = containerfile_stages()
    # Every COPY source exists (build context: the top of the tree).
    for line in build:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (TOP / source).exists(), line
    # The packages are real Debian 12 names: the same ones this machine installed.
    packages = apt_packages(build) | apt_packages(runtime)
    assert {"build-essential", "python3-venv", "libssl3", "python3"} <= packages
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Status}\n", *sorted(packages)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    installed = {ln.split()[0] for ln in proc.stdout.splitlines() if ln.endswith("installed")}
    assert installed == packages, proc.stderr
    # The run stage has each library the compiled dataplane links to (or libc6, which
    # is in every Debian image).
    import espfast._dataplane as dp

    libs = re.findall(r"=> (/\S+)", run("ldd", dp.__file__))
    owners = {package_of(lib) for lib in libs}
    assert "libssl3" in owners  # libcrypto.so.3
    assert owners <= apt_packages(runtime) | {"libc6"}, owners
    assert any(line.startswith("COPY --from=build /opt/espfast") for line in runtime)
