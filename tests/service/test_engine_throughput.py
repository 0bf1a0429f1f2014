"""The engine keeps up with submissions however long a hub pass is: a pool slot runs queued jobs back to back
in one green thread (yielding after a short turn), while at most `size` jobs run at once, in FIFO order,
and cancels, timeouts and resizes keep their meaning. In-process, on this thread's hub."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest

import pool_core
from service.config import Config
from service.engine import Engine
from service.storage.records import CANCELLED, SUCCEEDED, TIMED_OUT, Job
from service.tasks import Registry

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0  # seconds any single wait in these tests may take before it counts as a failure


class Lab:
    """Test tasks that report what they do: start order, how many run at once, gates that hold a job."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.running = 0
        self.most_running = 0
        self.entered: defaultdict[str, pool_core.Event] = defaultdict(pool_core.Event)
        self.gates: defaultdict[str, pool_core.Event] = defaultdict(pool_core.Event)

    def registry(self) -> Registry:
        """The built-ins plus `gate`, `mark` and `spin`."""
        registry = Registry.with_builtins(entry_points=False)
        registry.register(self.gate, name="gate", cooperative=True)
        registry.register(self.mark, name="mark", cooperative=True)
        registry.register(self.spin, name="spin", cooperative=True)
        return registry

    def gate(self, label: str) -> str:
        """Start, then wait until `release(label)`."""
        self.started.append(label)
        self.entered[label].send()
        self.gates[label].wait()
        return label

    def mark(self, label: str, parks: int = 1) -> str:
        """Start, count how many run at once, and park `parks` times (so others can run meanwhile)."""
        self.started.append(label)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            for _ in range(parks):
                pool_core.sleep(0)
        finally:
            self.running -= 1
        return label

    def spin(self, seconds: float) -> float:
        """Busy for `seconds` without parking (an instant job that costs CPU)."""
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            pass
        return seconds

    def wait_entered(self, label: str) -> None:
        """Park until the `gate` job labelled `label` has started."""
        self.entered[label].wait(WAIT)
        assert self.entered[label].ready(), f"job {label!r} did not start"

    def release(self, label: str) -> None:
        self.gates[label].send()

    def release_all(self) -> None:
        for gate in self.gates.values():
            if not gate.ready():
                gate.send()


class Ticker:
    """A green thread that goes round once per hub pass: counts passes and the longest gap between its turns,
    optionally spinning `busy` seconds each turn to make every pass that much longer."""

    def __init__(self, busy: float = 0.0) -> None:
        self.busy = busy
        self.passes = 0
        self.longest_gap = 0.0
        self._stop = False
        self._thread = pool_core.spawn(self._run)

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop:
            if self.busy:
                deadline = time.perf_counter() + self.busy
                while time.perf_counter() < deadline:
                    pass
            pool_core.sleep(0)
            now = time.perf_counter()
            self.longest_gap = max(self.longest_gap, now - last)
            self.passes += 1
            last = now

    def stop(self) -> None:
        self._stop = True
        self._thread.wait()


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    yield lab
    lab.release_all()


@pytest.fixture
def make_engine(lab: Lab) -> Iterator[Callable[[int], Engine]]:
    """Engines on this thread's hub running the lab's tasks; drained and stopped at the end of the test."""
    engines: list[Engine] = []

    def make(size: int) -> Engine:
        engine = Engine(Config(pool_size=size, max_queued=100_000, log_level="warning", store="memory"), lab.registry())
        engines.append(engine)
        return engine

    yield make
    lab.release_all()
    for engine in engines:
        engine.drain(0)
        for thread in engine.threads():
            thread.kill()


def wait_all(engine: Engine, jobs: list[Job]) -> None:
    for job in jobs:
        assert engine.wait(job, WAIT), job.to_dict()


def test_queued_instant_jobs_far_beyond_the_pool_finish_within_a_few_long_hub_passes(
    make_engine: Callable[[int], Engine],
) -> None:
    engine = make_engine(4)
    ticker = Ticker(busy=0.005)  # every pass takes at least 5 ms, like hundreds of busy connections
    jobs = [engine.submit("echo", {"i": i}) for i in range(1000)]
    wait_all(engine, jobs)
    ticker.stop()
    assert all(job.status == SUCCEEDED for job in jobs)
    # One spawn per job would need 2 passes per 4 jobs (500 passes); slots run jobs back to back instead.
    assert ticker.passes < 100, ticker.passes


def test_no_more_jobs_run_at_once_than_the_pool_size(lab: Lab, make_engine: Callable[[int], Engine]) -> None:
    engine = make_engine(3)
    jobs = [engine.submit("mark", {"label": str(i), "parks": 1 + i % 4}) for i in range(60)]
    wait_all(engine, jobs)
    assert all(job.status == SUCCEEDED for job in jobs)
    assert lab.most_running == 3
    assert engine.stats()["running"] == 0


def test_jobs_start_in_the_order_they_were_submitted(lab: Lab, make_engine: Callable[[int], Engine]) -> None:
    engine = make_engine(3)
    labels = [str(i) for i in range(40)]
    jobs = [engine.submit("mark", {"label": label, "parks": 1 + i % 3}) for i, label in enumerate(labels)]
    wait_all(engine, jobs)
    assert lab.started == labels
    assert [job.seq for job in sorted(jobs, key=lambda job: job.started_at or 0.0)] == [job.seq for job in jobs]


def test_a_cancelled_queued_job_behind_a_busy_slot_never_starts_and_the_slot_runs_the_next(
    lab: Lab, make_engine: Callable[[int], Engine]
) -> None:
    engine = make_engine(1)
    first = engine.submit("gate", {"label": "a"})
    lab.wait_entered("a")
    b, c, d = (engine.submit("mark", {"label": label}) for label in "bcd")
    assert engine.cancel(c.id).status == CANCELLED
    assert engine.stats()["queued"] == 2
    lab.release("a")
    wait_all(engine, [first, b, d])
    assert lab.started == ["a", "b", "d"]
    assert (first.status, b.status, c.status, d.status) == (SUCCEEDED, SUCCEEDED, CANCELLED, SUCCEEDED)
    assert c.started_at is None and c.result is None
    stats = engine.stats()
    assert (stats["submitted"], stats["succeeded"], stats["cancelled"], stats["queued"]) == (4, 3, 1, 0)


def test_cancelling_a_running_job_kills_only_that_job_and_its_slot_runs_the_next(
    lab: Lab, make_engine: Callable[[int], Engine]
) -> None:
    engine = make_engine(1)
    events: defaultdict[str, list[str]] = defaultdict(list)
    engine.observers.append(lambda event, job: events[job.id].append(event))
    held = engine.submit("gate", {"label": "held"})  # never released: only the cancel ends it
    lab.wait_entered("held")
    after = engine.submit("mark", {"label": "after"})
    assert engine.cancel(held.id).status == CANCELLED
    assert engine.wait(after, WAIT) and after.status == SUCCEEDED
    assert events[held.id] == ["queued", "running", "cancelled"]
    assert events[after.id] == ["queued", "running", "succeeded"]
    stats = engine.stats()
    assert (stats["running"], stats["free"], stats["cancelled"], stats["succeeded"]) == (0, 1, 1, 1)


def test_a_timed_out_job_ends_and_its_slot_runs_the_next_queued_job(
    lab: Lab, make_engine: Callable[[int], Engine]
) -> None:
    engine = make_engine(1)
    stuck = engine.submit("gate", {"label": "stuck"}, timeout=0.05)  # never released: only its timeout ends it
    after = engine.submit("mark", {"label": "after"})
    assert engine.wait(after, WAIT) and after.status == SUCCEEDED
    assert stuck.status == TIMED_OUT and stuck.error is not None and stuck.error["type"] == "Timeout"
    assert lab.started == ["stuck", "after"]
    assert engine.stats()["timed_out"] == 1


def test_a_slot_running_many_instant_jobs_lets_other_green_threads_run_every_few_milliseconds(
    make_engine: Callable[[int], Engine],
) -> None:
    engine = make_engine(1)
    ticker = Ticker()
    t0 = time.perf_counter()
    jobs = [engine.submit("spin", {"seconds": 0.0002}) for _ in range(1000)]
    wait_all(engine, jobs)
    elapsed = time.perf_counter() - t0
    ticker.stop()
    assert elapsed > 0.2  # 1000 jobs of 0.2 ms each, back to back in one slot
    assert ticker.longest_gap < 0.05, (ticker.longest_gap, elapsed)


def test_a_slot_over_a_shrunk_pool_leaves_instead_of_taking_the_next_job(
    lab: Lab, make_engine: Callable[[int], Engine]
) -> None:
    engine = make_engine(3)
    jobs = {label: engine.submit("gate", {"label": label}) for label in "abcde"}
    for label in "abc":
        lab.wait_entered(label)
    stats = engine.stats()
    assert (stats["running"], stats["queued"], stats["waiting"]) == (3, 2, 1), stats

    engine.resize(1)
    for label, running in (("a", 2), ("b", 1)):
        lab.release(label)
        assert engine.wait(jobs[label], WAIT)
        stats = engine.stats()
        assert (stats["running"], stats["free"], stats["queued"]) == (running, 1 - running, 2), stats
    lab.release("c")  # its slot is now within the size: it takes the next job
    lab.wait_entered("d")
    stats = engine.stats()
    assert (stats["running"], stats["free"], stats["queued"]) == (1, 0, 1), stats

    engine.resize(3)
    lab.wait_entered("e")
    stats = engine.stats()
    assert (stats["running"], stats["queued"], stats["waiting"]) == (2, 0, 0), stats
    assert lab.started == list("abcde")
