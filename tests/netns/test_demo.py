"""`make demo` runs `espfast demo`: it must work end to end and leave nothing behind."""

from __future__ import annotations

import re
import subprocess
import sys


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines()}


def _demo(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "espfast", "demo", "--seconds", "1", *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = proc.stdout.split("espfast demo report", 1)[1]
    # The namespaces it made (named in the report) are gone again.
    made = re.search(r"namespaces +(ef-demo-\w+), (ef-demo-\w+)", report)
    assert made is not None
    assert not {made.group(1), made.group(2)} & _namespaces()
    assert report.count("5/5 replies") == 2  # IPv4 and IPv6
    assert "Gbit/s (1 stream)" in report
    assert "ESP-in-UDP/4500" in report and "in the clear" not in report
    return report


def test_demo_ikev2_with_certificates() -> None:
    report = _demo()
    assert "CA + a.demo.test + b.demo.test" in report
    assert re.search(r"IKEv2 handshake \(on the wire\) +2 round trips \(init, auth\)", report)
    assert re.search(r"espfast status +shown above", report)


def test_demo_static_keys() -> None:
    report = _demo("--static")
    assert "(static keys)" in report and "IKE" not in report
