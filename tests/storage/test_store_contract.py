"""The storage ports' guarantees (service/storage/ports.py), checked against every store.

A store is named in STORES by a factory taking `max_records` (and a directory for its files); a store
added later is run through the same tests by adding its factory. What a durable store keeps across a
restart is tested beside its own code (tests/storage/test_sqlite_store.py). Each test is one guarantee of one port.
"""

from __future__ import annotations

import atexit
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import test_redis_support

from service.storage import MemoryStore, Store
from service.storage.records import (
    CANCELLED,
    COMPLETION,
    EVICTED,
    FAILED,
    QUEUED,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    Evicted,
    Job,
    Pile,
)
from service.storage.redis import RedisStore
from service.storage.sqlite import SqliteStore

_redis: list[test_redis_support.RedisServer] = []  # one redis-server for every Redis store here, started on first use
_prefixes = itertools.count()


def redis_store(max_records: int, tmp: Path) -> RedisStore:
    """A RedisStore under a fresh key prefix on this module's redis-server (skips without redis-server)."""
    if not _redis:
        _redis.append(test_redis_support.RedisServer(tmp).start())
        atexit.register(_redis[0].stop)
    return RedisStore(_redis[0].url, max_records, prefix=f"t{next(_prefixes)}")


# Each factory takes (max_records, a fresh directory for its files).
STORES: dict[str, Callable[[int, Path], Store]] = {
    "memory": lambda max_records, _: MemoryStore(max_records),
    "sqlite": lambda max_records, tmp: SqliteStore(str(tmp / "greenpool.db"), max_records),
    "redis": redis_store,
}
T0 = 1_700_000_000.0


@pytest.fixture(params=sorted(STORES))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """A factory for fresh stores of one kind: `make_store(max_records=100)`; each is closed afterwards."""
    made: list[Store] = []

    def make(max_records: int = 100) -> Store:
        directory = tmp_path / str(len(made))
        directory.mkdir()
        made.append(STORES[request.param](max_records, directory))
        return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    return make_store()


def new_job(store: Store, n: int, owner: str | None = None, pile: Pile | None = None) -> Job:
    """Job `j<n>`, added to the records (and to `pile`) and pushed onto the default queue."""
    job = Job(f"j{n}", "echo", {"n": n}, None, T0 + n, pile=pile and pile.id, owner=owner)
    store.jobs.add(job)
    if pile is not None:
        store.piles.add_job(pile, job)
    queue = store.queue("default")
    assert queue.reserve(1, 1_000)
    queue.push(job)
    return job


# -- job records ---------------------------------------------------------------------------------------------
def test_added_records_are_found_by_id_with_increasing_seq(store: Store) -> None:
    jobs = [new_job(store, n) for n in range(5)]
    assert [store.jobs.get(job.id) for job in jobs] == jobs
    assert [job.seq for job in jobs] == sorted({job.seq for job in jobs})
    assert store.jobs.get("nope") is None


def test_finish_is_compare_and_set_exactly_one_caller_ends_a_job(store: Store) -> None:
    job = new_job(store, 1)
    assert store.jobs.finish(job, CANCELLED, None, {"type": "Cancelled", "message": "m"}, T0 + 5) == QUEUED
    assert store.jobs.finish(job, SUCCEEDED, "late", None, T0 + 6) is None
    stored = store.jobs.get(job.id)
    assert stored is not None
    assert (stored.status, stored.result, stored.error, stored.finished_at) == (
        CANCELLED, None, {"type": "Cancelled", "message": "m"}, T0 + 5,
    )  # fmt: skip


def test_finish_of_a_taken_job_reports_it_was_running(store: Store) -> None:
    job = new_job(store, 1)
    assert store.queue("default").take(T0 + 2) is job
    assert store.jobs.finish(job, FAILED, None, {"type": "E", "message": "m"}, T0 + 3) == RUNNING
    assert job.started_at == T0 + 2 and job.run_seconds() == 1.0


def test_select_is_newest_first_and_filters_by_status_owner_and_cursor(store: Store) -> None:
    jobs = [new_job(store, n, owner="alice" if n % 2 else "bob") for n in range(6)]
    store.jobs.finish(jobs[4], SUCCEEDED, 4, None, T0 + 10)
    assert store.jobs.select() == jobs[::-1]
    assert store.jobs.select(limit=2) == [jobs[5], jobs[4]]
    assert store.jobs.select(owner="alice") == [jobs[5], jobs[3], jobs[1]]
    assert store.jobs.select(status=SUCCEEDED) == [jobs[4]]
    assert store.jobs.select(status=QUEUED, before=jobs[3].seq) == [jobs[2], jobs[1], jobs[0]]


def test_at_most_max_records_ended_records_are_kept_oldest_evicted_first(make_store: Callable[..., Store]) -> None:
    store = make_store(max_records=2)
    jobs = [new_job(store, n) for n in range(5)]
    for n in (3, 0, 4):
        store.jobs.finish(jobs[n], SUCCEEDED, n, None, T0 + 10 + n)
    assert store.jobs.get("j3") is None  # ended first: evicted first
    assert [store.jobs.get(f"j{n}") is not None for n in range(5)] == [True, True, True, False, True]


def test_expire_evicts_records_ended_by_the_horizon_only(store: Store) -> None:
    jobs = [new_job(store, n) for n in range(3)]
    store.jobs.finish(jobs[0], SUCCEEDED, 0, None, T0 + 10)
    store.jobs.finish(jobs[1], SUCCEEDED, 1, None, T0 + 20)
    store.jobs.expire(T0 + 10)
    assert [store.jobs.get(f"j{n}") is not None for n in range(3)] == [False, True, True]


# -- the queue -----------------------------------------------------------------------------------------------
def test_reserve_is_compare_and_set_against_the_bound(store: Store) -> None:
    queue = store.queue("default")
    assert queue.reserve(3, 4) and queue.queued == 3
    assert not queue.reserve(2, 4) and queue.queued == 3  # would pass the bound: nothing taken
    assert queue.reserve(1, 4) and queue.queued == 4


def test_take_hands_out_jobs_in_fifo_order_marked_running(store: Store) -> None:
    jobs = [new_job(store, n) for n in range(3)]
    queue = store.queue("default")
    taken = [queue.take(T0 + 50 + n) for n in range(3)]
    assert taken == jobs and [job.status for job in jobs] == [RUNNING] * 3
    assert [job.started_at for job in jobs] == [T0 + 50, T0 + 51, T0 + 52]
    assert queue.take(T0 + 60) is None and queue.queued == 0


def test_a_job_ended_while_queued_is_discarded_and_never_taken(store: Store) -> None:
    first, second = new_job(store, 1), new_job(store, 2)
    queue = store.queue("default")
    assert store.jobs.finish(first, CANCELLED, None, None, T0 + 3) == QUEUED
    queue.discard(first)
    assert queue.queued == 1
    assert queue.take(T0 + 4) is second
    assert first.status == CANCELLED and first.started_at is None


def test_retry_is_compare_and_set_from_running_and_keeps_the_attempt(store: Store) -> None:
    job = new_job(store, 1)
    error = {"type": "ValueError", "message": "no"}
    assert not store.jobs.retry(job, FAILED, error, T0 + 2, T0 + 5)  # queued: not running, nothing changes
    assert store.queue("default").take(T0 + 3) is job
    assert store.jobs.retry(job, FAILED, error, T0 + 4, T0 + 9)
    assert (job.status, job.attempt, job.started_at, job.not_before) == (QUEUED, 2, None, T0 + 9)
    assert job.attempts == [{"status": FAILED, "error": error, "started_at": "2023-11-14T22:13:23.000Z",
                             "finished_at": "2023-11-14T22:13:24.000Z"}]  # fmt: skip
    assert store.jobs.finish(job, CANCELLED, None, None, T0 + 5) == QUEUED
    assert not store.jobs.retry(job, FAILED, error, T0 + 6, T0 + 7)  # ended: stays cancelled
    assert job.status == CANCELLED


def test_attempts_keep_the_last_ten(store: Store) -> None:
    job, queue = new_job(store, 1), store.queue("default")
    for n in range(12):
        queue.take(T0 + n)
        assert store.jobs.retry(job, FAILED, {"type": "E", "message": str(n)}, T0 + n, T0 + n)
        job.not_before = None
        assert queue.reserve(1, 1_000)
        queue.push(job)
    assert job.attempt == 13 and [a["error"]["message"] for a in job.attempts or ()] == [str(n) for n in range(2, 12)]


def test_a_job_with_not_before_is_held_back_until_released_and_jobs_behind_it_are_taken(store: Store) -> None:
    queue = store.queue("default")
    later = Job("later", "echo", {}, None, T0)
    later.not_before = T0 + 10
    store.jobs.add(later)
    assert queue.reserve(1, 1_000)
    queue.push(later)
    assert (queue.queued, queue.delayed) == (0, 1)
    behind = new_job(store, 2)
    assert queue.take(T0 + 1) is behind and queue.take(T0 + 2) is None
    assert queue.release_due(T0 + 9) == T0 + 10 and queue.delayed == 1  # not due yet: the next not_before
    assert queue.release_due(T0 + 10) is None and (queue.queued, queue.delayed) == (1, 0)
    assert queue.take(T0 + 11) is later and later.status == RUNNING


def test_the_bound_counts_delayed_jobs_and_a_discarded_one_is_never_released(store: Store) -> None:
    queue = store.queue("default")
    jobs = []
    for n in range(2):
        job = Job(f"d{n}", "echo", {}, None, T0)
        job.not_before = T0 + 10 + n
        store.jobs.add(job)
        assert queue.reserve(1, 2)
        queue.push(job)
        jobs.append(job)
    assert not queue.reserve(1, 2)  # two delayed jobs fill a bound of two
    assert store.jobs.finish(jobs[0], CANCELLED, None, None, T0 + 1) == QUEUED
    queue.discard(jobs[0])
    assert (queue.queued, queue.delayed) == (0, 1)
    assert queue.release_due(T0 + 10) == T0 + 11  # the discarded one is skipped
    assert queue.release_due(T0 + 20) is None and queue.take(T0 + 21) is jobs[1] and queue.take(T0 + 22) is None


def test_each_pool_has_its_own_queue(store: Store) -> None:
    new_job(store, 1)
    other = store.queue("db")
    assert store.queue("db") is other and other.queued == 0 and other.take(T0) is None
    assert store.queue("default").queued == 1


# -- piles and their result logs -----------------------------------------------------------------------------
def test_pile_members_are_indexed_in_submission_order(store: Store) -> None:
    pile = Pile("p1", owner="alice")
    store.piles.add(pile)
    jobs = [new_job(store, n, pile=pile) for n in range(3)]
    assert store.piles.get("p1") is pile and store.piles.get("nope") is None
    assert [job.pile_index for job in jobs] == [0, 1, 2] and pile.size == 3


def test_result_positions_follow_completion_and_reads_resume_after_a_position(store: Store) -> None:
    pile = Pile("p1")
    store.piles.add(pile)
    jobs = [new_job(store, n, pile=pile) for n in range(3)]
    for at, n in enumerate((2, 0, 1)):
        store.jobs.finish(jobs[n], SUCCEEDED, n, None, T0 + at)
        assert store.results.append(pile, jobs[n], T0 + at) == at
    assert store.results.read(pile, -1, COMPLETION) == ([jobs[2], jobs[0], jobs[1]], 3, False)
    assert store.results.read(pile, 0, COMPLETION) == ([jobs[0], jobs[1]], 3, False)
    assert store.results.read(pile, 9, COMPLETION) == ([], 10, False)  # a resume beyond what is written
    assert pile.counts[SUCCEEDED] == 3
    store.piles.close(pile, T0 + 9)
    assert store.results.read(pile, 1, COMPLETION) == ([jobs[1]], 3, True)  # closed, and nothing left to read
    assert store.results.read(pile, -1, SUBMITTED) == (jobs, 3, True)


def test_a_read_returns_at_most_limit_records_and_where_to_read_next(store: Store) -> None:
    pile = Pile("p1")
    store.piles.add(pile)
    jobs = [new_job(store, n, pile=pile) for n in range(5)]
    for n in range(5):
        store.jobs.finish(jobs[n], SUCCEEDED, n, None, T0 + n)
        store.results.append(pile, jobs[n], T0 + n)
    store.piles.close(pile, T0 + 9)
    assert store.results.read(pile, -1, COMPLETION, 2) == (jobs[:2], 2, False)
    assert store.results.read(pile, 1, COMPLETION, 2) == (jobs[2:4], 4, False)
    assert store.results.read(pile, 3, COMPLETION, 2) == (jobs[4:], 5, True)
    assert store.results.read(pile, 0, SUBMITTED, 3) == (jobs[1:4], 4, False)
    assert store.results.read(pile, 3, SUBMITTED, 3) == (jobs[4:], 5, True)


def test_reads_in_submitted_order_stop_at_the_first_member_still_running(store: Store) -> None:
    pile = Pile("p1")
    store.piles.add(pile)
    jobs = [new_job(store, n, pile=pile) for n in range(3)]
    for n in (0, 2):
        store.jobs.finish(jobs[n], SUCCEEDED, n, None, T0 + n)
        store.results.append(pile, jobs[n], T0 + n)
    assert store.results.read(pile, -1, SUBMITTED) == ([jobs[0]], 1, False)
    assert store.results.read(pile, 0, SUBMITTED) == ([], 1, False)


def test_a_pile_completes_when_closed_and_every_member_has_a_result(store: Store) -> None:
    pile = Pile("p1")
    store.piles.add(pile)
    job = new_job(store, 1, pile=pile)
    assert store.piles.open_piles() == [pile]
    store.jobs.finish(job, SUCCEEDED, 1, None, T0 + 1)
    store.results.append(pile, job, T0 + 1)
    assert pile.finished_at is None  # still open: more members may come
    store.piles.close(pile, T0 + 2)
    store.piles.close(pile, T0 + 3)  # closing twice is harmless
    assert pile.closed and pile.complete and pile.finished_at == T0 + 2
    assert store.piles.open_piles() == []
    store.piles.expire(T0 + 1)
    assert store.piles.get("p1") is pile
    store.piles.expire(T0 + 2)
    assert store.piles.get("p1") is None


def test_an_open_pile_expires_once_nothing_is_pending_and_it_was_idle_since_the_horizon(store: Store) -> None:
    pile = Pile("p1", created_at=T0)
    store.piles.add(pile)
    store.piles.expire(T0 - 1)
    assert store.piles.get("p1") is pile
    job = new_job(store, 5, pile=pile)  # submitted at T0 + 5: activity
    store.piles.expire(T0 + 9)
    assert store.piles.get("p1") is pile  # a member is pending
    store.jobs.finish(job, SUCCEEDED, 1, None, T0 + 10)
    store.results.append(pile, job, T0 + 10)
    assert pile.active_at == T0 + 10
    store.piles.expire(T0 + 9)
    assert store.piles.get("p1") is pile  # active since the horizon
    store.piles.expire(T0 + 10)
    assert store.piles.get("p1") is None and store.piles.open_piles() == []


def test_an_empty_open_pile_expires_from_its_creation(store: Store) -> None:
    store.piles.add(Pile("p1", created_at=T0))
    store.piles.expire(T0)
    assert store.piles.get("p1") is None


def test_a_pile_lets_go_of_members_evicted_for_max_records(make_store: Callable[..., Store]) -> None:
    store = make_store(max_records=2)
    pile = Pile("p1")
    store.piles.add(pile)
    jobs = [new_job(store, n, pile=pile) for n in range(4)]
    for at, n in enumerate((2, 0, 3, 1)):
        store.jobs.finish(jobs[n], SUCCEEDED, n, None, T0 + at)
        store.results.append(pile, jobs[n], T0 + at)
    assert store.jobs.get("j2") is None and store.jobs.get("j0") is None  # the two that ended first
    records = [job.result_record() for job in store.results.read(pile, -1, COMPLETION)[0]]
    assert [(r["index"], r["job_id"], r["status"]) for r in records] == [(2, "j2", EVICTED), (0, "j0", EVICTED),
                                                                        (3, "j3", SUCCEEDED), (1, "j1", SUCCEEDED)]
    assert [r["error"] and r["error"]["type"] for r in records] == ["ResultEvicted", "ResultEvicted", None, None]
    assert "ended succeeded" in records[0]["error"]["message"]
    assert [r["result"] for r in records] == [None, None, 3, 1]
    found, end, over = store.results.read(pile, -1, SUBMITTED)
    assert [isinstance(job, Evicted) for job in found] == [True, False, True, False] and end == 4 and not over
    assert pile.summary()["done"] == 4 and pile.counts[SUCCEEDED] == 4


# -- idempotency keys ----------------------------------------------------------------------------------------
def test_the_first_claim_of_a_key_wins_and_later_ones_get_its_value(store: Store) -> None:
    assert store.keys.claim(("alice", "k"), "first") is None
    assert store.keys.claim(("alice", "k"), "second") == "first"
    assert store.keys.claim(("bob", "k"), "bob's") is None
    assert len(store.keys) == 2


def test_release_frees_a_key_only_if_it_still_holds_that_value(store: Store) -> None:
    store.keys.claim("k", "first")
    store.keys.release("k", "other")
    assert store.keys.claim("k", "again") == "first"
    store.keys.release("k", "first")
    assert store.keys.claim("k", "again") is None


def test_keys_are_bounded_and_pruned_oldest_first_up_to_a_live_one(make_store: Callable[..., Store]) -> None:
    store = make_store(max_records=3)
    for n in range(5):
        store.keys.claim(f"k{n}", n)
    assert len(store.keys) == 3
    assert store.keys.claim("k0", "new") is None  # k0 and k1 were forgotten, oldest first; now k2 is too
    assert [store.keys.claim(f"k{n}", "x") for n in (3, 4)] == [3, 4]
    store.keys.prune(lambda value: value != 3, count=5)  # the oldest (k3) is dead, the next (k4) live
    assert len(store.keys) == 2 and store.keys.claim("k4", "x") == 4
    store.keys.prune(lambda value: False, count=1)  # at most `count`
    assert len(store.keys) == 1 and store.keys.claim("k0", "x") == "new"


# -- pool sizes ----------------------------------------------------------------------------------------------
def test_pool_sizes_are_none_until_set_and_the_last_write_wins(store: Store) -> None:
    assert store.sizes.get("default") is None
    store.sizes.set("default", 4)
    store.sizes.set("default", 9)
    store.sizes.set("db", 2)
    assert (store.sizes.get("default"), store.sizes.get("db")) == (9, 2)
