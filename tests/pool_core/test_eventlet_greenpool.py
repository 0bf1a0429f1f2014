"""eventlet's own `tests/greenpool_test.py`, run against pool_core through a stand-in `eventlet` package.

The file comes from eventlet's source distribution on PyPI (the version pyproject's bench extra pins),
downloaded at test time into pytest's cache; the test skips when it cannot be downloaded. eventlet's code is
neither committed nor imported: `eventlet_shim/` holds an `eventlet` package made of pool_core, the part of
eventlet's `tests` helper package the file imports, and the plugin that skips EXCLUDED. The file runs with
pytest in a subprocess; every test of it must pass except those in EXCLUDED, each with its reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIM = Path(__file__).with_name("eventlet_shim")
TEST_FILE = "greenpool_test.py"
pytestmark = pytest.mark.timeout(600)  # the download (once) and eventlet's stress tests

SPAWN_ORDER = "assumes a GreenPile yields in spawn order; ours yields in completion order (the reference page)"
POOLS = "built on eventlet.pools (resource pools), which are not part of pool_core"
EXCLUDED = {
    "GreenPool::test_timer_cancel": "needs eventlet's greenlet-local timers (hub.schedule_call_local)",
    "GreenPool::test_pool_smash": POOLS,
    "Stress::test_with_intpool": POOLS,
    "GreenPile::test_pile": SPAWN_ORDER,
    "GreenPile::test_pile_spawn_times_out": SPAWN_ORDER,
    "GreenPile::test_constructing_from_pool": SPAWN_ORDER,
    "Stress::test_ordering_5": SPAWN_ORDER,
    "Stress::test_ordering_50": SPAWN_ORDER,
}


def _eventlet_version() -> str:
    """The eventlet version pyproject's bench extra pins."""
    bench = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["bench"]
    return next(req.split("==", 1)[1] for req in bench if req.startswith("eventlet=="))


@pytest.fixture(scope="module")
def greenpool_test(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """eventlet's greenpool_test.py: from the cache, else extracted from a freshly downloaded sdist."""
    version = _eventlet_version()
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    folder = cache.mkdir(f"eventlet-{version}") if cache else tmp_path_factory.mktemp(f"eventlet-{version}")
    cached = folder / TEST_FILE
    if cached.exists():
        return cached
    download = tmp_path_factory.mktemp("eventlet-sdist")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--no-binary", ":all:", f"eventlet=={version}", "-d", str(download)]
    try:
        pip = subprocess.run(command, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.skip(f"eventlet sdist {version} could not be downloaded from PyPI: pip took over 180 s")
    sdists = list(download.glob(f"eventlet-{version}.tar.gz"))
    if pip.returncode or not sdists:
        reason = (pip.stderr.strip().splitlines() or ["no sdist"])[-1]
        pytest.skip(f"eventlet sdist {version} could not be downloaded from PyPI: {reason}")
    with tarfile.open(sdists[0]) as sdist:
        source = sdist.extractfile(f"eventlet-{version}/tests/{TEST_FILE}")
        partial = folder / f"{TEST_FILE}.partial"
        partial.write_bytes(source.read())
    partial.replace(cached)  # atomic: a concurrent or interrupted run never sees half a file
    return cached


@pytest.fixture(scope="module")
def outcomes(greenpool_test: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Run the file against the shim in a subprocess; each test's outcome by "Class::test" (or "test")."""
    run = tmp_path_factory.mktemp("eventlet-run")
    shutil.copy(greenpool_test, run / TEST_FILE)
    (run / "pytest.ini").write_text("[pytest]\ntimeout = 120\n")  # its own rootdir: none of our settings
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SHIM), str(REPO)]),  # the shim's `eventlet`, this checkout's pool_core
        "GREENPOOL_EVENTLET_EXCLUDED": json.dumps(EXCLUDED),
    }
    command = [sys.executable, "-m", "pytest", TEST_FILE, "-q", "-rs", "-p", "no:cacheprovider",
               "-p", "greenpool_exclusions", "--junitxml", "report.xml"]
    proc = subprocess.run(command, cwd=run, env=env, capture_output=True, text=True, timeout=300)
    print(proc.stdout[-5000:], proc.stderr[-2000:])  # shown when a test below fails
    assert (run / "report.xml").exists(), "eventlet's file did not run"
    results = {}
    for case in ET.parse(run / "report.xml").iter("testcase"):
        cls = case.get("classname", "").removeprefix("greenpool_test").lstrip(".")
        name = f"{cls}::{case.get('name')}" if cls else case.get("name")
        kinds = {child.tag for child in case}
        results[name] = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
    return results


def test_every_test_of_eventlets_greenpool_test_passes_but_the_excluded(outcomes: dict[str, str]) -> None:
    assert {name: outcome for name, outcome in outcomes.items() if name not in EXCLUDED and outcome != "passed"} == {}
    assert len(outcomes) > len(EXCLUDED)


def test_each_excluded_test_exists_in_eventlets_file_and_was_skipped(outcomes: dict[str, str]) -> None:
    assert {name: outcomes.get(name) for name in EXCLUDED} == dict.fromkeys(EXCLUDED, "skipped")
