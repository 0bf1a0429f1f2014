"""Cluster mode in one process: engines as replicas over one shared store and one real redis-server.

The cluster-wide pool size (leases), resizes seen by every replica, lapsed leases reaped once, and the
hints (long-polls, streams, idle dispatchers, cancel) from one replica to another."""

from __future__ import annotations

import time

import pytest

from pool_core import GreenPool, sleep
from service.storage.records import RUNNING
from service.tasks import Registry, task

pytestmark = pytest.mark.timeout(30)


class Probe:
    """A task `probe(seconds)` that counts how many of its calls run at once (`peak`) and when each ran."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.spans: list[tuple[float, float]] = []
        self.registry = Registry.with_builtins(entry_points=False)

        @task(name="probe", cooperative=True)
        def probe(seconds: float = 0.1) -> None:
            self.now += 1
            self.peak = max(self.peak, self.now)
            start = time.monotonic()
            try:
                sleep(seconds)
            finally:
                self.now -= 1
                self.spans.append((start, time.monotonic()))

        self.registry.register(probe)


def until(condition, timeout: float = 5.0, step: float = 0.02) -> float:
    """Park until `condition()` is true (the seconds it took); fails after `timeout`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not met in time"
        sleep(step)
    return time.monotonic() - start


def test_two_replicas_never_run_more_than_the_cluster_wide_size(replicas):
    probe = Probe()
    a, b = replicas(2, probe.registry, pool_size=3)
    start = time.monotonic()
    jobs = [(a if i % 2 else b).submit("probe", {"seconds": 0.1}) for i in range(24)]
    for job in jobs:
        assert a.wait(job, 10)
    elapsed = time.monotonic() - start
    assert probe.peak == 3, f"peak {probe.peak}"
    assert all(job.status == "succeeded" for job in jobs)
    assert elapsed >= 24 / 3 * 0.1 * 0.95
    assert elapsed < 3.0, f"{elapsed:.2f} s: slots freed on one replica were not found by the other"
    until(lambda: a.cluster.state.held("default") == 0, timeout=1.0)  # every lease released once its job ended


def test_replicas_report_the_jobs_they_run_not_the_slots_that_ask_for_a_lease(replicas):
    probe = Probe()
    a, b = replicas(2, probe.registry, pool_size=2)
    jobs = [(a if i % 2 else b).submit("probe", {"seconds": 30}) for i in range(3)]  # 2 run, 1 queued
    until(lambda: probe.now == 2)
    deadline = time.monotonic() + 1.5  # meanwhile the replicas' dispatchers probe for a slot: refused
    while time.monotonic() < deadline:
        assert a.stats()["running"] + b.stats()["running"] == 2
        sleep(0.01)
    for job in jobs:
        a.cancel(job.id)


def test_a_replica_whose_pool_was_full_runs_the_next_jobs_after_its_slots_have_left(replicas):
    # Its dispatcher (told of a push elsewhere) waited for a free slot while the slots, leaving, still released
    # their leases: the wake-ups they gave found none gone, and later submissions (which wake an idle
    # dispatcher only) never ran.
    probe = Probe()
    (a,) = replicas(1, probe.registry, pool_size=2)
    release = a.cluster.release

    def slow_release(pool: str, token: str) -> None:  # a slow Redis: the release parks for a while
        sleep(0.05)
        release(pool, token)

    a.cluster.release = slow_release
    lane = a.runner.lanes["default"]
    for rounds in range(3):
        jobs = [a.submit("probe", {"seconds": 0.05}) for _ in range(4)]  # two waves of two, that end together
        until(lambda: probe.now == 2)
        lane.hinted()  # another replica pushed meanwhile (whose job the two slots may take as well)
        for job in jobs:
            assert a.wait(job, 5), f"round {rounds}: {[j.status for j in jobs]}"
        until(lambda: a.stats()["running"] == 0, timeout=2.0)
    assert probe.peak == 2


def test_a_resize_on_one_replica_is_in_effect_on_the_other_within_a_second(replicas):
    probe = Probe()
    a, b = replicas(2, probe.registry, pool_size=2)
    jobs = [a.submit("probe", {"seconds": 0.6}) for _ in range(12)]
    until(lambda: probe.now == 2)
    start = time.monotonic()
    b.resize(6)
    assert until(lambda: a.stats()["size"] == 6, timeout=1.0) < 1.0
    assert until(lambda: probe.now == 6, timeout=1.0) < 1.0  # growing starts queued jobs at once
    sleep(0.1)
    assert probe.peak == 6
    b.resize(1)
    shrunk = time.monotonic()
    assert until(lambda: a.stats()["size"] == 1, timeout=1.0) < 1.0
    for job in jobs:
        assert b.wait(job, 10)
    assert time.monotonic() - start < 6
    later = [(s, e) for s, e in probe.spans if s > shrunk]  # started after the shrink: one at a time
    assert later and all(e1 <= s2 + 0.01 for (_, e1), (s2, _) in zip(sorted(later), sorted(later)[1:], strict=False))


def test_a_replica_that_stops_renewing_loses_its_leases_and_the_jobs_end_worker_lost_once(replicas):
    probe = Probe()
    a, b, c = replicas(3, probe.registry, pool_size=4, lease=0.6)
    for thread in a.cluster.threads():  # replica a "dies": nothing renews its leases any more
        thread.kill()
    for lane in b.runner:  # and only a runs jobs
        lane.hold()
    for lane in c.runner:
        lane.hold()
    doomed = [a.submit("probe", {"seconds": 30}) for _ in range(2)]
    retried = a.submit("probe", {"seconds": 30}, options=_retries(1))
    until(lambda: probe.now == 3)
    for lane in a.runner:  # a takes no more jobs (else it would take the retried one again, and lose it again)
        lane.hold()
    ended = []
    for engine in (b, c):
        engine.observers.append(lambda event, job, engine=engine: ended.append((engine.cluster.replica, event, job.id)))
    until(lambda: all(job.status != RUNNING for job in doomed) and retried.attempt == 2, timeout=5)
    assert [job.status for job in doomed] == ["failed", "failed"]
    assert {job.error["type"] for job in doomed} == {"WorkerLost"}
    assert retried.status == "queued" and retried.attempts[0]["error"]["type"] == "WorkerLost"
    sleep(1.0)  # more reaps on both survivors change nothing
    events = sorted((event, job_id) for _, event, job_id in ended)
    assert events == sorted([("failed", doomed[0].id), ("failed", doomed[1].id), ("retrying", retried.id)])
    assert b.cluster.state.held("default") <= 3  # a's lapsed leases no longer count (a holds the retried one again)


def _retries(n: int):
    from service.engine import JobOptions

    return JobOptions(retries=n, retry_backoff=0.01)


def test_hints_wake_long_polls_streams_and_dispatchers_and_cancel_reaches_the_running_replica(replicas):
    probe = Probe()
    a, b = replicas(2, probe.registry, pool_size=4)
    for lane in b.runner:  # only a runs jobs
        lane.hold()
    job = b.submit("probe", {"seconds": 0.2})  # pushed on b: a's idle dispatcher is told
    start = time.monotonic()
    assert b.wait(job, 5)  # ended on a: b's long-poll is woken by the hint
    assert job.status == "succeeded" and time.monotonic() - start < 0.6
    pile = b.create_pile([("probe", {"seconds": 0.05 * i}) for i in range(4)])
    got = []
    pool = GreenPool(1)
    pool.spawn(lambda: [got.extend(batch) for batch in b.follow(pile)])
    pool.waitall()
    assert sorted(record["index"] for _, record in got) == [0, 1, 2, 3]
    long = b.submit("probe", {"seconds": 30})
    until(lambda: long.status == RUNNING)
    start = time.monotonic()
    b.cancel(long.id)
    until(lambda: probe.now == 0, timeout=1.0)  # a killed its green thread
    assert time.monotonic() - start < 1.0
    until(lambda: a.cluster.state.held("default") == 0, timeout=1.0)


def test_a_job_taken_by_a_replica_that_died_before_binding_its_lease_ends_worker_lost(replicas):
    a, b = replicas(2, lease=0.6)
    for lane in [*a.runner, *b.runner]:  # nobody takes jobs but the test
        lane.hold()
    for thread in a.cluster.threads():  # a dies...
        thread.kill()
    job = a.submit("sleep", {"seconds": 30})
    token = a.cluster.token()  # ...after its slot got a lease and took the job, before binding them
    assert a.cluster.state.acquire("default", token) and a.store.queue("default").take(time.time()) is job
    until(lambda: job.status != RUNNING, timeout=5)
    assert job.status == "failed" and job.error["type"] == "WorkerLost"


def test_a_pool_created_on_one_replica_is_served_by_the_other_and_cannot_be_deleted_while_it_runs_there(replicas):
    from service.engine import errors

    probe = Probe()
    a, b = replicas(2, probe.registry)
    for lane in a.runner:
        lane.hold()
    assert a.resize(2, "io") is True
    a.runner.lanes["io"].hold()
    until(lambda: "io" in b.pool_names(), timeout=1.0)
    job = a.submit("probe", {"seconds": 30}, pool="io")
    until(lambda: job.status == RUNNING)  # on b
    assert a.stats("io")["running"] == 0 and b.stats("io")["running"] == 1
    with pytest.raises(errors.PoolInUse):
        a.delete_pool("io")
    b.cancel(job.id)
    until(lambda: a.cluster.running("io") == 0, timeout=1.0)
    a.delete_pool("io")
    until(lambda: "io" not in b.pool_names(), timeout=1.5)


def test_a_drain_ends_only_the_jobs_of_its_replica_and_the_replica_leaves_the_list(replicas):
    probe = Probe()
    engines = replicas(2, probe.registry, pool_size=1)
    engines[0].store.durable = True  # as the Redis store: queued jobs stay for the next start
    elsewhere = engines[0].submit("probe", {"seconds": 30})
    until(lambda: elsewhere.status == RUNNING)
    keeper, drained = sorted(engines, key=lambda e: -e.stats()["running"])  # keeper runs it
    for lane in keeper.runner:
        lane.hold()
    keeper.resize(2)
    mine = keeper.submit("probe", {"seconds": 30})
    until(lambda: mine.status == RUNNING)  # on the other one
    until(lambda: len(keeper.report()["replicas"]) == 2, timeout=2.0)
    drained.drain(0.2)
    assert mine.status == "cancelled" and elsewhere.status == RUNNING
    assert [r["id"] for r in keeper.report()["replicas"]] == [keeper.cluster.replica]
    keeper.cancel(elsewhere.id)
