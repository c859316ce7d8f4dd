"""`make demo` runs `espfast demo`: it must work end to end and leave nothing behind."""

from __future__ import annotations

import subprocess
import sys


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.startswith("ef-demo-")}


def test_demo_runs_end_to_end_and_cleans_up() -> None:
    before = _namespaces()
    proc = subprocess.run(
        [sys.executable, "-m", "espfast", "demo", "--seconds", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = proc.stdout.split("espfast demo report", 1)[1]
    assert "5/5 replies" in report
    assert "Gbit/s (1 stream)" in report
    assert "ESP-in-UDP/4500" in report and "in the clear" not in report
    assert _namespaces() == before
