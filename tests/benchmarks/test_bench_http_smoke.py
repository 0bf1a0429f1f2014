"""Smoke test of benchmarks/bench_http.py: a --quick run exits 0 and prints the table (no timing asserted)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from tools import needs

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_http.py"
TABLE_HEADER = "| route | connections | ours req/s | ours p50 | ours p99 | gevent req/s |"

WRK_TEXT = """Running 2s test @ http://127.0.0.1:41234/v1/pool
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.95ms    3.10ms  40.12ms   90.00%
    Req/Sec     4.10k   300.00     4.50k    70.00%
  Latency Distribution
     50%  812.00us
     75%    9.00ms
     90%   12.50ms
     99%    1.20s
  16400 requests in 2.00s, 5.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:   8200.00
Transfer/sec:      2.50MB
"""


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_http", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_parse_wrk_text_report() -> None:
    """wrk's own text report is parsed: req/s, percentiles in seconds, socket errors, non-2xx."""
    result = _load_bench().parse_wrk(WRK_TEXT)
    assert result.rps == 8200.0 and result.requests == 16400
    assert result.p50_s == pytest.approx(812e-6) and result.p99_s == pytest.approx(1.2)
    assert (result.read_errors, result.timeouts, result.non_2xx) == (3, 2, 7)


def test_parse_wrk_json_line_wins() -> None:
    """The WRK_JSON line printed by the Lua hook takes precedence over the rounded text."""
    line = (
        'WRK_JSON {"requests":1000,"duration_us":2000000,"bytes":1,"connect":0,"read":0,"write":0,'
        '"status":0,"timeout":0,"p50_us":150,"p90_us":900,"p99_us":4000,"max_us":9000,"mean_us":200.0}'
    )
    result = _load_bench().parse_wrk(WRK_TEXT + line + "\n")
    assert result.rps == 500.0 and result.p99_s == pytest.approx(0.004) and result.non_2xx == 0


@pytest.mark.timeout(90)
@needs("wrk")  # else bench_http.py would install it with apt-get itself
def test_bench_http_quick_run(tmp_path: Path) -> None:
    """`bench_http.py --quick` runs both servers (ours only without gevent), exits 0 and prints the table."""
    output = tmp_path / "http.md"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--beside-memory", "--output", str(output)]
    if importlib.util.find_spec("gevent") is None:
        cmd += ["--only", "ours"]  # no baseline without the bench extra (pip install -e '.[bench]')
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=80)
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    assert TABLE_HEADER in proc.stdout
    for row in ("| GET /v1/pool | 64 |", "| GET /v1/pool | 512 |", "| POST /v1/jobs | 64 |", "| POST /v1/jobs | 512 |"):
        assert row in proc.stdout
    assert TABLE_HEADER in output.read_text()
    assert "vs ours with the memory store" in proc.stdout and "| POST /v1/jobs | 512 |" in proc.stdout


def test_report_from_synthetic_rounds(tmp_path: Path) -> None:
    """The report renders every row and verdict from made-up rounds (GET has no job counts; POST has), and
    names wrk's version (from a stand-in `wrk -v`: rendering needs no wrk)."""
    fake_wrk = tmp_path / "wrk"
    fake_wrk.write_text("#!/bin/sh\necho 'wrk 4.1.0 [epoll] Copyright (C) 2012 Will Glozer'\n")
    fake_wrk.chmod(0o755)
    bench = _load_bench()
    args = bench.parse_args(["--quick"])
    cases = [bench.Case(route, c) for route in bench.ROUTES for c in (64, 512)]
    for case in cases:
        post = case.route.path == "/v1/jobs"
        for kind, rps in ((bench.OURS, 9000.0), (bench.MEMORY, 10000.0), (bench.GEVENT, 6000.0)):
            result = bench.WrkResult(requests=int(rps), duration_s=1.0, rps=rps, p50_s=0.001, p90_s=0.01,
                                     p99_s=0.02, max_s=0.03)  # fmt: skip
            if post and kind == bench.OURS:
                result.jobs_done_rps, result.backlog = (8900.0, 3) if case.connections == 64 else (100.0, 8000)
            case.results[kind].append(result)
    kinds = [bench.OURS, bench.MEMORY, bench.GEVENT]
    text = bench.report(cases, args, str(fake_wrk), kinds, ("0.1 0.1 0.1", "0.2 0.2 0.2"))
    assert "| GET /v1/pool | 64 | 9,000 | 10,000 | 20.0 ms | 20.0 ms | 0.90× | ≥ 0.8× memory | yes |" in text
    assert TABLE_HEADER in text and ", wrk 4.1.0 [epoll]\n" in text
    assert "| GET /v1/pool | 64 | 9,000 | 1.0 ms | 20.0 ms | 6,000 | 1.0 ms | 20.0 ms | 1.50× |" in text
    assert "| POST /v1/jobs | 64 |" in text and "| yes |" in text
    assert "**NO** (jobs ran at 100/s)" in text


def test_ours_env_reaches_ours_alone(tmp_path: Path) -> None:
    """`--ours-env KEY=VALUE` is in ours' environment and not in `before`'s (the setting measured side by side)."""
    bench = _load_bench()
    args = bench.parse_args(["--quick", "--ours-env", "GREENPOOL_POOLS=default:100,idle:10"])
    bench.OURS_ONLY_ENV.update(item.split("=", 1) for item in args.ours_env)
    _, ours_env, _ = bench.server_command(bench.OURS, 1, "info")
    _, before_env, _ = bench.server_command(bench.BEFORE, 1, "info", before=tmp_path)
    assert ours_env["GREENPOOL_POOLS"] == "default:100,idle:10"
    assert "GREENPOOL_POOLS" not in before_env
    with pytest.raises(SystemExit):
        bench.parse_args(["--ours-env", "GREENPOOL_POOLS"])


def test_beside_sqlite_runs_ours_again_on_the_default_store_with_a_fresh_redis_prefix_each() -> None:
    """`--store redis --beside-sqlite`: the `sqlite` kind clears GREENPOOL_STORE (the default sqlite store) and
    every server of ours gets a key prefix of its own (a fresh keyspace on a shared Redis)."""
    bench = _load_bench()
    args = bench.parse_args(["--quick", "--store", "redis", "--beside-sqlite", "--redis-url", "redis://127.0.0.1:1/0"])
    assert args.store == "redis" and args.beside_sqlite
    _, sqlite_env, _ = bench.server_command(bench.SQLITE, 1, "info")
    _, ours_env, _ = bench.server_command(bench.OURS, 2, "info")
    assert sqlite_env["GREENPOOL_STORE"] == ""
    assert sqlite_env["GREENPOOL_REDIS_PREFIX"] != ours_env["GREENPOOL_REDIS_PREFIX"]
