"""Results streamed per second for one pile of `echo` jobs, from one worker process.

Starts `service.app:app` under gunicorn with one GreenWorker on a free loopback port, creates a pile of
`--jobs` echo jobs in one `POST /v1/piles`, then reads `GET /v1/piles/{id}/results` (NDJSON) to the end.
Reports the time from the create request to the last record (end to end: accept, run, stream) and the
time of the stream alone, as results per second; medians over `--reps` runs. Target: >= 20,000 results/s.
The server's store is its default, SQLite (a fresh file in a temporary directory), `--store memory`, or
`--store redis` (one replica on a redis-server the script starts, as bench_celery.py does).

    .venv/bin/python benchmarks/bench_stream.py [--jobs 100000] [--reps 3] [--store sqlite|memory|redis]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_celery import RedisProcess  # noqa: E402
from serverkit import start_server  # noqa: E402

TARGET = 20_000


def run_once(url: str, jobs: int) -> tuple[float, float]:
    """(end-to-end seconds, stream-only seconds) for one pile of `jobs` echo jobs."""
    body = json.dumps({"task": "echo", "items": [{"i": i} for i in range(jobs)]})
    session = requests.Session()
    start = time.perf_counter()
    resp = session.post(url + "/v1/piles", data=body, headers={"Content-Type": "application/json"}, timeout=120)
    resp.raise_for_status()
    pile_id = resp.json()["id"]
    stream_start = time.perf_counter()
    seen = 0
    with session.get(f"{url}/v1/piles/{pile_id}/results", stream=True, timeout=120) as results:
        for line in results.iter_lines(chunk_size=1 << 16):
            if line:
                seen += 1
    end = time.perf_counter()
    if seen != jobs:
        raise SystemExit(f"streamed {seen} records for a pile of {jobs}")
    return end - start, end - stream_start


def main() -> int:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--store", choices=("sqlite", "memory", "redis"), default="sqlite")
    args = parser.parse_args()
    env = {
        "GREENPOOL_POOL_SIZE": "1000",
        "GREENPOOL_MAX_QUEUED": str(max(args.jobs * 2, 10_000)),  # one client may fill 75% of it
        "GREENPOOL_MAX_RECORDS": str(max(args.jobs * 2, 100_000)),
        "GREENPOOL_MAX_BODY_BYTES": str(64 << 20),
        "GREENPOOL_MAX_PILE_SIZE": str(max(args.jobs, 10_000)),
        "GREENPOOL_LOG_LEVEL": "warning",
    }
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisProcess(Path(tmp)) if args.store == "redis" else None
        if args.store == "sqlite":
            env["GREENPOOL_STORE"] = f"sqlite:{tmp}/greenpool.db"
        elif redis is not None:
            env["GREENPOOL_STORE"] = f"{redis.url}/0"
        server = start_server(Path(tmp), env=env)
        try:
            run_once(server.url, min(args.jobs, 2_000))  # warm-up
            runs = [run_once(server.url, args.jobs) for _ in range(args.reps)]
        finally:
            server.stop()
            if redis is not None:
                redis.stop()
    total = statistics.median(r[0] for r in runs)
    stream = statistics.median(r[1] for r in runs)
    rate = args.jobs / total
    cpu = platform.processor() or platform.machine()
    print(f"machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}")
    print(f"command: {' '.join(sys.argv)} (store: {args.store})\n")
    print("| pile size | end to end (create → last record) | results/s | stream only | target | met? |")
    print("|---:|---:|---:|---:|---:|---|")
    print(f"| {args.jobs:,} | {total:.2f} s | {rate:,.0f} | {stream:.2f} s | ≥ {TARGET:,}/s | "
          f"{'yes' if rate >= TARGET else 'NO'} |")  # fmt: skip
    return 0 if rate >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
