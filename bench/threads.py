"""Where a tunnel saturates: each thread's CPU time and run-queue wait, and how busy the
whole machine was, over one measurement (``python -m bench.profile`` prints them).

From /proc/<pid>/task/<tid>/schedstat (nanoseconds on a CPU, nanoseconds runnable but
waiting for one, time slices) and comm (the dataplane names its threads ef-tx0, ef-rx0,
...), and the first line of /proc/stat. A thread whose wait is as large as its run time is
short of CPU, not of work; one that is neither running nor waiting sleeps (on I/O, a lock
or its turn). Pure functions over a /proc root, so that they are unit-tested.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ThreadUse:
    pid: int
    name: str
    run: float  # CPU-seconds per second on a CPU
    wait: float  # seconds per second runnable but waiting for a CPU
    slices: float  # time slices per second (wake-ups and preemptions)


def snapshot(
    pids: list[int], proc: Path = PROC
) -> dict[tuple[int, int], tuple[str, int, int, int]]:
    """(pid, tid) -> (name, run ns, wait ns, slices) of every thread of ``pids``."""
    out: dict[tuple[int, int], tuple[str, int, int, int]] = {}
    for pid in pids:
        try:
            tasks = sorted((proc / str(pid) / "task").iterdir())
        except OSError:
            continue  # gone
        for task in tasks:
            try:
                run, wait, slices = map(int, (task / "schedstat").read_text().split()[:3])
                name = (task / "comm").read_text().strip()
            except (OSError, ValueError):
                continue
            out[(pid, int(task.name))] = (name, run, wait, slices)
    return out


def machine(proc: Path = PROC) -> tuple[int, int]:
    """(all jiffies, idle + iowait jiffies) of every CPU so far (/proc/stat)."""
    with open(proc / "stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]


def busy_cores(before: tuple[int, int], after: tuple[int, int], seconds: float) -> float:
    """CPUs kept busy on average between two :func:`machine` readings."""
    total, idle = after[0] - before[0], after[1] - before[1]
    return (total - idle) / os.sysconf("SC_CLK_TCK") / seconds if seconds > 0 else 0.0


def usage(
    before: dict[tuple[int, int], tuple[str, int, int, int]],
    after: dict[tuple[int, int], tuple[str, int, int, int]],
    seconds: float,
) -> list[ThreadUse]:
    """Per thread present in both snapshots, busiest first."""
    out = []
    for key, (name, run, wait, slices) in after.items():
        if key not in before or seconds <= 0:
            continue
        _, run0, wait0, slices0 = before[key]
        per_s = 1e9 * seconds
        out.append(ThreadUse(key[0], name, (run - run0) / per_s, (wait - wait0) / per_s,
                             (slices - slices0) / seconds))  # fmt: skip
    return sorted(out, key=lambda u: -u.run)


def markdown(uses: list[ThreadUse], busy: float, cpus: int, least: float = 0.01) -> list[str]:
    """The threads that ran at least ``least`` of a CPU, and the machine's load."""
    lines = [
        f"Threads (the whole machine: {busy:.2f} of {cpus} CPUs busy):",
        "",
        "| pid | thread | CPU | run-queue wait | slices/s |",
        "|---|---|---|---|---|",
    ]
    for u in uses:
        if u.run >= least:
            lines.append(f"| {u.pid} | {u.name} | {u.run:.2f} | {u.wait:.2f} | {u.slices:.0f} |")
    return lines
