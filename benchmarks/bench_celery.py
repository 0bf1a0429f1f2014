#!/usr/bin/env python3
"""greenpool against Celery (its gevent pool, `-c 100`, on the same redis-server) on four end-to-end workloads:

  per request   N echo jobs submitted one per request (greenpool: POST /v1/jobs; Celery: apply_async) from
                16 client threads, jobs/s from the first submission until every job is done
  pile          the same N as one pile (POST /v1/piles, then its NDJSON stream to the end) vs a Celery group
                (apply_async, then join_native), jobs/s
  sleep         2,000 jobs of a 0.1 s sleep at concurrency 100 as one pile / group: wall time (ideal 2.0 s)
  resize        150 jobs of 3 s at concurrency 10, then 10 → 100 (greenpool: PATCH /v1/pool; Celery: the
                pool_grow control command): the time until 100 run at once, from the jobs' own start times

The script starts redis-server (Debian package `redis-server`) on a free loopback port, greenpool through
tests/serverkit.py (gunicorn, one GreenWorker, log level warning, `--store memory|sqlite|redis`, and with
`--store redis` `--replicas N` of them sharing it) and the Celery worker itself; contenders alternate in
every round, each fresh per round; the table shows medians. Celery is a benchmark peer only
(benchmarks/celery_peer.py; the `bench` extra), never imported by greenpool.

    .venv/bin/python benchmarks/bench_celery.py                   # 3 rounds, memory store
    .venv/bin/python benchmarks/bench_celery.py --store sqlite --rounds 1
    .venv/bin/python benchmarks/bench_celery.py --quick           # smoke run: small counts, 1 round

Writes the Markdown table to stdout and to benchmarks/results/celery.md (or --output).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import requests

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
from serverkit import free_port, start_server  # noqa: E402

GREENPOOL, CELERY = "greenpool", "celery"
WORKLOADS = ("per request", "pile", "sleep", "resize")
TIMEOUT = 900.0  # no workload may take longer than this (a hung contender ends the run)


class RedisProcess:
    """A throwaway redis-server on a free loopback port, no persistence."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("bench_celery: redis-server is not installed (Debian package redis-server)")
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(directory)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        self.client = redis.Redis(port=self.port)
        until(self._pings, 10, "redis-server to answer PING")

    def _pings(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT (no database)."""
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop it and wait."""
        self.proc.terminate()
        self.proc.wait(10)


def until(predicate, timeout: float, what: str, interval: float = 0.01):
    """Poll `predicate` until truthy (returned); exit naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            sys.exit(f"bench_celery: timed out waiting for {what}")
        time.sleep(interval)
    return value


def spread(count: int, clients: int, submit) -> None:
    """Call `submit(client_index, item_index)` for `count` items from `clients` threads, each its share."""
    def run(client: int) -> None:
        for i in range(client, count, clients):
            submit(client, i)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, range(clients)))


def resize_delay(starts: list[float], grown_at: float, added: int) -> float:
    """Seconds from the resize until the `added`-th job started after it (so that all ran at once)."""
    later = sorted(s for s in starts if s >= grown_at)
    if len(later) < added:
        sys.exit(f"bench_celery: only {len(later)} jobs started after the resize, {added} expected")
    return later[added - 1] - grown_at


# -- greenpool --------------------------------------------------------------------------------------------
class Greenpool:
    """`replicas` greenpool servers on one store; the workloads through their HTTP API."""

    def __init__(self, args: argparse.Namespace, directory: Path, redis_url: str) -> None:
        store = {"memory": "memory", "sqlite": f"sqlite:{directory / 'greenpool.db'}", "redis": f"{redis_url}/1"}
        biggest = max(args.jobs, args.sleep_jobs, 1000)
        env = {"GREENPOOL_STORE": store[args.store], "GREENPOOL_POOL_SIZE": str(args.concurrency),
               "GREENPOOL_MAX_QUEUED": "10000000", "GREENPOOL_MAX_QUEUED_PER_CLIENT": "10000000",
               "GREENPOOL_MAX_PILE_SIZE": str(biggest), "GREENPOOL_MAX_RECORDS": str(4 * biggest),
               "GREENPOOL_MAX_BODY_BYTES": str(64 << 20), "GREENPOOL_PLUGINS": "bench_tasks"}  # fmt: skip
        self.servers = [start_server(directory, env, pythonpath=[BENCH_DIR], args=["--worker-connections", "10000"])
                        for _ in range(args.replicas)]  # fmt: skip
        self.url = self.servers[0].url
        self.session = requests.Session()

    def stop(self) -> None:
        """Stop every replica."""
        for server in self.servers:
            server.stop()

    def pool(self) -> dict:
        """GET /v1/pool (cluster-wide figures on a shared store)."""
        return self.session.get(self.url + "/v1/pool", timeout=10).json()

    def per_request(self, count: int, clients: int) -> float:
        """Seconds to submit `count` echo jobs one per request from `clients` threads and see them all done."""
        sessions = [requests.Session() for _ in range(clients)]
        urls = [self.servers[c % len(self.servers)].url + "/v1/jobs" for c in range(clients)]
        done_before = self.pool()["succeeded"]

        def submit(client: int, i: int) -> None:
            resp = sessions[client].post(urls[client], json={"task": "echo", "args": {"i": i}}, timeout=30)
            assert resp.status_code == 202, resp.text

        started = time.perf_counter()
        spread(count, clients, submit)
        until(lambda: self.pool()["succeeded"] - done_before >= count, TIMEOUT, "greenpool's echo jobs")
        return time.perf_counter() - started

    def pile(self, task: str, items: list[dict]) -> tuple[float, list]:
        """Seconds to create one pile of `task` over `items` and read its NDJSON stream to the end; the results."""
        session = requests.Session()  # one of its own: resize() polls on self.session meanwhile
        started = time.perf_counter()
        resp = session.post(self.url + "/v1/piles", json={"task": task, "items": items}, timeout=TIMEOUT)
        assert resp.status_code == 201, resp.text
        results = []
        with session.get(f"{self.url}/v1/piles/{resp.json()['id']}/results", stream=True,
                              timeout=TIMEOUT) as stream:  # fmt: skip
            for line in stream.iter_lines(chunk_size=1 << 16):
                if line:
                    results.append(json.loads(line))
        elapsed = time.perf_counter() - started
        assert len(results) == len(items) and all(r["status"] == "succeeded" for r in results), results[:3]
        return elapsed, [r["result"] for r in results]

    def resize(self, low: int, high: int, jobs: int, seconds: float) -> float:
        """Seconds from PATCH /v1/pool low → high until high jobs run at once (see module docstring)."""
        self.session.patch(self.url + "/v1/pool", json={"size": low}, timeout=10).raise_for_status()
        with ThreadPoolExecutor(1) as pool:
            pile = pool.submit(self.pile, "bench_started", [{"seconds": seconds}] * jobs)
            until(lambda: self.pool()["running"] >= low and self.pool()["queued"] > 0, 30, "greenpool at size low")
            grown_at = time.time()
            self.session.patch(self.url + "/v1/pool", json={"size": high}, timeout=10).raise_for_status()
            starts = pile.result()[1]
        return resize_delay(starts, grown_at, high - low)


# -- Celery -----------------------------------------------------------------------------------------------
class CeleryPeer:
    """A Celery worker (gevent pool) on the benchmark's Redis; the workloads through Celery's client."""

    def __init__(self, args: argparse.Namespace, directory: Path, redis_url: str) -> None:
        os.environ["CELERY_PEER_REDIS"] = redis_url
        sys.path.insert(0, str(BENCH_DIR))
        import celery_peer  # the peer's app, imported only here: greenpool never imports Celery

        self.peer, self.directory, self.proc = celery_peer, directory, None
        self.redis = redis.Redis.from_url(f"{redis_url}/0")
        self.backend = redis.Redis.from_url(f"{redis_url}/2")  # celery_peer's result backend
        self.start(args.concurrency)

    def start(self, concurrency: int) -> None:
        """Start the worker with `concurrency` green threads and wait until it answers a ping."""
        self.stop()
        log = open(self.directory / f"celery-{concurrency}.log", "ab")  # noqa: SIM115 (the worker keeps it)
        cmd = [sys.executable, "-m", "celery", "-A", "celery_peer", "worker", "-P", "gevent", "-c", str(concurrency),
               "--loglevel", "WARNING"]  # Celery's defaults otherwise (--without-heartbeat etc. ran slower here)
        self.proc = subprocess.Popen(cmd, cwd=BENCH_DIR, env={**os.environ}, stdout=log, stderr=log,
                                     start_new_session=True)  # fmt: skip
        until(lambda: self.peer.app.control.ping(timeout=0.5), 60, "the Celery worker to answer a ping", 0.1)

    def stop(self) -> None:
        """Warm shutdown of the worker (SIGTERM), then SIGKILL what is left."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            self.proc = None

    def results(self, ids: list[str]) -> list:
        """The results of the tasks `ids`, once the result backend has every one (MGET every 50 ms; Celery's
        own join_native hangs when the tasks were sent from several threads: its result consumer is not
        thread-safe)."""
        values: dict[str, object] = {}
        pending = list(ids)
        deadline = time.monotonic() + TIMEOUT
        while pending:
            left = []
            for start in range(0, len(pending), 1000):
                chunk = pending[start : start + 1000]
                for task_id, raw in zip(chunk, self.backend.mget([f"celery-task-meta-{i}" for i in chunk]),
                                        strict=True):  # fmt: skip
                    if raw is None:
                        left.append(task_id)
                        continue
                    meta = json.loads(raw)
                    assert meta["status"] == "SUCCESS", meta
                    values[task_id] = meta["result"]
            pending = left
            if pending:
                if time.monotonic() > deadline:
                    sys.exit(f"bench_celery: {len(pending)} Celery tasks not done after {TIMEOUT:g} s")
                time.sleep(0.05)
        return [values[i] for i in ids]

    def per_request(self, count: int, clients: int) -> float:
        """Seconds to send `count` echo tasks one apply_async each from `clients` threads and see them all done."""
        ids: list = [None] * count

        def submit(_client: int, i: int) -> None:
            ids[i] = self.peer.echo.apply_async(kwargs={"i": i}).id

        started = time.perf_counter()
        spread(count, clients, submit)
        self.results(ids)
        return time.perf_counter() - started

    def pile(self, task: str, items: list[dict]) -> tuple[float, list]:
        """Seconds to run `task` over `items` as one group (apply_async, then every result); the results."""
        from celery import group

        signature = getattr(self.peer, task)
        started = time.perf_counter()
        sent = group(signature.s(**item) for item in items).apply_async()
        values = self.results([r.id for r in sent.results])
        return time.perf_counter() - started, values

    def resize(self, low: int, high: int, jobs: int, seconds: float) -> float:
        """Seconds from pool_grow(high - low) on a worker of `low` until `high` tasks run at once."""
        self.start(low)
        self.redis.delete(self.peer.STARTED)
        with ThreadPoolExecutor(1) as pool:
            run = pool.submit(self.pile, "started", [{"seconds": seconds}] * jobs)
            until(lambda: self.redis.llen(self.peer.STARTED) >= low, 30, "Celery at concurrency low")
            grown_at = time.time()
            self.peer.app.control.pool_grow(high - low, reply=True, timeout=5)
            starts = run.result()[1]
        return resize_delay(starts, grown_at, high - low)


# -- the run ----------------------------------------------------------------------------------------------
def run_contender(kind: str, args: argparse.Namespace, directory: Path, redis: RedisProcess) -> dict[str, float]:
    """One fresh contender through the four workloads: {workload: jobs/s or seconds}."""
    redis.client.flushall()
    contender = (Greenpool if kind == GREENPOOL else CeleryPeer)(args, directory, redis.url)
    try:
        echo = [{"i": i} for i in range(args.jobs)]
        contender.pile("echo", echo[: min(1000, args.jobs)])  # warm-up
        out = {"per request": args.jobs / contender.per_request(args.jobs, args.clients),
               "pile": args.jobs / contender.pile("echo", echo)[0],
               "sleep": contender.pile("sleep", [{"seconds": args.sleep}] * args.sleep_jobs)[0],
               "resize": contender.resize(10, 100, 150, args.resize_sleep)}  # fmt: skip
    finally:
        contender.stop()
    print(f"{kind:9} " + "  ".join(f"{w}: {v:,.3f}" for w, v in out.items()), file=sys.stderr, flush=True)
    return out


def table(args: argparse.Namespace, results: dict[str, list[dict[str, float]]]) -> str:
    """The Markdown report: machine, command, medians side by side."""
    med = {kind: {w: statistics.median(r[w] for r in runs) for w in WORKLOADS} for kind, runs in results.items()}
    gp, ce = med[GREENPOOL], med[CELERY]
    ideal = args.sleep_jobs * args.sleep / args.concurrency
    load = os.getloadavg()[0]
    lines = [
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, load {load:.2f} at the end; command: {' '.join(sys.argv)}",
        "",
        f"| workload | greenpool ({args.store}, {args.replicas} replica{'s' * (args.replicas > 1)}) "
        f"| Celery (gevent, -c {args.concurrency}) | greenpool ÷ Celery |",
        "|---|---:|---:|---:|",
        f"| {args.jobs:,} echo jobs, one per request, {args.clients} client threads (jobs/s) | "
        f"{gp['per request']:,.0f} | {ce['per request']:,.0f} | {gp['per request'] / ce['per request']:.2f}× |",
        f"| the same as one pile / group (jobs/s) | {gp['pile']:,.0f} | {ce['pile']:,.0f} | "
        f"{gp['pile'] / ce['pile']:.2f}× |",
        f"| {args.sleep_jobs:,} jobs of {args.sleep:g} s sleep at concurrency {args.concurrency} (wall s, ideal "
        f"{ideal:g}) | {gp['sleep']:.2f} ({gp['sleep'] / ideal - 1:+.0%}) | {ce['sleep']:.2f} "
        f"({ce['sleep'] / ideal - 1:+.0%}) | {ce['sleep'] / gp['sleep']:.2f}× faster |",
        f"| resize 10 → 100 in effect (ms) | {gp['resize'] * 1000:,.1f} | {ce['resize'] * 1000:,.1f} | "
        f"{ce['resize'] / gp['resize']:.1f}× sooner |",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Parse the options, alternate the contenders over the rounds, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("memory", "sqlite", "redis"), default="memory")
    parser.add_argument("--replicas", type=int, default=1, help="greenpool servers (only with --store redis)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--sleep-jobs", type=int, default=2_000)
    parser.add_argument("--sleep", type=float, default=0.1)
    parser.add_argument("--resize-sleep", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of small counts")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "celery.md")
    args = parser.parse_args()
    if args.replicas > 1 and args.store != "redis":
        parser.error("--replicas > 1 needs --store redis (replicas must share their store)")
    if args.quick:
        args.rounds, args.jobs, args.clients, args.sleep_jobs, args.resize_sleep = 1, 300, 4, 200, 1.0
    results: dict[str, list[dict[str, float]]] = {GREENPOOL: [], CELERY: []}
    with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp:
        redis_server = RedisProcess(Path(tmp))
        try:
            for rnd in range(args.rounds):
                for kind in (GREENPOOL, CELERY) if rnd % 2 == 0 else (CELERY, GREENPOOL):
                    directory = Path(tmp) / f"{kind}-{rnd}"
                    directory.mkdir()
                    results[kind].append(run_contender(kind, args, directory, redis_server))
        finally:
            redis_server.stop()
    report = table(args, results)
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
