"""The cluster-wide pool limit (lease sorted set + Lua) against a real redis-server, three "replicas" (three
separate client pools) contending from green threads."""

from __future__ import annotations

import itertools
import time

import pytest
import test_redis_support

from pool_core import GreenPool, sleep
from service.storage.redis import LeaseSemaphore, NoLimit, connect

pytestmark = pytest.mark.timeout(30)
redis_server = test_redis_support.redis_server  # the module-scoped server fixture


@pytest.fixture
def replicas(redis_server):
    clients = [connect(redis_server.url) for _ in range(3)]
    clients[0].flushall()
    yield [LeaseSemaphore(c) for c in clients]
    for c in clients:
        c.connection_pool.disconnect()


def test_thirty_green_threads_on_three_replicas_never_hold_more_than_the_size(replicas):
    replicas[0].set_size("default", 10)
    holding = peak = granted_total = 0
    seen_by_redis = []
    tokens = itertools.count()

    def worker(n):
        nonlocal holding, peak, granted_total
        sem, replica = replicas[n % 3], f"replica-{n % 3}"
        for _ in range(20):  # bounded: 20 attempts each
            token = f"{replica}:{next(tokens)}"
            grant = sem.acquire("default", replica, token, lease_s=10)
            assert grant.held <= grant.size == 10
            if not grant.granted:
                sleep(0.005)
                continue
            holding += 1  # counted after the grant and uncounted before the release: never above Redis' count
            peak = max(peak, holding)
            granted_total += 1
            seen_by_redis.append(len(sem.holders("default")))
            sleep(0.01)
            holding -= 1
            assert sem.release("default", token) is True

    pool = GreenPool(30)
    for n in range(30):
        pool.spawn(worker, n)
    pool.waitall()
    assert peak == 10, f"never reached the limit (peak {peak}): the test did not contend"
    assert max(seen_by_redis) <= 10
    assert granted_total > 30
    assert replicas[1].holders("default") == {}


def test_a_resize_in_the_limits_hash_takes_effect_at_the_next_acquire(replicas):
    a, b, c = replicas
    a.set_size("p", 2)
    assert [a.acquire("p", "A", f"t{i}", 10).granted for i in range(3)] == [True, True, False]
    b.set_size("p", 4)  # another replica resizes
    assert [c.acquire("p", "C", f"u{i}", 10).granted for i in range(3)] == [True, True, False]
    a.set_size("p", 1)  # lowering lets holders finish but grants nothing until below the new size
    assert c.acquire("p", "C", "v", 10) == (False, 4, 1)
    for token in ("t0", "t1", "u0"):
        assert a.release("p", token)
    assert c.acquire("p", "C", "v", 10).granted is False  # u1 still holds the one slot
    assert a.release("p", "u1")
    assert c.acquire("p", "C", "v", 10) == (True, 1, 1)


def test_releasing_twice_frees_one_slot_and_a_retried_acquire_takes_no_second_slot(replicas):
    a, b, _ = replicas
    a.set_size("p", 2)
    assert a.acquire("p", "A", "x", 10).granted
    assert a.acquire("p", "A", "x", 10) == (True, 1, 2)  # same token again: a renewal, still one slot
    assert b.acquire("p", "B", "y", 10).granted
    assert a.release("p", "x") is True
    assert a.release("p", "x") is False
    assert b.release("p", "x") is False
    assert a.holders("p") == {"y": "B"}


def test_expired_leases_free_their_slots_cannot_be_renewed_and_are_reaped_once(replicas):
    a, b, _ = replicas
    a.set_size("p", 2)
    assert a.acquire("p", "A", "dies", 0.2).granted
    assert b.acquire("p", "B", "lives", 0.5).granted
    assert a.acquire("p", "A", "late", 10).granted is False
    start = time.monotonic()
    while time.monotonic() - start < 0.35:  # past the expiry of "dies" (Redis' clock); "lives" is renewed
        assert b.renew("p", "lives", 0.5) is True
        sleep(0.05)
    assert b.renew("p", "lives", 10) is True
    assert a.renew("p", "dies", 10) is False
    assert a.acquire("p", "A", "late", 10).granted is True  # the lapsed slot is free again
    assert a.release("p", "late") is True
    assert a.acquire("p", "A", "dies", 10) == (False, 1, 2)  # room, but a lapsed token is lost, not granted anew
    assert a.release("p", "dies") is False  # its slot was freed by expiry, not released twice
    assert b.reap("p") == [("dies", "A")]
    assert a.reap("p") == []
    assert a.holders("p") == {"lives": "B"}


def test_reap_reports_leases_that_expired_with_nobody_acquiring(replicas):
    a, _, c = replicas
    a.set_size("p", 5)
    for token in ("one", "two"):
        assert a.acquire("p", "A", token, 0.1).granted
    assert c.acquire("p", "C", "three", 10).granted
    sleep(0.25)
    assert c.reap("p") == [("one", "A"), ("two", "A")]
    assert c.reap("p") == []
    assert c.holders("p") == {"three": "C"}


def test_a_pool_without_a_size_is_an_error_and_bad_arguments_are_refused(replicas):
    a = replicas[0]
    with pytest.raises(NoLimit):
        a.acquire("nowhere", "A", "t", 1)
    with pytest.raises(ValueError):
        a.set_size("p", -1)
    a.set_size("p", 1)
    with pytest.raises(ValueError):
        a.acquire("p", "A", "t", 0)
