#!/usr/bin/env python3
"""Load-test one greenpool worker process with wrk, side by side with a minimal falcon app on gevent.

Both servers run under gunicorn with ONE worker process, access log off, on a free 127.0.0.1 port:
  ours      gunicorn -k service.worker.GreenWorker -w 1 service.app:app   (the server's defaults: log level info,
            the SQLite store, in a fresh data directory per server; `--store memory` for the memory store)
  memory    with --beside-memory: ours again with GREENPOOL_STORE=memory (ratios sqlite ÷ memory, target ≥ 0.8×)
  sqlite    with --beside-sqlite (and --store memory or redis): ours again on the default sqlite store
  gevent    gunicorn -k gevent -w 1 baseline_gevent_app:app               (benchmarks/baseline_gevent_app.py)
  before    with --before DIR: ours again, from another checkout (e.g. a `git worktree` of an older commit)
`--ours-env KEY=VALUE` sets more environment for `ours` alone: with `--before` the same checkout, it measures
a setting side by side (e.g. one extra idle pool: `--before . --ours-env GREENPOOL_POOLS=default:100,idle:10`).
Each round starts a fresh server, checks the routes once, warms up, then runs
`wrk -t2 -c{64,512} -d{duration}s --latency` on GET /v1/pool and on POST /v1/jobs (a real `echo` job on
ours; benchmarks/wrk_post_job.lua). Rounds alternate servers (ours, gevent, ours, gevent, ...); the table
shows the medians. Any non-2xx answer or socket error is reported, and a case with non-2xx answers is
invalid. wrk is installed with apt-get if it is missing (Debian package `wrk`).

    .venv/bin/python benchmarks/bench_http.py                 # full run: 3 rounds of 10 s per case
    .venv/bin/python benchmarks/bench_http.py --quick         # smoke run: 1 round of 2 s, no warm-up
    .venv/bin/python benchmarks/bench_http.py --log-level warning # fewer log lines than the default
    .venv/bin/python benchmarks/bench_http.py --before /tmp/old   # + ours at the checkout in /tmp/old
    .venv/bin/python benchmarks/bench_http.py --beside-memory    # + ours with the memory store
    .venv/bin/python benchmarks/bench_http.py --store redis --beside-sqlite --beside-memory   # redis, sqlite, memory
    .venv/bin/python benchmarks/bench_http.py --only ours --profile /tmp/prof   # + py-spy stacks (pip install py-spy)

Ours runs with GREENPOOL_MAX_QUEUED high enough never to answer 429, and bounded GREENPOOL_MAX_RECORDS and
GREENPOOL_RESULT_TTL; after each POST run the report notes how many echo jobs finished while wrk ran and
the backlog left (accepting faster than running shows up there), and the next case waits for it to drain.

Writes the Markdown table to stdout and to benchmarks/results/http.md (or --output), every round to http.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "benchmarks"


def _sibling(name: str) -> Any:
    """A module of benchmarks/ (this script is also loaded by file path, without benchmarks/ on sys.path)."""
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cpu_time = _sibling("cpu_time")
RESULTS_DIR = BENCH_DIR / "results"
OURS, GEVENT, BEFORE, MEMORY, SQLITE = "ours", "gevent", "before", "memory", "sqlite"
KINDS = (OURS, MEMORY, SQLITE, BEFORE, GEVENT)
OURS_KINDS = (OURS, MEMORY, SQLITE, BEFORE)  # greenpool itself, each of them
STORE_OF = {MEMORY: "memory", SQLITE: ""}  # the store of ours' side-by-side kinds ("": the default, sqlite)
WORKER_CLASS = "service.worker.GreenWorker"
OURS_APP = "service.app:app"
POST_BODY = {"task": "echo", "args": {"x": 1}}
#: The gevent baseline as measured on 2026-11-24 (from the issue), 64 connections: (req/s, p99 seconds).
REFERENCE_BASELINE = {("GET /v1/pool", 64): (6600.0, 0.9), ("POST /v1/jobs", 64): (5900.0, 1.6)}
#: Our server's settings: a sensible pool, a queue that never answers 429, bounded job records.
OURS_ENV = {
    "GREENPOOL_POOL_SIZE": "100",
    "GREENPOOL_MAX_QUEUED": "10000000",
    "GREENPOOL_MAX_RECORDS": "10000",
    "GREENPOOL_RESULT_TTL": "60",
}
#: `--ours-env`: environment for `ours` alone, on top of OURS_ENV.
OURS_ONLY_ENV: dict[str, str] = {}
#: gunicorn settings both servers share (access log stays off: no --access-logfile, no logconfig).
COMMON_GUNICORN = ["-w", "1", "--keep-alive", "5", "--worker-connections", "10000", "--graceful-timeout", "5",
                   "--timeout", "60", "--backlog", "2048", "--no-control-socket"]  # fmt: skip
#: A change must keep at least this share of the throughput of the checkout given with --before.
MIN_VS_BEFORE = 0.95
#: With --beside-memory: the SQLite store must keep at least this share of the memory store's throughput.
MIN_SQLITE_VS_MEMORY = 0.8
#: POST /v1/jobs must also run its jobs: at least this share of the accepted rate must finish during the run.
KEEP_UP = 0.9
BOOT_TIMEOUT = 30.0
WRK_TIMEOUT = "10s"


@dataclass(frozen=True)
class Route:
    """One benchmarked request: its label, path, wrk Lua script and targets against the baseline."""

    label: str
    path: str
    script: str
    min_ratio: float
    max_p99_s: float | None = None

    def target(self) -> str:
        """The target as text, e.g. "≥ 1.2× gevent, p99 ≤ 50 ms"."""
        text = f"≥ {self.min_ratio:g}× gevent"
        if self.max_p99_s is not None:
            text += f", p99 ≤ {self.max_p99_s * 1000:g} ms"
        return text


ROUTES = (
    Route("GET /v1/pool", "/v1/pool", "wrk_report.lua", min_ratio=2.0, max_p99_s=0.050),
    Route("POST /v1/jobs", "/v1/jobs", "wrk_post_job.lua", min_ratio=1.2),
)


@dataclass
class WrkResult:
    """One wrk run: throughput, latency percentiles (seconds) and error counts."""

    requests: int
    duration_s: float
    rps: float
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float
    non_2xx: int = 0
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    jobs_done_rps: float | None = None  # ours, POST: echo jobs that finished per second while wrk ran
    backlog: int | None = None  # ours, POST: jobs queued or running when wrk stopped
    notes: list[str] = field(default_factory=list)
    cpu_us: tuple[float, float] | None = None  # the worker's CPU µs per request: whole process, main thread

    @property
    def socket_errors(self) -> int:
        """All socket-level errors wrk counted (connect, read, write, timeout)."""
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts


# -- wrk ------------------------------------------------------------------------------------------------
def ensure_wrk() -> str:
    """The path of wrk, installing the Debian package (apt-get, as root) if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        sys.exit(
            "bench_http: wrk is not installed and apt-get is not available; install wrk (https://github.com/wg/wrk)"
        )
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        sys.exit("bench_http: wrk is not installed; run `apt-get install -y wrk` as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("bench_http: installing wrk with apt-get ...", file=sys.stderr)
    install = [*sudo, apt, "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run([*sudo, apt, "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=False)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=False)
    found = shutil.which("wrk")
    if not found:
        sys.exit("bench_http: could not install wrk; run `apt-get update && apt-get install -y wrk` as root")
    return found


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> float:
    """wrk's rounded duration text ("812.00us", "1.20ms", "2.01s", "1.00m") in seconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Parse wrk's output: the WRK_JSON line from our Lua hook if present, else wrk's own text report."""
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            d = json.loads(line[len("WRK_JSON ") :])
            duration = d["duration_us"] / 1e6
            return WrkResult(
                requests=d["requests"], duration_s=duration, rps=d["requests"] / duration if duration else 0.0,
                p50_s=d["p50_us"] / 1e6, p90_s=d["p90_us"] / 1e6, p99_s=d["p99_us"] / 1e6,
                max_s=d["max_us"] / 1e6, non_2xx=d["status"], connect_errors=d["connect"],
                read_errors=d["read"], write_errors=d["write"], timeouts=d["timeout"],
            )  # fmt: skip
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in ([\d.]+\w+),", output)
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", output, re.MULTILINE))
    lat = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", output)
    if not (rps and total and {"50", "90", "99"} <= pct.keys()):
        raise ValueError(f"cannot parse wrk output:\n{output}")
    result = WrkResult(
        requests=int(total.group(1)), duration_s=_seconds(total.group(2)), rps=float(rps.group(1)),
        p50_s=_seconds(pct["50"]), p90_s=_seconds(pct["90"]), p99_s=_seconds(pct["99"]),
        max_s=_seconds(lat.group(1)) if lat else float("nan"),
    )  # fmt: skip
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sock:
        result.connect_errors, result.read_errors, result.write_errors, result.timeouts = map(int, sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        result.non_2xx = int(non2xx.group(1))
    return result


def run_wrk(wrk: str, url: str, route: Route, connections: int, duration: int) -> WrkResult:
    """Run wrk once against `url` with `connections` connections for `duration` seconds."""
    cmd = [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", WRK_TIMEOUT,
           "-s", str(BENCH_DIR / route.script), url]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return parse_wrk(proc.stdout)


# -- servers --------------------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(kind: str, port: int, log_level: str, ours_app: str = OURS_APP,
                   before: Path | None = None) -> tuple[list[str], dict[str, str], Path]:  # fmt: skip
    """The gunicorn command line, extra environment and working directory for server `kind` on `port`."""
    base = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--log-level", log_level,
            *COMMON_GUNICORN]  # fmt: skip
    if kind in OURS_KINDS:
        tree = before if kind == BEFORE else REPO
        assert tree is not None, "--before names the other checkout"
        env = {**OURS_ENV, "GREENPOOL_LOG_LEVEL": log_level, "GREENPOOL_BIND": f"127.0.0.1:{port}",
               "PYTHONPATH": str(tree), "GREENPOOL_REDIS_PREFIX": f"bench{port}",  # a fresh Redis keyspace
               **({"GREENPOOL_STORE": STORE_OF[kind]} if kind in STORE_OF else {}),
               **(OURS_ONLY_ENV if kind == OURS else {})}  # fmt: skip
        return [*base, "-k", WORKER_CLASS, "--chdir", str(tree), ours_app], env, tree
    return [*base, "-k", "gevent", "--chdir", str(BENCH_DIR), "baseline_gevent_app:app"], {}, REPO


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A redis-server on a free 127.0.0.1 port for the run (AOF fsynced every second); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("--store redis needs redis-server (Debian package redis-server) or --redis-url")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
                             "--appendonly", "yes", "--appendfsync", "everysec"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:  # bounded: until it accepts a connection or the deadline passes
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def http_request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict, Any]:
    """One request on 127.0.0.1:`port`: (status, headers, decoded JSON body or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, decoded
    finally:
        conn.close()


@dataclass
class Server:
    """A running gunicorn master (one worker) and its log file."""

    kind: str
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>."""
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 30) -> str:
        """The last `n` lines gunicorn and the app logged."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def worker_pid(self) -> int | None:
        """The pid of the (single) worker process, if it is up."""
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None


@contextmanager
def running_server(kind: str, log_level: str, log_dir: Path, ours_app: str = OURS_APP,
                   before: Path | None = None) -> Iterator[Server]:  # fmt: skip
    """Start server `kind`, wait until GET /v1/pool answers 200, and stop it (SIGTERM, then SIGKILL) after."""
    port = free_port()
    cmd, extra_env, cwd = server_command(kind, port, log_level, ours_app, before)
    log_path = log_dir / f"{kind}-{port}.log"
    # each server's default store (sqlite) in a data directory of its own, inside the run's temporary one
    env = {**os.environ, "GREENPOOL_DATA_DIR": str(log_dir / f"{kind}-{port}-data"), **extra_env,
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    server = Server(kind, proc, port, log_path)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} server exited with code {proc.returncode}:\n{server.log_tail()}")
            try:
                if http_request(port, "GET", "/v1/pool")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not answer GET /v1/pool in {BOOT_TIMEOUT:g} s:\n"
                                   f"{server.log_tail()}")  # fmt: skip
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def check_routes(server: Server) -> None:
    """Fail unless both routes answer as the benchmark assumes (and, on ours, an echo job succeeds)."""
    status, _, pool = http_request(server.port, "GET", "/v1/pool")
    if status != 200 or not isinstance(pool, dict) or "submitted" not in pool:
        raise RuntimeError(f"{server.kind}: GET /v1/pool answered {status} {pool!r}")
    status, headers, job = http_request(server.port, "POST", "/v1/jobs", POST_BODY)
    if status != 202 or "location" not in headers or not isinstance(job, dict):
        raise RuntimeError(f"{server.kind}: POST /v1/jobs answered {status} {headers} {job!r}")
    if server.kind in (OURS, MEMORY, SQLITE):
        deadline = time.monotonic() + 5
        while job.get("status") != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.05)
            job = http_request(server.port, "GET", headers["location"])[2] or {}
        if job.get("status") != "succeeded" or job.get("result") != POST_BODY["args"]:
            raise RuntimeError(f"ours: the echo job did not succeed with its args as result: {job!r}")


def wait_idle(server: Server, timeout: float = 60.0) -> None:
    """On ours: wait until no job is queued or running (so one case's backlog never leaks into the next)."""
    if server.kind not in OURS_KINDS:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pool = http_request(server.port, "GET", "/v1/pool")[2] or {}
        if not pool.get("queued", 0) + pool.get("running", 0):
            return
        time.sleep(0.1)


def job_progress(server: Server, before: dict, result: WrkResult, settle_s: float = 60.0) -> None:
    """After a POST run on ours: note jobs submitted, finished while wrk ran, backlog; wait for it to drain."""
    after = http_request(server.port, "GET", "/v1/pool")[2] or {}
    backlog = after.get("queued", 0) + after.get("running", 0)
    submitted = after.get("submitted", 0) - before.get("submitted", 0)
    done_during = after.get("succeeded", 0) - before.get("succeeded", 0)
    result.jobs_done_rps = done_during / result.duration_s if result.duration_s else 0.0
    result.backlog = backlog
    started = time.monotonic()
    while after.get("queued", 0) + after.get("running", 0) and time.monotonic() < started + settle_s:
        time.sleep(0.1)
        after = http_request(server.port, "GET", "/v1/pool")[2] or {}
    drained_s = time.monotonic() - started
    succeeded = after.get("succeeded", 0) - before.get("succeeded", 0)
    other = sum(after.get(k, 0) - before.get(k, 0) for k in ("failed", "cancelled", "timed_out"))
    left = after.get("queued", 0) + after.get("running", 0)
    result.notes.append(
        f"{submitted} echo jobs submitted, {done_during} finished while wrk ran ({result.jobs_done_rps:,.0f}/s), "
        f"backlog {backlog} when it stopped, drained in {drained_s:.1f} s; {succeeded} succeeded"
        + (f", {other} NOT succeeded" if other else "")
        + (f", {left} still queued/running after {settle_s:g} s" if left else "")
    )


# -- the run --------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One (route, connections) pair and every round's result for each server."""

    route: Route
    connections: int
    results: dict[str, list[WrkResult]] = field(default_factory=lambda: {kind: [] for kind in KINDS})

    def median(self, kind: str, attr: str) -> float | None:
        """The median of `attr` over this server's rounds (None if it did not run)."""
        values = [v for r in self.results[kind] if (v := getattr(r, attr)) is not None]
        return statistics.median(values) if values else None

    def invalid(self, kind: str) -> bool:
        """True if any round of this server got non-2xx answers."""
        return any(r.non_2xx for r in self.results[kind])


def run_benchmark(args: argparse.Namespace, wrk: str, kinds: list[str], log_dir: Path) -> list[Case]:
    """Run every round: servers alternate, each one fresh per round, all cases on each."""
    cases = [Case(route, c) for route in ROUTES if route.label.split()[0].lower() in args.routes
             for c in args.connections]  # fmt: skip
    for rnd in range(1, args.rounds + 1):
        for kind in kinds:
            with running_server(kind, args.log_level, log_dir, args.ours_app, args.before) as server:
                check_routes(server)
                for case in cases:
                    url = server.base_url + case.route.path
                    if args.warmup:
                        run_wrk(wrk, url, case.route, case.connections, args.warmup)
                    wait_idle(server)
                    before = http_request(server.port, "GET", "/v1/pool")[2] or {}
                    pid = server.worker_pid()
                    cpu_before = cpu_time.sample(pid)
                    result = run_wrk(wrk, url, case.route, case.connections, args.duration)
                    result.cpu_us = cpu_time.per_request(pid, cpu_before, cpu_time.sample(pid), result.requests)
                    if kind in OURS_KINDS and case.route.path == "/v1/jobs":
                        job_progress(server, before, result)
                    case.results[kind].append(result)
                    if args.profile and kind == OURS and rnd == 1:
                        profile_case(wrk, server, case, args.duration, args.profile)
                        wait_idle(server)
                    print(f"round {rnd} {kind:6} {case.route.label:14} c={case.connections:<4} "
                          f"{result.rps:9.0f} req/s  p50 {fmt_s(result.p50_s):>8}  p99 {fmt_s(result.p99_s):>8}"
                          f"  non-2xx {result.non_2xx}  socket errors {result.socket_errors}{fmt_cpu(result)}"
                          + "".join(f"  [{n}]" for n in result.notes), file=sys.stderr, flush=True)  # fmt: skip
    return cases


def profile_case(wrk: str, server: Server, case: Case, duration: int, out_dir: Path) -> None:
    """An extra, untimed wrk run of `case` while py-spy samples our worker; writes collapsed stacks to `out_dir`."""
    pid = server.worker_pid()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if pid is None or not Path(py_spy).exists():
        print("bench_http: cannot profile (no worker pid, or py-spy missing: pip install py-spy)", file=sys.stderr)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"ours-{case.route.label.split()[0].lower()}-c{case.connections}.txt"
    cmd = [py_spy, "record", "--pid", str(pid), "--duration", str(duration), "--rate", "250", "--nonblocking",
           "--format", "raw", "--output", str(out)]  # fmt: skip
    sampler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = run_wrk(wrk, server.base_url + case.route.path, case.route, case.connections, duration)
    sampler.wait(duration + 30)
    print(f"bench_http: profiled {case.route.label} c={case.connections} ({result.rps:.0f} req/s while sampled): {out}",
          file=sys.stderr)  # fmt: skip


def fmt_s(seconds: float | None) -> str:
    """Latency for the table: µs below 1 ms, ms below 1 s, else s."""
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_cpu(result: WrkResult) -> str:
    """The worker's CPU per request for a round line ("" if not measured)."""
    if result.cpu_us is None:
        return ""
    return f"  CPU {result.cpu_us[0]:.0f} µs/req (main thread {result.cpu_us[1]:.0f})"


def fmt_rps(rps: float | None) -> str:
    """Requests per second for the table."""
    return "—" if rps is None else f"{rps:,.0f}"


def verdict(case: Case) -> tuple[str, str]:
    """(ratio text, met? text) for one case."""
    ours, base = case.median(OURS, "rps"), case.median(GEVENT, "rps")
    if case.invalid(OURS) or case.invalid(GEVENT):
        return ("—" if not (ours and base) else f"{ours / base:.2f}×"), "**invalid** (non-2xx)"
    if ours is None or not base:
        return "—", "n/a"
    ratio = ours / base
    met = ratio >= case.route.min_ratio
    p99 = case.median(OURS, "p99_s")
    if case.route.max_p99_s is not None and p99 is not None:
        met = met and p99 <= case.route.max_p99_s
    ran = case.median(OURS, "jobs_done_rps")
    if ran is not None and ran < KEEP_UP * ours:  # accepted, but not run: the backlog grew during the run
        return f"{ratio:.2f}×", f"**NO** (jobs ran at {ran:,.0f}/s)"
    return f"{ratio:.2f}×", "yes" if met else "**NO**"


def machine_info(wrk: str) -> str:
    """One line: cores, CPU model, Python, library and wrk versions."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for dist in ("gunicorn", "gunicorn_h1c", "falcon", "gevent", "greenlet"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    wrk_v = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.splitlines()
    wrk_text = wrk_v[0].split(" Copyright")[0] if wrk_v else "wrk (unknown version)"
    return (f"nproc {os.cpu_count()}, {cpu}, Python {platform.python_version()} ({platform.python_implementation()}), "
            f"{', '.join(versions)}, {wrk_text}")  # fmt: skip


def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. "0.18 0.15 0.06"."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def command_line() -> str:
    """The command that ran this benchmark, with the interpreter relative to the repository if it is inside."""
    exe = Path(sys.executable)
    shown = os.path.relpath(exe, REPO) if exe.is_relative_to(REPO) else str(exe)
    script = Path(sys.argv[0]).resolve()
    script_shown = os.path.relpath(script, REPO) if script.is_relative_to(REPO) else sys.argv[0]
    return shlex.join([shown, script_shown, *sys.argv[1:]])


def git_revision(tree: Path = REPO) -> str:
    """The short commit of `tree`, with "+ uncommitted changes" if it is dirty."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=tree,
                               capture_output=True, text=True)  # fmt: skip
        return rev.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def versus(cases: list[Case], other: str, min_ratio: float) -> list[str]:
    """The Markdown table of ours against `other` (another greenpool), case by case, with its target."""
    lines = [f"| route | connections | ours req/s | {other} req/s | ours p99 | {other} p99 | ratio | target | met? |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|"]  # fmt: skip
    for case in cases:
        ours, theirs = case.median(OURS, "rps"), case.median(other, "rps")
        ratio = ours / theirs if ours and theirs else None
        met = "n/a" if ratio is None else ("yes" if ratio >= min_ratio else "**NO**")
        lines.append(f"| {case.route.label} | {case.connections} | {fmt_rps(ours)} | {fmt_rps(theirs)} "
                     f"| {fmt_s(case.median(OURS, 'p99_s'))} | {fmt_s(case.median(other, 'p99_s'))} "
                     f"| {'—' if ratio is None else f'{ratio:.2f}×'} | ≥ {min_ratio:g}× {other} | {met} |")  # fmt: skip
    return lines


def report(cases: list[Case], args: argparse.Namespace, wrk: str, kinds: list[str], load: tuple[str, str]) -> str:
    """The Markdown report: context, the table, the errors, and every round."""
    lines = [
        f"## greenpool HTTP vs gunicorn+gevent baseline ({'quick' if args.quick else 'full'} run)",
        "",
        f"- Machine: {machine_info(wrk)}",
        f"- greenpool: {git_revision()}",
        f"- Command: `{command_line()}`",
        f"- Run: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {args.rounds} alternating round(s) "
        f"({', '.join(kinds)}), {args.duration} s per case after a {args.warmup} s warm-up, "
        f"`wrk -t2 -c<connections> -d{args.duration}s --latency --timeout {WRK_TIMEOUT}`; medians shown. "
        f"Load average before/after: {load[0]} / {load[1]} (shared machine: numbers are noisy).",
        f"- ours: `gunicorn -k {WORKER_CLASS} -w 1 service.app:app`, log level {args.log_level}, "
        + ", ".join(f"{k}={v}" for k, v in OURS_ENV.items())
        + ("" if "GREENPOOL_STORE" in OURS_ENV else ", the default store (sqlite, a fresh file per server)")
        + "".join(f"; ours alone: {k}={v}" for k, v in OURS_ONLY_ENV.items())
        + "; gevent: `gunicorn -k gevent -w 1 baseline_gevent_app:app` (benchmarks/baseline_gevent_app.py, no "
        "real work). Both: " + " ".join(COMMON_GUNICORN) + ", no access log.",
        "",
        "| route | connections | ours req/s | ours p50 | ours p99 | gevent req/s | gevent p50 | gevent p99 "
        "| ratio | target | met? |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for case in cases:
        ratio, met = verdict(case)
        lines.append(
            f"| {case.route.label} | {case.connections} | {fmt_rps(case.median(OURS, 'rps'))} "
            f"| {fmt_s(case.median(OURS, 'p50_s'))} | {fmt_s(case.median(OURS, 'p99_s'))} "
            f"| {fmt_rps(case.median(GEVENT, 'rps'))} | {fmt_s(case.median(GEVENT, 'p50_s'))} "
            f"| {fmt_s(case.median(GEVENT, 'p99_s'))} | {ratio} | {case.route.target()} | {met} |"
        )
    lines += ["", "ratio = ours req/s ÷ gevent req/s (medians). Reference gevent baseline from the issue "
              "(2026-11-24, 64 connections): " + "; ".join(f"{label} {rps / 1000:.1f}k req/s, p99 {p99:g} s"
                                                          for (label, _), (rps, p99) in REFERENCE_BASELINE.items())
              + "."]  # fmt: skip
    cpu_rows = [(c.route.label, c.connections, {k: [r.cpu_us for r in c.results[k] if r.cpu_us] for k in kinds})
                for c in cases]  # fmt: skip
    if any(v for _, _, by_kind in cpu_rows for v in by_kind.values()):
        lines += ["", "The worker process's CPU per request while wrk ran (µs, medians; in brackets its main thread, "
                  "the hub; the rest is the store's writer and job threads): less disturbed by a shared machine "
                  "than req/s.", "", *cpu_time.table(cpu_rows, kinds)]
    if MEMORY in kinds:
        lines += ["", f"ours (GREENPOOL_STORE={OURS_ENV.get('GREENPOOL_STORE', 'sqlite, the default')}) vs ours with"
                  " the memory store (`--beside-memory`):", "", *versus(cases, MEMORY, MIN_SQLITE_VS_MEMORY)]
    if SQLITE in kinds:
        lines += ["", f"ours (GREENPOOL_STORE={OURS_ENV.get('GREENPOOL_STORE')}) vs ours with the default sqlite "
                  "store (`--beside-sqlite`):", "", *versus(cases, SQLITE, MIN_SQLITE_VS_MEMORY)]
    if BEFORE in kinds:
        lines += ["", f"ours vs before (`--before {args.before}`, at {git_revision(args.before)}):", "",
                  *versus(cases, BEFORE, MIN_VS_BEFORE)]
    post = [c for c in cases if c.route.path == "/v1/jobs" and c.results[OURS]]
    if post:
        lines.append(
            "ours POST /v1/jobs runs each accepted echo job; finished while wrk ran (median): "
            + "; ".join(
                f"c={c.connections}: {c.median(OURS, 'jobs_done_rps'):,.0f} jobs/s, "
                f"backlog {c.median(OURS, 'backlog'):,.0f} when wrk stopped"
                for c in post
            )
            + f" (a growing backlog means jobs are accepted faster than they run; the POST target also needs"
            f" ≥ {KEEP_UP:.0%} of the accepted rate to finish while wrk runs)."
        )
    problems = []
    for case in cases:
        for kind in kinds:
            rs = case.results[kind]
            non2xx, sock = sum(r.non_2xx for r in rs), sum(r.socket_errors for r in rs)
            if non2xx or sock:
                problems.append(f"- {kind} {case.route.label} c={case.connections}: {non2xx} non-2xx answers, "
                                f"{sock} socket errors (connect/read/write/timeout "
                                f"{sum(r.connect_errors for r in rs)}/{sum(r.read_errors for r in rs)}/"
                                f"{sum(r.write_errors for r in rs)}/{sum(r.timeouts for r in rs)})")  # fmt: skip
    lines += ["", "Errors: none (no non-2xx answers, no socket errors)." if not problems else "Errors:", *problems]
    lines += ["", "<details><summary>Every round</summary>", ""]
    for case in cases:
        for kind in kinds:
            for i, r in enumerate(case.results[kind], 1):
                notes = "".join(f"; {n}" for n in r.notes)
                lines.append(f"- {case.route.label} c={case.connections} {kind} round {i}: {r.rps:,.0f} req/s "
                             f"({r.requests} in {r.duration_s:.2f} s), p50 {fmt_s(r.p50_s)}, p90 {fmt_s(r.p90_s)}, "
                             f"p99 {fmt_s(r.p99_s)}, max {fmt_s(r.max_s)}, non-2xx {r.non_2xx}, "
                             f"socket errors {r.socket_errors}{fmt_cpu(r).replace('  ', ', ')}{notes}")  # fmt: skip
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; --quick changes the defaults of --rounds, --duration and --warmup."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, help="alternating rounds per server (default 3; --quick: 1)")
    p.add_argument("--duration", type=int, help="seconds of wrk per case (default 10; --quick: 2)")
    p.add_argument("--warmup", type=int, help="seconds of untimed wrk before each case (default 2; --quick: 0)")
    p.add_argument("--connections", default="64,512", help="comma-separated connection counts (default 64,512)")
    p.add_argument("--routes", default="get,post", help="which routes: get, post or get,post (default both)")
    p.add_argument("--only", choices=(OURS, GEVENT), help="run one server only (no ratios)")
    p.add_argument("--pool-size", type=int, default=100, help="our GREENPOOL_POOL_SIZE (default 100)")
    p.add_argument("--log-level", default="info", help="log level of the servers (default info, the server's own)")
    p.add_argument("--ours-app", default=OURS_APP, help="WSGI app our worker serves (default service.app:app)")
    p.add_argument("--before", type=Path, metavar="DIR", help="also run ours from checkout DIR; ratios vs it")
    p.add_argument("--ours-env", action="append", default=[], metavar="KEY=VALUE",
                   help="more environment for ours alone (not before/memory/sqlite); repeatable")
    p.add_argument("--store", choices=("sqlite", "memory", "redis"), default="sqlite",
                   help="ours' store (default sqlite, the server's default: a fresh file per server; redis: a"
                        " redis-server started for the run unless --redis-url, a fresh key prefix per server)")
    p.add_argument("--redis-url", help="with --store redis: the Redis to use (default: start one, AOF everysec)")
    p.add_argument("--beside-sqlite", action="store_true",
                   help="also run ours with the default sqlite store (with --store memory or redis)")
    p.add_argument("--beside-memory", action="store_true",
                   help="also run ours with the memory store; ratios ours ÷ memory (target ≥ 0.8×)")
    p.add_argument(
        "--profile", type=Path, metavar="DIR", help="after ours' round-1 cases: an extra untimed run sampled by py-spy"
    )
    p.add_argument("--quick", action="store_true", help="short smoke run: 1 round, 2 s per case, no warm-up")
    p.add_argument("--output", type=Path, help="Markdown file to write (default benchmarks/results/http.md)")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 2)
    args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    args.routes = {r.strip().lower() for r in args.routes.split(",") if r.strip()}
    if args.output is None:
        args.output = RESULTS_DIR / ("http-quick.md" if args.quick else "http.md")
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0 or not args.connections:
        p.error("--rounds and --duration must be >= 1, --warmup >= 0, and some --connections given")
    if any("=" not in item for item in args.ours_env):
        p.error("--ours-env takes KEY=VALUE")
    if not args.routes <= {"get", "post"} or not args.routes:
        p.error("--routes takes get, post or get,post")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the report; 2 if a server or wrk could not run."""
    args = parse_args(argv)
    wrk = ensure_wrk()
    OURS_ENV["GREENPOOL_POOL_SIZE"] = str(args.pool_size)
    if args.store == "memory":
        OURS_ENV["GREENPOOL_STORE"] = "memory"
    OURS_ONLY_ENV.update(item.split("=", 1) for item in args.ours_env)
    kinds = [args.only] if args.only else [OURS, GEVENT]
    if args.beside_sqlite and args.store != "sqlite" and args.only != GEVENT:
        kinds.insert(1, SQLITE)
    if args.beside_memory and args.only != GEVENT:
        kinds.insert(1, MEMORY)
    if args.before is not None:
        if not (args.before / "service").is_dir():
            sys.exit(f"bench_http: --before {args.before} is not a greenpool checkout (no service/ in it)")
        kinds.insert(1, BEFORE)
    if GEVENT in kinds and importlib.util.find_spec("gevent") is None:
        if args.only == GEVENT:
            sys.exit("bench_http: gevent is not installed (pip install -e '.[bench]')")
        print("bench_http: gevent is not installed (pip install -e '.[bench]'): running ours only",
              file=sys.stderr)  # fmt: skip
        kinds.remove(GEVENT)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench_http-") as tmp, ExitStack() as stack:
        try:
            if args.store == "redis":
                OURS_ENV["GREENPOOL_STORE"] = args.redis_url or stack.enter_context(redis_server(Path(tmp)))
            cases = run_benchmark(args, wrk, kinds, Path(tmp))
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"bench_http: {exc}", file=sys.stderr)
            return 2
    load_after = load_average()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    raw = [
        {"route": c.route.label, "connections": c.connections,
         "results": {k: [dataclasses.asdict(r) for r in rs] for k, rs in c.results.items()}}
        for c in cases
    ]  # fmt: skip
    args.output.with_suffix(".json").write_text(json.dumps(raw, indent=1))  # every round, even if the report fails
    text = report(cases, args, wrk, kinds, (load_before, load_after))
    print(text)
    args.output.write_text(text)
    print(f"bench_http: wrote {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
