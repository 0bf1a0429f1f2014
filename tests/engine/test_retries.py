"""Retries, backoff and delay in the engine itself (design §3), in-process: a real hub, the real clock, the
memory store; the real-server tests are in tests/api/test_api_retries.py."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pool_core import Event, Timeout
from service.api.resources.jobs import parse_options
from service.config import Config, ConfigError
from service.engine import Engine, JobOptions, JobSpec, errors
from service.storage import MemoryStore
from service.storage.records import RUNNING, Job
from service.storage.sqlite import SqliteStore
from service.tasks import Registry, TaskDefinitionError, task

BACKOFF = 0.2  # seconds: retry_backoff of the tests' jobs


def flaky_registry(failures: int) -> Registry:
    """The built-ins and `flaky`, which fails its first `failures` calls and then returns how many it made."""
    calls = []

    @task(name="flaky", cooperative=True)
    def flaky() -> int:
        calls.append(1)
        if len(calls) <= failures:
            raise ValueError(f"call {len(calls)} fails")
        return len(calls)

    @task(name="patient", cooperative=True, retries=2, retry_backoff=0.05)
    def patient() -> None:
        raise ValueError("never")

    registry = Registry.with_builtins(entry_points=False)
    registry.register(flaky)
    registry.register(patient)
    return registry


@pytest.fixture
def make(engine_factory: Callable[..., Engine]) -> Callable[..., Engine]:
    """Build engines (a flaky task failing `failures` times, pool size 4) stopped after the test."""

    def build(failures: int = 2, store: MemoryStore | None = None, **config: float) -> Engine:
        store = store if store is not None else MemoryStore(1000)
        return engine_factory(flaky_registry(failures), store, **{"pool_size": 4, **config})

    return build


def timeline(engine: Engine) -> dict[str, list[tuple[str, float]]]:
    """Each job's events with their monotonic times, as the engine's observers see them."""
    events: dict[str, list[tuple[str, float]]] = {}
    engine.observers.append(lambda event, job: events.setdefault(job.id, []).append((event, time.monotonic())))
    return events


def test_a_job_that_fails_twice_succeeds_on_its_third_attempt_after_the_backoff(make) -> None:
    engine = make(failures=2)
    events = timeline(engine)
    job = engine.submit("flaky", {}, options=JobOptions(retries=3, retry_backoff=BACKOFF))
    assert engine.wait(job, 10)
    record = job.to_dict()
    assert (record["status"], record["result"], record["attempt"], record["retries"]) == ("succeeded", 3, 3, 3)
    assert [a["status"] for a in record["attempts"]] == ["failed", "failed"]
    assert record["attempts"][1]["error"] == {"type": "ValueError", "message": "call 2 fails"}
    kinds = [kind for kind, _ in events[job.id]]
    assert kinds == ["queued", "running", "retrying", "running", "retrying", "running", "succeeded"]
    times = dict(enumerate(at for _, at in events[job.id]))
    for n, (ended, started) in enumerate([(times[2], times[3]), (times[4], times[5])], 1):
        wait, longest = started - ended, BACKOFF * 2 ** (n - 1)
        assert 0.5 * longest - 0.02 <= wait <= longest + 0.25, (n, wait)  # uniform(0.5, 1) × the backoff


def test_the_last_attempt_s_failure_ends_the_job_and_attempts_keep_the_earlier_ones(make) -> None:
    engine = make(failures=100)
    job = engine.submit("flaky", {}, options=JobOptions(retries=2, retry_backoff=0))
    assert engine.wait(job, 10)
    assert (job.status, job.attempt, job.error["message"]) == ("failed", 3, "call 3 fails")  # type: ignore[index]
    assert [a["error"]["message"] for a in job.attempts] == ["call 1 fails", "call 2 fails"]  # type: ignore[union-attr]
    engine.runner.lanes["default"].pool.waitall()  # the slot that ended it may not have returned yet
    stats = engine.stats()
    assert (stats["failed"], stats["queued"], stats["delayed"], stats["running"]) == (1, 0, 0, 0)


def test_a_task_s_retry_policy_is_the_default_and_a_job_s_own_wins(make) -> None:
    engine = make(max_retries=25)
    default = engine.submit("patient", {})
    assert (default.retries, default.backoff) == (2, 0.05)
    own = engine.submit("patient", {}, options=JobOptions(retries=0))
    assert (own.retries, own.backoff) == (0, 0.05)
    assert engine.submit("echo", {}).retries == 0
    assert engine.wait(default, 10) and default.attempt == 3 and len(default.attempts or ()) == 2
    assert engine.wait(own, 10) and own.attempt == 1 and own.attempts is None


def test_a_delayed_job_waits_for_not_before_and_does_not_hold_up_the_jobs_behind_it(make) -> None:
    engine = make(pool_size=1)
    events = timeline(engine)
    submitted = time.monotonic()
    delayed = engine.submit("echo", {"late": True}, options=JobOptions(delay=0.5))
    assert delayed.not_before == pytest.approx(delayed.submitted_at + 0.5)
    assert delayed.to_dict()["not_before"] is not None
    behind = engine.submit("echo", {"early": True})
    assert engine.wait(behind, 5) and delayed.status == "queued"
    stats = engine.stats()
    assert (stats["queued"], stats["delayed"]) == (1, 1)
    assert engine.wait(delayed, 5) and delayed.status == "succeeded"
    started = next(at for kind, at in events[delayed.id] if kind == RUNNING)
    assert started - submitted >= 0.5 - 0.01
    assert engine.stats()["delayed"] == 0


def test_delayed_jobs_count_against_the_queue_bound(make) -> None:
    engine = make(max_queued=2)
    engine.submit("echo", {}, options=JobOptions(delay=60))
    engine.create_pile([JobSpec("echo", {}, options=JobOptions(delay=60))])
    with pytest.raises(errors.QueueFull):
        engine.submit("echo", {})


def test_cancelling_a_job_waiting_for_its_retry_ends_it_cancelled(make) -> None:
    engine = make(failures=100)
    job = engine.submit("flaky", {}, options=JobOptions(retries=5, retry_backoff=30))
    deadline = time.monotonic() + 5
    while job.attempt == 1 and time.monotonic() < deadline:
        engine.wait(job, 0.05)
    assert (job.status, job.attempt, job.not_before is not None) == ("queued", 2, True)
    assert engine.stats()["delayed"] == 1
    engine.cancel(job.id)
    assert job.status == "cancelled" and engine.stats()["delayed"] == 0 and engine.stats()["queued"] == 0
    with pytest.raises(errors.JobAlreadyEnded):
        engine.cancel(job.id)


def test_a_timed_out_attempt_is_retried_and_the_last_one_ends_timed_out(make) -> None:
    engine = make()
    job = engine.submit("sleep", {"seconds": 30}, timeout=0.1, options=JobOptions(retries=1, retry_backoff=0.05))
    assert engine.wait(job, 10)
    assert (job.status, job.attempt) == ("timed_out", 2)
    assert [a["status"] for a in job.attempts or ()] == ["timed_out"]
    with Timeout(5):
        engine.runner.lanes["default"].pool.waitall()  # both kills handled: the slot left, none is held
    assert engine.stats()["running"] == 0


def test_an_attempt_lost_with_the_process_is_retried_when_the_job_has_retries(make) -> None:
    store = MemoryStore(100)
    lost = Job("lost", "echo", {"x": 1}, None, time.time() - 1)
    lost.retries, lost.backoff = 1, 0
    store.jobs.add(lost)
    lost.status, lost.started_at = RUNNING, time.time() - 0.5
    engine = make(store=store)
    engine.recover()
    assert lost.attempt == 2 and lost.attempts and lost.attempts[0]["error"]["type"] == "WorkerLost"
    assert engine.wait(lost, 5) and lost.status == "succeeded" and lost.result == {"x": 1}


def test_the_backoff_is_capped_by_max_backoff(make) -> None:
    engine = make(failures=100, max_backoff=0.1)
    job = engine.submit("flaky", {}, options=JobOptions(retries=1, retry_backoff=300))
    deadline = time.monotonic() + 5
    while job.attempt == 1 and time.monotonic() < deadline:
        engine.wait(job, 0.05)
    assert job.not_before is not None and job.not_before - time.time() <= 0.1
    assert engine.wait(job, 5) and job.status == "failed"


def test_a_pile_logs_one_result_per_job_once_its_last_attempt_has_ended(make) -> None:
    engine = make(failures=1)
    retried = JobSpec("flaky", {}, options=JobOptions(retries=2, retry_backoff=0.05))
    pile = engine.create_pile([retried, ("echo", {"n": 1}, None)])
    records = [record for batch in engine.follow(pile, heartbeat=5) for _, record in batch]
    assert [(r["index"], r["status"]) for r in sorted(records, key=lambda r: r["index"])] == [
        (0, "succeeded"), (1, "succeeded")]  # fmt: skip
    assert pile.summary()["succeeded"] == 2 and pile.jobs[0].attempt == 2


def test_a_task_s_default_retries_are_capped_by_max_retries(make) -> None:
    engine = make(max_retries=1)
    assert engine.submit("patient", {}).retries == 1


@pytest.mark.parametrize("policy", [{"retries": -1}, {"retries": 1.5}, {"retries": True}, {"retry_backoff": -1},
                                    {"retry_backoff": "1"}])  # fmt: skip
def test_a_task_with_a_bad_retry_policy_is_refused_at_definition(policy: dict) -> None:
    with pytest.raises(TaskDefinitionError, match=next(iter(policy))):
        task(name="bad", **policy)(lambda: None)


@pytest.mark.parametrize("name", ["MAX_RETRIES", "MAX_BACKOFF", "MAX_DELAY"])
def test_a_negative_cap_is_refused_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigError, match=f"GREENPOOL_{name}"):
        Config.from_env({f"GREENPOOL_{name}": "-1"})
    assert Config.from_env({}).max_delay == 7 * 86_400


def test_a_drain_with_a_durable_store_queues_a_job_with_retries_left_for_the_next_start(make, tmp_path) -> None:  # noqa: ANN001
    store = SqliteStore(str(tmp_path / "gp.db"), 100)
    engine = make(store=store)
    started = Event()
    engine.observers.append(lambda event, job: started.send(job) if event == RUNNING else None)
    kept = engine.submit("sleep", {"seconds": 30}, options=JobOptions(retries=1))
    assert started.wait(5) is kept
    engine.drain(0)
    assert (kept.status, kept.attempt) == ("queued", 2)
    assert kept.attempts and kept.attempts[0]["error"]["type"] == "Interrupted"
    store.close()


def test_an_integral_float_is_an_integer_number_of_retries() -> None:
    errors: list[dict[str, str]] = []
    assert parse_options({"retries": 2.0}, Config(), "", errors) == JobOptions(retries=2) and not errors
