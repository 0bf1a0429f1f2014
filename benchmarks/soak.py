#!/usr/bin/env python3
"""Soak: push 1,000,000 echo jobs through one greenpool worker's HTTP API and watch its memory stay flat.

Starts a server (gunicorn + GreenWorker on a free 127.0.0.1 port) with short retention
(GREENPOOL_RESULT_TTL=5 s, GREENPOOL_MAX_RECORDS=20,000, log level warning) and the server's default store,
SQLite, in a fresh temporary directory (`--store memory` for the memory store), then `--clients` threads, each
on its own keep-alive session, loop until `--jobs` jobs were accepted: most create a closed pile of
`--batch` echo jobs (`POST /v1/piles`) and read its NDJSON result stream to the end; one submits single
jobs (`POST /v1/jobs`). A 429 is honoured (`Retry-After`) and counted. Every `--interval` seconds the
worker's resident set size is read from /proc/<pid>/statm, with the store file's size (database + WAL) and
/v1/pool's counters, into
benchmarks/results/soak.csv, and a Markdown summary goes to benchmarks/results/soak.md (and stdout).

Verdict (exit status): 0 when every job was accepted and streamed back within `--max-seconds` and memory
and the store file are flat over the second half of the run: the median of the last three samples is at
most `--max-growth` (20%) above the median of the first three (fewer samples: the first and last). 1 when
either grew more, 2 when the run did not finish in time or a request failed.

    .venv/bin/python benchmarks/soak.py                      # 1,000,000 jobs, up to 1,800 s, a sample every 10 s
    .venv/bin/python benchmarks/soak.py --quick              # smoke: 150,000 jobs, 1 s samples, 1 s retention
    .venv/bin/python benchmarks/soak.py --jobs 200000 --interval 5 --results /tmp/soak
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
PAGE = os.sysconf("SC_PAGE_SIZE")
SERVER_ENV = {
    "GREENPOOL_POOL_SIZE": "200",
    "GREENPOOL_MAX_QUEUED": "100000",
    "GREENPOOL_RESULT_TTL": "5",
    "GREENPOOL_MAX_RECORDS": "20000",
    "GREENPOOL_LOG_LEVEL": "warning",
}
BOOT_TIMEOUT = 30.0


@dataclass
class Sample:
    """One reading: seconds since the start, worker RSS, and /v1/pool's counters."""

    t: float
    rss_bytes: int
    accepted: int
    streamed: int
    succeeded: int
    queued: int
    running: int
    store_bytes: int = 0


@dataclass
class Run:
    """Shared state of one soak run."""

    target: int
    batch: int
    deadline: float
    accepted: int = 0
    streamed: int = 0
    rejected_429: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def claim(self, count: int) -> int:
        """Reserve up to `count` of the jobs still to submit; 0 when done (or stopping)."""
        with self.lock:
            if self.stop.is_set():
                return 0
            n = max(0, min(count, self.target - self.accepted))
            self.accepted += n
            return n

    def unclaim(self, count: int) -> None:
        """Give back jobs that were refused (429)."""
        with self.lock:
            self.accepted -= count
            self.rejected_429 += 1

    def done(self, count: int) -> None:
        with self.lock:
            self.streamed += count

    def fail(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)
        self.stop.set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """gunicorn + GreenWorker serving service.app:app on 127.0.0.1:`port`; returns once /healthz answers."""
    cmd = [sys.executable, "-m", "gunicorn", "-k", "service.worker.GreenWorker", "--bind", f"127.0.0.1:{port}",
           "--workers", "1", "--no-control-socket", "--keep-alive", "30", "--worker-connections", "1000",
           "--timeout", "60", "--graceful-timeout", "5", "service.app:app"]  # fmt: skip
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GREENPOOL_")}
    full_env.update({"PYTHONUNBUFFERED": "1", **env})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: see {log_path}")
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except requests.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"the server did not answer within {BOOT_TIMEOUT}s: see {log_path}")


def worker_pid(master: int, timeout: float = 10.0) -> int:
    """The pid of the master's (single) worker process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise RuntimeError("the gunicorn master has no worker process")


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` (second field of /proc/<pid>/statm, in pages)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def pile_client(url: str, run: Run) -> None:
    """Create piles of `run.batch` echo jobs and read each one's NDJSON stream to its end."""
    session = requests.Session()
    seq = 0
    while True:
        n = run.claim(run.batch)
        if not n:
            return
        items = [{"n": seq + i} for i in range(n)]
        seq += n
        try:
            resp = session.post(url + "/v1/piles", json={"task": "echo", "items": items}, timeout=60)
            if resp.status_code == 429:
                run.unclaim(n)
                time.sleep(min(5.0, float(resp.headers.get("Retry-After", "1"))))
                continue
            if resp.status_code != 201:
                run.fail(f"POST /v1/piles: {resp.status_code} {resp.text[:200]}")
                return
            pile_id = resp.json()["id"]
            lines = 0
            with session.get(f"{url}/v1/piles/{pile_id}/results", stream=True, timeout=60) as stream:
                if stream.status_code != 200:
                    run.fail(f"GET results: {stream.status_code} {stream.text[:200]}")
                    return
                for chunk in stream.iter_content(65536):
                    lines += chunk.count(b"}\n")  # one record per line; heartbeats are bare newlines
            if lines != n:
                run.fail(f"pile {pile_id}: streamed {lines} records of {n}")
                return
            run.done(n)
        except requests.RequestException as exc:
            run.fail(f"pile client: {exc!r}")
            return


def job_client(url: str, run: Run) -> None:
    """Submit single echo jobs with `POST /v1/jobs` (their results are not read back)."""
    session = requests.Session()
    while True:
        if not run.claim(1):
            return
        try:
            resp = session.post(url + "/v1/jobs", json={"task": "echo", "args": {"single": True}}, timeout=30)
        except requests.RequestException as exc:
            run.fail(f"job client: {exc!r}")
            return
        if resp.status_code == 429:
            run.unclaim(1)
            time.sleep(min(5.0, float(resp.headers.get("Retry-After", "1"))))
        elif resp.status_code != 202:
            run.fail(f"POST /v1/jobs: {resp.status_code} {resp.text[:200]}")
            return
        else:
            run.done(1)


def file_bytes(database: Path | None) -> int:
    """The SQLite store's size on disk: the database and its write-ahead log (0 for the memory store)."""
    if database is None:
        return 0
    return sum(path.stat().st_size for path in (database, Path(f"{database}-wal")) if path.exists())


def sample(url: str, pid: int, started: float, run: Run, database: Path | None = None) -> Sample:
    """RSS, the store file's size and the counters now."""
    try:
        pool = requests.get(url + "/v1/pool", timeout=10).json()
    except requests.RequestException:
        pool = {}
    return Sample(round(time.monotonic() - started, 1), rss_bytes(pid), run.accepted, run.streamed,
                  pool.get("succeeded", -1), pool.get("queued", -1), pool.get("running", -1),
                  file_bytes(database))  # fmt: skip


def growth(samples: list[Sample], what: str = "rss_bytes") -> tuple[float, float, float]:
    """(start, end, relative growth) of RSS (or `what`) over the second half of the run (medians of three;
    see doc); no growth for a size that stays 0 (the memory store's file)."""
    values = [getattr(s, what) for s in samples[len(samples) // 2 :]]
    if len(values) >= 6:
        start, end = statistics.median(values[:3]), statistics.median(values[-3:])
    else:
        start, end = values[0], values[-1]
    return start, end, end / start - 1 if start else 0.0


def summary(args: argparse.Namespace, run: Run, samples: list[Sample], seconds: float, verdict: str) -> str:
    """The Markdown report."""
    mib = 1 << 20
    start, end, grew = growth(samples)
    file_start, file_end, file_grew = growth(samples, "store_bytes")
    lines = [
        f"# Soak: {run.streamed:,} echo jobs through the HTTP API",
        "",
        f"- jobs: {run.accepted:,} accepted, {run.streamed:,} streamed back (target {args.jobs:,}); "
        f"{args.clients} clients ({args.clients - 1} pile clients with batches of {args.batch}, 1 single-job "
        f"client); 429 answers: {run.rejected_429}",
        f"- time: {seconds:.0f} s ({run.streamed / max(seconds, 1e-9):,.0f} jobs/s); limit {args.max_seconds:g} s",
        f"- server: {', '.join(f'{k}={v}' for k, v in SERVER_ENV.items())}",
        f"- RSS: first {samples[0].rss_bytes / mib:.1f} MiB, peak {max(s.rss_bytes for s in samples) / mib:.1f} "
        f"MiB, last {samples[-1].rss_bytes / mib:.1f} MiB; second half {start / mib:.1f} → {end / mib:.1f} MiB "
        f"({grew:+.1%}, limit {args.max_growth:+.0%})",
        f"- store: {args.store}"
        + (f"; file (database + WAL) peak {max(s.store_bytes for s in samples) / mib:.1f} MiB, second half "
           f"{file_start / mib:.1f} → {file_end / mib:.1f} MiB ({file_grew:+.1%})" if args.store == "sqlite" else ""),
        f"- verdict: **{verdict}**",
        "",
        "| t (s) | RSS (MiB) | store file (MiB) | jobs accepted | jobs streamed back | succeeded (server) | queued "
        "| running |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in samples:
        lines.append(f"| {s.t:.0f} | {s.rss_bytes / mib:.1f} | {s.store_bytes / mib:.1f} | {s.accepted:,} "
                     f"| {s.streamed:,} | {s.succeeded:,} "
                     f"| {s.queued} | {s.running} |")  # fmt: skip
    if run.errors:
        lines += ["", "Errors:", *[f"- {e}" for e in run.errors[:10]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the soak; see the module docstring for the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="echo jobs to push through (1,000,000)")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="time limit for the run (1,800)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between RSS samples (10)")
    parser.add_argument("--clients", type=int, default=4, help="client threads (one of them submits single jobs)")
    parser.add_argument("--batch", type=int, default=1000, help="jobs per pile (1,000)")
    parser.add_argument("--max-growth", type=float, default=0.20, help="allowed RSS growth over the second half")
    parser.add_argument("--result-ttl", type=float, default=5.0, help="the server's GREENPOOL_RESULT_TTL (5)")
    parser.add_argument("--max-records", type=int, default=20_000, help="the server's GREENPOOL_MAX_RECORDS (20,000)")
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite",
                        help="the server's store (default sqlite, the server's default, in a temporary directory)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="where soak.csv and soak.md go")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 150,000 jobs, 1 s samples, 1 s retention (5,000 records), 60 s limit",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.interval, args.max_seconds = min(args.jobs, 150_000), min(args.interval, 1.0), 60.0
        args.result_ttl, args.max_records = min(args.result_ttl, 1.0), min(args.max_records, 5_000)
    SERVER_ENV.update(GREENPOOL_RESULT_TTL=f"{args.result_ttl:g}", GREENPOOL_MAX_RECORDS=str(args.max_records))
    name = "soak-quick" if args.quick else "soak"
    args.results.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="greenpool-soak-") as data_dir:
        database = Path(data_dir) / "greenpool.db" if args.store == "sqlite" else None
        SERVER_ENV["GREENPOOL_STORE"] = f"sqlite:{database}" if database else "memory"
        return soak(args, name, database)


def soak(args: argparse.Namespace, name: str, database: Path | None) -> int:
    """One run against a fresh server: its samples, report and exit status."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(port, SERVER_ENV, args.results / f"{name}-server.log")
    try:
        pid = worker_pid(proc.pid)
        started = time.monotonic()
        run = Run(args.jobs, args.batch, started + args.max_seconds)
        threads = [threading.Thread(target=job_client, args=(url, run), daemon=True)]
        threads += [threading.Thread(target=pile_client, args=(url, run), daemon=True)
                    for _ in range(max(1, args.clients - 1))]  # fmt: skip
        samples = [sample(url, pid, started, run, database)]
        for thread in threads:
            thread.start()
        next_at = started + args.interval
        while any(t.is_alive() for t in threads):
            if time.monotonic() > run.deadline:
                run.fail(f"not done within {args.max_seconds:g} s")
                break
            time.sleep(max(0.0, min(0.2, next_at - time.monotonic())))
            if time.monotonic() >= next_at:
                samples.append(sample(url, pid, started, run, database))
                next_at += args.interval
                print(f"t={samples[-1].t:6.0f}s rss={samples[-1].rss_bytes / 2**20:7.1f} MiB "
                      f"streamed={run.streamed:,}", file=sys.stderr, flush=True)  # fmt: skip
        seconds = time.monotonic() - started
        samples.append(sample(url, pid, started, run, database))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()

    with open(args.results / f"{name}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t_s", "rss_bytes", "store_bytes", "jobs_accepted", "jobs_streamed", "succeeded", "queued",
                         "running"])  # fmt: skip
        for s in samples:
            writer.writerow([s.t, s.rss_bytes, s.store_bytes, s.accepted, s.streamed, s.succeeded, s.queued,
                             s.running])  # fmt: skip
    grew, file_grew = growth(samples)[2], growth(samples, "store_bytes")[2]
    if run.errors or run.streamed < args.jobs:
        verdict, status = f"FAILED: {run.errors[0] if run.errors else 'incomplete'}", 2
    elif grew > args.max_growth:
        verdict, status = f"FAILED: RSS grew {grew:.1%} over the second half (limit {args.max_growth:.0%})", 1
    elif file_grew > args.max_growth:
        verdict, status = f"FAILED: the store file grew {file_grew:.1%} over the second half", 1
    else:
        verdict, status = "ok: memory" + (" and store file" if database else "") + " flat", 0
    report = summary(args, run, samples, seconds, verdict)
    (args.results / f"{name}.md").write_text(report)
    print(report)
    return status


if __name__ == "__main__":
    sys.exit(main())
