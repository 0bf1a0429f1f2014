"""The CPU a server's worker process spends per request while wrk runs: a measure that a shared machine
disturbs far less than req/s (the other work on it takes turns on the cores, it does not add to our count).

`sample(pid)` reads every thread's user + system time from /proc; `per_request(before, after, requests)` is
the µs per request for the whole process and for its main thread (the hub: the one that bounds throughput;
the rest is the SQLite writer and the job threads, running beside it). Linux only; elsewhere `sample` is empty
and nothing is reported.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

__all__ = ["per_request", "sample", "table"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def sample(pid: int | None) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of process `pid`, by thread id ({} if unreadable)."""
    if pid is None:
        return {}
    times = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return {}
    for task in tasks:
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        times[int(task.name)] = (int(fields[11]) + int(fields[12])) / _TICK
    return times


def per_request(pid: int | None, before: dict[int, float], after: dict[int, float],
                requests: int) -> tuple[float, float] | None:  # fmt: skip
    """(whole process, main thread) µs of CPU per request between two samples; None if not measured."""
    if pid is None or not requests or not after:
        return None
    total = sum(cpu - before.get(tid, 0.0) for tid, cpu in after.items())
    main = after.get(pid, 0.0) - before.get(pid, 0.0)
    return total / requests * 1e6, main / requests * 1e6


def table(rows: list[tuple[str, int, dict[str, list[tuple[float, float]]]]], kinds: list[str]) -> list[str]:
    """Markdown rows: per (route, connections), each server's median µs per request, whole process (main
    thread)."""
    head = "| route | connections | " + " | ".join(f"{kind} µs/req" for kind in kinds) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(kinds)]
    for label, connections, by_kind in rows:
        cells = []
        for kind in kinds:
            values = by_kind.get(kind) or []
            if values:
                total = statistics.median(v[0] for v in values)
                main = statistics.median(v[1] for v in values)
                cells.append(f"{total:.0f} ({main:.0f})")
            else:
                cells.append("—")
        lines.append(f"| {label} | {connections} | " + " | ".join(cells) + " |")
    return lines
