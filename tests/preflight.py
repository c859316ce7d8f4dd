"""Preflight for the suite: does every outside program the tests drive actually work here?

``make test`` runs this (``python -m tests.preflight``) before anything else, so that a
machine without, say, charon's openssl plugin gets one line naming the Debian package
to install instead of dozens of failing tests. Each check runs the real program the way
the tests do: charon is started (in a throw-away ``ef-pre-*`` namespace, with the
plugin list of tests/interop/strongswan.py) and asked over vici which plugins it loaded,
strongSwan's ``pki`` makes an ECDSA and an RSA key, nft adds a table inside the
namespace, /dev/net/tun is opened. A missing package gets one line, ``preflight: install
<package>: <what fails without it>`` (add it to APT_PKGS in the Makefile), however many
checks it broke; a problem no package fixes (no /dev/net/tun, not root) gets its own
line. The exit status is 1 if any check failed.

The packages named are Debian 12's (bookworm), the ones the Makefile's APT_PKGS lists.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from espfast.netns import CommandError, Namespace
from tests.interop.strongswan import CHARON_PLUGINS, Charon, CharonError

# Which Debian 12 package provides each of charon's plugins the tests load
# (dpkg -S /usr/lib/ipsec/plugins/libstrongswan-<name>.so).
PLUGIN_PACKAGES = {
    "openssl": "libstrongswan-standard-plugins",
    "kernel-libipsec": "libcharon-extra-plugins",
    "eap-tls": "libcharon-extra-plugins",  # with libtls
    "eap-mschapv2": "libcharon-extauth-plugins",
    "socket-default": "strongswan-libcharon",
    "vici": "strongswan-swanctl",
}
LIBSTRONGSWAN = "libstrongswan"  # random nonce pem pkcs1 pkcs8 x509 pubkey kdf ...

# Programs the tests run, and the package that has each.
PROGRAMS = {
    "ip": "iproute2",
    "ss": "iproute2",
    "ping": "iputils-ping",
    "iperf3": "iperf3",
    "tcpdump": "tcpdump",
    "nft": "nftables",
    "sysctl": "procps",
    "pki": "strongswan-pki",
    "swanctl": "strongswan-swanctl",
    "systemd-analyze": "systemd",
    "cc": "build-essential",
    "shellcheck": "shellcheck",
    "openssl": "openssl",
    "clang-14": "clang-14",
    "freeradius": "freeradius",
}
CHARON = "/usr/lib/ipsec/charon"
PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")
TIMEOUT = 60.0


class Missing(Exception):
    """A check failed: what does not work, and the package that fixes it (None when no
    package does: /dev/net/tun, not being root)."""

    def __init__(self, problem: str, package: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.package = package


@dataclass
class Check:
    name: str
    run: Callable[[], None]


def _run(*argv: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        list(argv), input=input, capture_output=True, timeout=TIMEOUT, check=False
    )


def _why(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The last line of what a failed program said, skipping strongSwan's notes about
    plugins that are never built on Debian (test-vectors)."""
    text = (proc.stderr or proc.stdout).decode(errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "test-vectors" not in ln]
    return lines[-1] if lines else f"exit status {proc.returncode}"


def check_programs() -> None:
    missing = sorted({pkg for prog, pkg in PROGRAMS.items() if shutil.which(prog) is None})
    progs = [prog for prog, pkg in PROGRAMS.items() if pkg in missing]
    if missing:
        raise Missing(f"{', '.join(progs)} not found", " ".join(missing))
    for prog in ("iperf3", "tcpdump"):
        proc = _run(prog, "--version")
        if proc.returncode != 0:
            raise Missing(f"{prog} --version fails ({_why(proc)})", PROGRAMS[prog])


def check_tun() -> None:
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError as e:
        hint = "load the tun module (modprobe tun); in a container: --device /dev/net/tun"
        if e.errno == errno.ENOENT:
            raise Missing(f"/dev/net/tun does not exist: {hint}") from None
        raise Missing(f"cannot open /dev/net/tun ({e.strerror}): run as root; {hint}") from None
    os.close(fd)


def check_pki() -> None:
    for args in (("--type", "ecdsa"), ("--type", "rsa", "--size", "2048")):
        proc = _run("pki", "--gen", *args, "--outform", "pem")
        if proc.returncode != 0 or b"PRIVATE KEY" not in proc.stdout:
            raise Missing(
                f"strongSwan's pki --gen {' '.join(args)} fails ({_why(proc)})",
                _plugin_package("openssl"),
            )


def _plugin_package(plugin: str) -> str:
    return PLUGIN_PACKAGES.get(plugin, LIBSTRONGSWAN)


@contextlib.contextmanager
def _namespace() -> Iterator[Namespace]:
    try:
        ns = Namespace.create("pre")
    except (CommandError, OSError) as e:
        raise Missing(f"cannot create a network namespace ({e}); run as root") from None
    with ns:
        yield ns


def check_nft() -> None:
    with _namespace() as ns:
        proc = _run(*ns.argv("nft", "add", "table", "inet", "ef_preflight"))
    if proc.returncode != 0:
        raise Missing(f"nft cannot add a table ({_why(proc)}); the kernel needs nf_tables")


def check_charon() -> None:
    if not os.access(CHARON, os.X_OK):
        raise Missing(f"{CHARON} not found", "strongswan-charon")
    wanted = CHARON_PLUGINS.split()
    absent = [p for p in wanted if not (PLUGIN_DIR / f"libstrongswan-{p}.so").exists()]
    if absent:
        packages = sorted({_plugin_package(p) for p in absent})
        raise Missing(f"charon's plugins {', '.join(absent)} are not installed", " ".join(packages))
    with _namespace() as ns, tempfile.TemporaryDirectory(prefix="ef-preflight-") as tmp:
        try:
            charon = Charon.start(ns, Path(tmp), "connections {\n}\n")
        except CharonError as e:
            failed = re.findall(r"plugin '([\w-]+)': failed to load", str(e))
            packages = sorted({_plugin_package(p) for p in failed}) or ["strongswan-charon"]
            first = str(e).splitlines()[0]
            raise Missing(f"charon does not start ({first})", " ".join(packages)) from None
        with charon:
            stats = charon.swanctl("--stats")
            log = charon.log(None)
    loaded_line = re.search(r"loaded plugins: (.*)", stats)
    loaded = set(loaded_line[1].split()) if loaded_line else set()
    not_loaded = [p for p in wanted if p not in loaded]
    if not_loaded:
        reasons = re.findall(r"plugin '([\w-]+)': failed to load - (.*)", log)
        why = "; ".join(f"{p}: {r.strip()}" for p, r in reasons if p in not_loaded)
        packages = sorted({_plugin_package(p) for p in not_loaded})
        raise Missing(
            f"charon cannot load plugin(s) {', '.join(not_loaded)}{f' ({why})' if why else ''}",
            " ".join(packages),
        )


CHECKS = [
    Check("programs", check_programs),
    Check("tun", check_tun),
    Check("pki", check_pki),
    Check("nft", check_nft),
    Check("charon", check_charon),
]


def main(argv: list[str] | None = None) -> int:
    """Run every check; print one line per package to install (naming each problem it
    fixes) and one per other problem. Exit status 1 if anything failed."""
    del argv
    problems: dict[str | None, list[str]] = {}
    for check in CHECKS:
        try:
            check.run()
        except Missing as e:
            problems.setdefault(e.package, []).append(e.problem)
            if check.name == "programs":
                break  # the other checks would only fail again for the same reason
        except Exception as e:  # an unexpected failure still gets one line, not a traceback
            problems.setdefault(None, []).append(f"{check.name}: {type(e).__name__}: {e}")
    for package, what in problems.items():
        if package is None:
            for problem in what:
                print(f"preflight: {problem}", file=sys.stderr)
        else:
            print(f"preflight: install {package}: {'; '.join(what)}", file=sys.stderr)
    if problems:
        return 1
    print(f"preflight: ok ({', '.join(c.name for c in CHECKS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
