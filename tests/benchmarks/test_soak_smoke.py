"""Smoke test of benchmarks/soak.py: a --quick run pushes its jobs through and writes the curve; the RSS
verdict's arithmetic is checked on made-up samples (a short run is too noisy to judge memory by)."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "soak.py"


def _load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(60)
def test_quick_soak_streams_every_job_back_and_writes_the_curve(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--results", str(tmp_path), "--max-growth", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=55,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "soak-quick.csv").open()))
    assert len(rows) >= 3, rows
    assert int(rows[-1]["jobs_streamed"]) == 150_000 and int(rows[-1]["succeeded"]) == 150_000, rows[-1]
    assert all(int(r["rss_bytes"]) > 0 for r in rows)
    report = (tmp_path / "soak-quick.md").read_text()
    assert "verdict: **ok" in report and "| t (s) | RSS (MiB) |" in report, report
    assert report in proc.stdout


def test_growth_compares_the_ends_of_the_second_half() -> None:
    soak = _load_soak()

    def samples(rss: list[int]) -> list:
        return [soak.Sample(float(i), r, 0, 0, 0, 0, 0) for i, r in enumerate(rss)]

    flat = samples([40, 130, 140, 140, 141, 139, 140, 141, 140, 140, 142, 141, 140])
    assert abs(soak.growth(flat)[2]) < 0.02
    leak = samples([40, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200])
    start, end, grew = soak.growth(leak)
    assert (start, end) == (160, 190) and grew > 0.18  # medians of the first and last three of the half
    assert soak.growth(samples([100, 120, 150]))[2] == pytest.approx(0.25)  # few samples: first vs last
