import time

import pytest

from pool_core import BoundedSemaphore, GreenletExit, Semaphore, sleep, spawn

pytestmark = pytest.mark.usefixtures("quiet_hub")


def test_acquire_takes_a_unit_and_release_returns_it():
    sem = Semaphore(2)
    assert sem.acquire()
    assert sem.acquire()
    assert sem.counter == 0
    assert sem.locked()
    sem.release()
    assert sem.counter == 1
    assert not sem.locked()


def test_acquire_parks_until_a_unit_is_released():
    sem = Semaphore(0)
    waiter = spawn(sem.acquire)
    sleep(0)
    assert not waiter.dead
    sem.release()
    assert waiter.wait() is True
    assert sem.counter == 0


def test_waiters_acquire_in_fifo_order():
    sem = Semaphore(0)
    order = []

    def take(i):
        sem.acquire()
        order.append(i)

    waiters = [spawn(take, i) for i in range(5)]
    sleep(0)
    for _ in range(5):
        sem.release()
    for w in waiters:
        w.wait()
    assert order == [0, 1, 2, 3, 4]


def test_non_blocking_acquire_returns_false_at_once_when_no_unit_is_left():
    sem = Semaphore(0)
    start = time.monotonic()
    assert sem.acquire(blocking=False) is False
    assert time.monotonic() - start < 0.5


def test_non_blocking_acquire_with_a_timeout_is_a_value_error():
    with pytest.raises(ValueError):
        Semaphore(1).acquire(blocking=False, timeout=1)


def test_acquire_with_a_timeout_returns_false_after_the_timeout():
    sem = Semaphore(0)
    start = time.monotonic()
    assert sem.acquire(timeout=0.05) is False
    assert 0.045 <= time.monotonic() - start < 1.0
    assert sem.counter == 0
    assert sem.balance == 0


def test_acquire_with_a_timeout_succeeds_when_a_unit_comes_in_time():
    sem = Semaphore(0)
    spawn(sem.release)
    assert sem.acquire(timeout=5) is True


@pytest.mark.timeout(5)
def test_acquire_timeout_is_a_deadline_not_restarted_when_a_wake_is_stolen():
    sem = Semaphore(0)

    def timed_acquire():
        start = time.monotonic()
        return sem.acquire(timeout=0.3), time.monotonic() - start

    waiter = spawn(timed_acquire)
    sleep(0.2)
    sem.release()  # wakes the waiter...
    assert sem.acquire(blocking=False)  # ...but the unit is taken before it runs
    ok, elapsed = waiter.wait()
    assert ok is False
    assert elapsed < 0.45  # not 0.2 + a fresh 0.3


def test_the_semaphore_is_a_context_manager():
    sem = Semaphore(1)
    with sem:
        assert sem.counter == 0
    assert sem.counter == 1


def test_a_negative_initial_value_is_a_value_error():
    with pytest.raises(ValueError):
        Semaphore(-1)


def test_a_plain_semaphore_may_be_released_above_its_initial_value():
    sem = Semaphore(1)
    sem.release()
    assert sem.counter == 2
    assert not sem.bounded()


def test_a_bounded_semaphore_refuses_to_be_released_above_its_initial_value():
    sem = BoundedSemaphore(1)
    with pytest.raises(ValueError):
        sem.release()
    sem.acquire()
    sem.release()
    assert sem.counter == 1
    assert sem.bounded()


def test_balance_counts_waiters_as_negative():
    sem = Semaphore(0)
    waiters = [spawn(sem.acquire) for _ in range(3)]
    sleep(0)
    assert sem.balance == -3
    for _ in waiters:
        sem.release()
    for w in waiters:
        w.wait()
    assert sem.balance == 0


@pytest.mark.timeout(5)
def test_a_waiter_killed_after_being_woken_passes_the_wake_on():
    sem = Semaphore(0)
    first = spawn(sem.acquire)
    second = spawn(sem.acquire)
    sleep(0)
    sem.release()  # wakes `first`...
    first.kill()  # ...which dies before it runs: `second` must get the unit
    with pytest.raises(GreenletExit):
        first.wait()
    assert second.wait() is True
    assert sem.counter == 0


@pytest.mark.timeout(5)
def test_a_waiter_that_timed_out_does_not_swallow_a_later_release():
    sem = Semaphore(0)
    assert sem.acquire(timeout=0.01) is False
    waiter = spawn(sem.acquire)
    sleep(0)
    sem.release()
    assert waiter.wait() is True
