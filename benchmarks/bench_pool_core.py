#!/usr/bin/env python3
"""Benchmark pool_core against eventlet and gevent: throughput of pools/piles/switching and parked memory.

Every measurement runs in a fresh interpreter (`--child`), so eventlet, gevent and pool_core are never
imported into the same process, and no library is monkey-patched. The parent imports none of them: it
runs rounds in which the libraries alternate (pool_core, eventlet, gevent, pool_core, ...) on each
benchmark, takes the median of the repetitions and reports ratios from this one run.

    .venv/bin/python benchmarks/bench_pool_core.py                # full run, 5 repetitions
    .venv/bin/python benchmarks/bench_pool_core.py --quick --reps 1 --only pool_core   # smoke run

Benchmarks (N for a full run; `--quick` divides the work by 10):
  spawn_waitall  GreenPool(1000): spawn 100,000 no-ops, then waitall()   (gevent: Pool(1000).spawn + join)
  spawn_n        GreenPool(1000): spawn_n 100,000 no-ops, then waitall() (gevent has no spawn_n: Pool.spawn)
  imap           list(GreenPool(1000).imap(f, range(100,000)))
  pile           GreenPile(1000): spawn 20,000, then iterate (gevent: Pool(1000).imap_unordered)
  sleep0         GreenPool(10,000): 10,000 green threads x 10 sleep(0) -> switches/s = 100,000 / elapsed
  memory         10,000 green threads parked on one Event: RSS growth / 10,000 (from /proc/self/statm)

Only the timed region is measured: imports, one small warm-up pass of the same code and gc.collect() come
first. Throughput is in operations (or switches) per second; memory in KB (1 KB = 1,000 bytes).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
LIBS = ("pool_core", "eventlet", "gevent")
PEERS = ("eventlet", "gevent")
#: The versions the acceptance numbers were measured with.
REFERENCE_VERSIONS = {"eventlet": "0.41.3", "gevent": "26.9.0"}
INSTALL_HINT = "pip install -e '.[bench]'"
POOL_SIZE = 1000
CHILD_TIMEOUT = 600.0


@dataclass(frozen=True)
class Bench:
    """One benchmark: its label, its work size (full and --quick), its unit and its targets."""

    name: str
    label: str
    n: int
    quick_n: int
    unit: str
    higher_is_better: bool = True
    min_x_eventlet: float | None = None
    min_x_gevent: float | None = None
    max_value: float | None = None


BENCHES: tuple[Bench, ...] = (
    Bench("spawn_waitall", "spawn+waitall, 100,000 no-ops, pool of 1,000", 100_000, 10_000, "ops/s",
          min_x_eventlet=1.5, min_x_gevent=1.2),
    Bench("spawn_n", "spawn_n + waitall, 100,000 no-ops (gevent: Pool.spawn)", 100_000, 10_000, "ops/s",
          min_x_eventlet=1.5, min_x_gevent=1.2),
    Bench("imap", "list(imap(...)) over 100,000", 100_000, 10_000, "ops/s",
          min_x_eventlet=1.5, min_x_gevent=1.2),
    Bench("pile", "GreenPile of 20,000 (gevent: imap_unordered)", 20_000, 2_000, "ops/s",
          min_x_eventlet=1.5, min_x_gevent=1.2),
    Bench("sleep0", "10,000 green threads x 10 sleep(0)", 10_000, 1_000, "switches/s",
          min_x_gevent=1.5),
    Bench("memory", "resident memory per green thread parked on an Event", 10_000, 1_000, "KB",
          higher_is_better=False, max_value=5.0),
)
BENCH_BY_NAME = {b.name: b for b in BENCHES}


# ------------------------------------------------------------------------------------------------
# Child side: runs in a fresh interpreter, imports exactly one library, prints one JSON line.
# ------------------------------------------------------------------------------------------------
def _noop() -> None:
    """Do nothing (the spawned call)."""


def _ident(x: Any) -> Any:
    """Return the argument (the mapped call)."""
    return x


class Adapter:
    """The few operations the benchmarks need, spelled for one library."""

    def __init__(self, lib: str) -> None:
        """Import `lib` (only this one) and bind its pool, pile, sleep and event API."""
        self.lib = lib
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # eventlet's import-time deprecation warning
            if lib == "gevent":
                self.mod = importlib.import_module("gevent")
                self.pool_mod = importlib.import_module("gevent.pool")
                self.event_mod = importlib.import_module("gevent.event")
            else:
                self.mod = importlib.import_module(lib)
        self.sleep: Callable[[float], None] = self.mod.sleep

    def pool(self, size: int) -> Any:
        """A pool bounding concurrency at `size`."""
        return self.pool_mod.Pool(size) if self.lib == "gevent" else self.mod.GreenPool(size)

    def waitall(self, pool: Any) -> None:
        """Wait until everything spawned through `pool` has ended."""
        if self.lib == "gevent":
            pool.join()
        else:
            pool.waitall()

    def spawn_waitall(self, n: int) -> int:
        """Spawn `n` no-ops through a pool of 1,000 and wait for all; returns operations done."""
        pool = self.pool(POOL_SIZE)
        spawn = pool.spawn
        for _ in range(n):
            spawn(_noop)
        self.waitall(pool)
        return n

    def spawn_n(self, n: int) -> int:
        """Like `spawn_waitall` with `spawn_n` (gevent has none: `Pool.spawn`)."""
        pool = self.pool(POOL_SIZE)
        spawn = pool.spawn if self.lib == "gevent" else pool.spawn_n
        for _ in range(n):
            spawn(_noop)
        self.waitall(pool)
        return n

    def imap(self, n: int) -> int:
        """`list(pool.imap(f, range(n)))` through a pool of 1,000."""
        out = list(self.pool(POOL_SIZE).imap(_ident, range(n)))
        assert len(out) == n
        return n

    def pile(self, n: int) -> int:
        """A GreenPile(1000) of `n` calls, then iterate (gevent: `Pool(1000).imap_unordered`)."""
        if self.lib == "gevent":
            count = sum(1 for _ in self.pool(POOL_SIZE).imap_unordered(_ident, range(n)))
        else:
            pile = self.mod.GreenPile(POOL_SIZE)
            spawn = pile.spawn
            for i in range(n):
                spawn(_ident, i)
            count = sum(1 for _ in pile)
        assert count == n
        return n

    def sleep0(self, n: int) -> int:
        """`n` green threads (pool of `n`) each doing 10 x sleep(0); returns the number of switches."""
        sleep = self.sleep

        def worker() -> None:
            for _ in range(10):
                sleep(0)

        pool = self.pool(n)
        for _ in range(n):
            pool.spawn(worker)
        self.waitall(pool)
        return 10 * n

    # -- memory ----------------------------------------------------------------------------------
    def event(self) -> Any:
        """A fresh one-shot event."""
        return self.event_mod.Event() if self.lib == "gevent" else self.mod.Event()

    def send(self, event: Any) -> None:
        """Fire `event`, waking its waiters."""
        if self.lib == "gevent":
            event.set()
        else:
            event.send()

    def park_on_event(self, n: int) -> tuple[int, int]:
        """Spawn `n` green threads that wait on one event, let all park, read RSS, release them.

        Returns (RSS after all parked - RSS before spawning, green threads that were parked)."""
        sleep = self.sleep
        event = self.event()
        state = {"parked": 0, "done": 0}

        def waiter() -> None:
            state["parked"] += 1
            event.wait()
            state["done"] += 1

        gc.collect()
        before = _rss_bytes()
        for _ in range(n):
            self.mod.spawn(waiter)
        _settle(sleep, lambda: state["parked"] == n)
        for _ in range(3):  # every waiter has called wait(); let the hub finish any bookkeeping
            sleep(0)
        after = _rss_bytes()
        parked = state["parked"] - state["done"]
        self.send(event)
        _settle(sleep, lambda: state["done"] == n)
        return after - before, parked


def _settle(sleep: Callable[[float], None], done: Callable[[], bool], limit: float = 60.0) -> None:
    """Yield with sleep(0) until `done()` (or fail after `limit` seconds)."""
    deadline = time.monotonic() + limit
    while not done():
        sleep(0)
        if time.monotonic() > deadline:
            raise RuntimeError("green threads did not settle in time")


def _rss_bytes() -> int:
    """Resident set size of this process: resident pages from /proc/self/statm times the page size."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def run_child(lib: str, bench: str, n: int) -> dict[str, Any]:
    """Run one measurement of `bench` with `lib` in this (fresh) process; return it as a dict."""
    adapter = Adapter(lib)
    if bench == "memory":
        adapter.park_on_event(20)  # warm-up of the same path with a few green threads
        gc.collect()
        grown, parked = adapter.park_on_event(n)
        return {"lib": lib, "bench": bench, "n": n, "parked": parked, "rss_growth": grown,
                "value": grown / n / 1000.0}
    fn: Callable[[int], int] = getattr(adapter, bench)
    fn(max(n // 20, 100))  # warm-up pass, not timed
    gc.collect()
    start = time.perf_counter()
    ops = fn(n)
    elapsed = time.perf_counter() - start
    return {"lib": lib, "bench": bench, "n": n, "ops": ops, "elapsed": elapsed, "value": ops / elapsed}


# ------------------------------------------------------------------------------------------------
# Parent side: alternates fresh subprocesses, aggregates medians, prints and writes the table.
# ------------------------------------------------------------------------------------------------
def lib_available(lib: str) -> bool:
    """Whether `lib` can be imported by the children (checked without importing it here)."""
    if lib == "pool_core":
        return (REPO / "pool_core" / "__init__.py").is_file() and importlib.util.find_spec("greenlet") is not None
    return importlib.util.find_spec(lib) is not None


def dist_version(name: str) -> str:
    """Installed version of distribution `name`, or 'missing'."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's guess)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """One line describing the machine and the library versions."""
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(f"{d} {dist_version(d)}" for d in ("greenlet", "eventlet", "gevent"))
    return (f"nproc {nproc}, {cpu_model()}, Python {platform.python_version()} "
            f"({platform.python_implementation()}), {versions}")


def git_revision() -> str:
    """Short commit of the checkout (plus '-dirty' when pool_core has local changes)."""
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "pool_core"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def command_line() -> str:
    """The exact command that produced this run, as typed from the repository root."""
    exe = sys.executable
    with contextlib.suppress(ValueError):
        exe = os.path.relpath(exe, Path.cwd()) if Path(exe).is_relative_to(Path.cwd()) else exe
    return shlex.join([exe, *sys.argv])


def spawn_child(lib: str, bench: Bench, quick: bool) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and parse its JSON line."""
    n = bench.quick_n if quick else bench.n
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONWARNINGS"] = "ignore"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", lib, bench.name, str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{lib} {bench.name} failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{lib} {bench.name} printed no JSON:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1])


def fmt_value(bench: Bench, value: float | None) -> str:
    """A measurement for the table: k ops/s, or KB."""
    if value is None:
        return "—"
    if bench.unit == "KB":
        return f"{value:.2f} KB"
    return f"{value / 1000:,.0f}k"


def advantage(bench: Bench, ours: float | None, theirs: float | None) -> float | None:
    """How many times better pool_core is than a peer (throughput ratio, or inverse memory ratio)."""
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return None
    return ours / theirs if bench.higher_is_better else theirs / ours


def target_text(bench: Bench) -> str:
    """The acceptance target of a benchmark, as text."""
    parts = []
    if bench.min_x_eventlet:
        parts.append(f"≥ {bench.min_x_eventlet}× eventlet")
    if bench.min_x_gevent:
        parts.append(f"≥ {bench.min_x_gevent}× gevent")
    if bench.max_value is not None:
        parts.append(f"≤ {bench.max_value:g} KB")
    return ", ".join(parts)


def target_met(bench: Bench, ours: float | None, x_ev: float | None, x_gev: float | None) -> str:
    """'yes', 'NO', or 'n/a' when a needed peer was not measured."""
    checks: list[bool | None] = []
    if bench.min_x_eventlet:
        checks.append(None if x_ev is None else x_ev >= bench.min_x_eventlet)
    if bench.min_x_gevent:
        checks.append(None if x_gev is None else x_gev >= bench.min_x_gevent)
    if bench.max_value is not None:
        checks.append(None if ours is None else ours <= bench.max_value)
    if any(c is False for c in checks):
        return "**NO**"
    if any(c is None for c in checks):
        return "n/a"
    return "yes"


def render(results: dict[str, dict[str, list[float]]], libs: list[str], benches: list[Bench],
           args: argparse.Namespace, extra: dict[str, Any]) -> str:
    """The Markdown report: machine, command, the table of medians and ratios, and per-rep values."""
    reps = args.reps
    out = [
        f"## pool_core vs eventlet vs gevent ({'quick smoke run' if args.quick else 'full run'})",
        "",
        f"- Machine: {machine_line()}",
        f"- pool_core: greenpool at {git_revision()}",
        f"- Command: `{command_line()}`",
        f"- Run: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {reps} alternating rounds per benchmark, "
        f"each library in a fresh subprocess per measurement; medians shown. Load average before/after: "
        f"{extra['load_before']} / {extra['load_after']} (shared machine: numbers are noisy).",
        "",
        "| benchmark | pool_core | eventlet | gevent | ×eventlet | ×gevent | target | met? |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for bench in benches:
        med = {lib: (statistics.median(results[bench.name][lib]) if results[bench.name].get(lib) else None)
               for lib in LIBS}
        ours = med["pool_core"]
        x_ev = advantage(bench, ours, med["eventlet"])
        x_gev = advantage(bench, ours, med["gevent"])
        cells = [
            f"{bench.label} ({bench.unit})",
            *(fmt_value(bench, med[lib]) for lib in LIBS),
            "—" if x_ev is None else f"{x_ev:.2f}×",
            "—" if x_gev is None else f"{x_gev:.2f}×",
            target_text(bench),
            target_met(bench, ours, x_ev, x_gev),
        ]
        out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "×peer = how many times better pool_core is "
        "(throughput: pool_core / peer; memory: peer / pool_core). "
        "Throughput in thousands of operations (or switches) per second; 1 KB = 1,000 bytes.",
        "gevent equivalents: `Pool(1000).spawn` + `join()` (also for spawn_n: gevent has none), `Pool.imap`, "
        "`Pool(1000).imap_unordered` for the pile, `gevent.event.Event` for memory.",
        "",
        "<details><summary>Every repetition</summary>",
        "",
    ]
    for bench in benches:
        for lib in libs:
            values = results[bench.name].get(lib, [])
            out.append(f"- {bench.name} / {lib}: " + ", ".join(fmt_value(bench, v) for v in values))
    out += ["", "</details>", ""]
    return "\n".join(out)


def select(only: list[str]) -> tuple[list[str], list[Bench]]:
    """Libraries and benchmarks chosen by the `--only` names (libraries and/or benchmarks)."""
    names = [name for item in only for name in item.split(",") if name]
    unknown = [n for n in names if n not in LIBS and n not in BENCH_BY_NAME]
    if unknown:
        raise SystemExit(f"--only: unknown name(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(LIBS + tuple(BENCH_BY_NAME))}")
    libs = [lib for lib in LIBS if lib in names] or list(LIBS)
    benches = [b for b in BENCHES if b.name in names] or list(BENCHES)
    return libs, benches


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="alternating rounds per benchmark (default 5)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help=f"restrict to libraries and/or benchmarks, repeatable or comma-separated: "
                             f"{', '.join(LIBS + tuple(BENCH_BY_NAME))}")
    parser.add_argument("--quick", action="store_true", help="one tenth of the work, for a smoke run")
    parser.add_argument("--output", type=Path, default=None,
                        help="Markdown file to write (default: benchmarks/results/pool_core.md for a full "
                             "run, pool_core-quick.md with --quick/--only/--reps < 5)")
    parser.add_argument("--child", nargs=3, metavar=("LIB", "BENCH", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point: a child measurement with --child, else the whole alternating benchmark."""
    args = parse_args(argv)
    if args.child:
        lib, bench, n = args.child
        print(json.dumps(run_child(lib, bench, int(n))), flush=True)
        return 0

    libs, benches = select(args.only)
    missing = [lib for lib in libs if not lib_available(lib)]
    if missing:
        names = ", ".join("pool_core (needs greenlet)" if lib == "pool_core" else lib for lib in missing)
        hint = "" if "pool_core" in missing else "\n(or benchmark pool_core alone: --only pool_core)"
        print(f"error: cannot import {names} with {sys.executable}. Install the `bench` extra:\n"
              f"    {INSTALL_HINT}{hint}", file=sys.stderr)
        return 2
    for lib in libs:
        want = REFERENCE_VERSIONS.get(lib)
        if want and dist_version(lib) != want:
            print(f"warning: {lib} {dist_version(lib)} installed; the targets were set against {want} "
                  f"({INSTALL_HINT})", file=sys.stderr)

    canonical = not args.quick and not args.only and args.reps >= 5
    output = args.output or RESULTS_DIR / ("pool_core.md" if canonical else "pool_core-quick.md")
    results: dict[str, dict[str, list[float]]] = {b.name: {lib: [] for lib in libs} for b in benches}
    extra = {"load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    started = time.monotonic()
    for rnd in range(1, args.reps + 1):
        for bench in benches:
            for lib in libs:  # alternate libraries back to back, so load changes hit all of them alike
                try:
                    record = spawn_child(lib, bench, args.quick)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return 1
                results[bench.name][lib].append(record["value"])
                value = fmt_value(bench, record["value"])
                print(f"[{rnd}/{args.reps}] {bench.name:14s} {lib:10s} {value}", file=sys.stderr, flush=True)
    extra["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report = render(results, libs, benches, args, extra)
    print(report)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    print(f"(written to {output}; {time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
