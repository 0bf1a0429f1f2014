"""benchmarks/bench_celery.py without running a contender (a real run takes minutes: it is run by hand): the
resize measure, the report's table, the option checks, and the Celery peer app loading with its tasks."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_celery.py"


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_resize_delay_is_the_start_of_the_last_job_the_resize_let_in() -> None:
    """Jobs started before the resize do not count; the delay is until the `added`-th start after it."""
    bench = _load(SCRIPT)
    starts = [9.0, 9.5] + [10.0 + i / 1000 for i in range(5)]
    assert bench.resize_delay(starts, grown_at=10.0, added=3) == pytest.approx(0.002)
    with pytest.raises(SystemExit):
        bench.resize_delay(starts, grown_at=10.0, added=6)


def test_the_table_shows_both_contenders_and_their_ratio() -> None:
    """Medians side by side: jobs/s ratios, the sleep workload against its ideal, the resize in ms."""
    bench = _load(SCRIPT)
    args = argparse.Namespace(store="memory", replicas=1, concurrency=100, jobs=20000, clients=16, sleep_jobs=2000,
                              sleep=0.1)  # fmt: skip
    runs = {"greenpool": [{"per request": 1200.0, "pile": 40000.0, "sleep": 2.04, "resize": 0.004}],
            "celery": [{"per request": 600.0, "pile": 800.0, "sleep": 2.8, "resize": 0.1}]}  # fmt: skip
    text = bench.table(args, runs)
    assert "| 20,000 echo jobs, one per request, 16 client threads (jobs/s) | 1,200 | 600 | 2.00× |" in text
    assert "| the same as one pile / group (jobs/s) | 40,000 | 800 | 50.00× |" in text
    assert "(wall s, ideal 2) | 2.04 (+2%) | 2.80 (+40%)" in text
    assert "| resize 10 → 100 in effect (ms) | 4.0 | 100.0 | 25.0× sooner |" in text


def test_replicas_need_the_redis_store() -> None:
    """More than one greenpool replica needs a store they share."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--replicas", "2", "--store", "sqlite"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2 and "--replicas > 1 needs --store redis" in done.stderr


def test_the_celery_peer_registers_the_tasks_the_workloads_send() -> None:
    """celery_peer.py builds its app on CELERY_PEER_REDIS with echo, sleep and started."""
    pytest.importorskip("celery", reason="celery is not installed (pip install -e '.[bench]')")
    code = ("import celery_peer as p; print(p.app.conf.broker_url, sorted(t for t in p.app.tasks "
            "if not t.startswith('celery.')))")  # fmt: skip
    env = {"CELERY_PEER_REDIS": "redis://127.0.0.1:1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO / "benchmarks", capture_output=True, text=True,
                          timeout=30, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 1) == ["redis://127.0.0.1:1/0", "['echo', 'sleep', 'started']\n"]
