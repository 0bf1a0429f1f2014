"""Smoke test of benchmarks/bench_pool_core.py: it runs (--quick --reps 1) and prints its table; no timing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_pool_core.py"
PEERS = ("eventlet", "gevent")
HEADER = "| benchmark | pool_core | eventlet | gevent | ×eventlet | ×gevent | target | met? |"

pytestmark = pytest.mark.timeout(120)


def _importable(name: str) -> bool:
    """Whether `name` could be imported (found without importing it into the test process)."""
    return importlib.util.find_spec(name) is not None


AVAILABLE_PEERS = [peer for peer in PEERS if _importable(peer)]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the benchmark once, quickly, for pool_core plus whichever peers are installed."""
    output = tmp_path_factory.mktemp("bench") / "pool_core.md"
    only = ",".join(["pool_core", *AVAILABLE_PEERS])
    cmd = [sys.executable, str(SCRIPT), "--quick", "--reps", "1", "--only", only, "--output", str(output)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=110)
    return proc, output


def _rows(stdout: str) -> list[list[str]]:
    """The data rows of the Markdown table in `stdout`, split into cells."""
    lines = stdout.splitlines()
    start = lines.index(HEADER) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_script_exits_zero_and_prints_table(smoke_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """The script succeeds, prints a row per benchmark with a pool_core value, and writes the report."""
    proc, output = smoke_run
    assert proc.returncode == 0, proc.stderr
    assert HEADER in proc.stdout
    rows = _rows(proc.stdout)
    assert len(rows) == 6, proc.stdout
    assert all(row[1] not in ("", "—") for row in rows), proc.stdout
    assert "Machine: nproc" in proc.stdout and "Command: `" in proc.stdout
    assert output.read_text().strip() == proc.stdout.strip()


@pytest.mark.parametrize("peer", PEERS)
def test_peer_measured(peer: str, smoke_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """Each installed peer gets a value in its column (peers that are not installed are skipped)."""
    if peer not in AVAILABLE_PEERS:
        pytest.skip(f"{peer} is not importable, so it is not benchmarked: pip install -e '.[bench]'")
    proc, _ = smoke_run
    assert proc.returncode == 0, proc.stderr
    column = 1 + ("pool_core", *PEERS).index(peer)
    assert all(row[column] not in ("", "—") for row in _rows(proc.stdout)), proc.stdout


def test_unknown_only_name_is_rejected() -> None:
    """A typo in --only fails fast with a message listing the valid names."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--only", "nosuchlib"], capture_output=True, text=True,
                          cwd=REPO, timeout=30)
    assert proc.returncode != 0
    assert "pool_core" in proc.stderr
