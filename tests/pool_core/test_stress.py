import random
import time

import pytest

from pool_core import Event, GreenPile, GreenPool, get_hub, sleep, spawn


def noop():
    pass


@pytest.mark.timeout(30)
def test_a_hundred_thousand_spawns_through_a_pool_complete_and_leave_nothing_running():
    hub = get_hub()
    pool = GreenPool(1000)
    done = [0]

    def count():
        done[0] += 1

    start = time.perf_counter()
    for _ in range(100_000):
        pool.spawn(count)
    pool.waitall()
    elapsed = time.perf_counter() - start
    assert done[0] == 100_000
    assert pool.running() == 0
    assert pool.waiting() == 0
    assert len(hub.ready) == 0
    assert elapsed < 15


@pytest.mark.timeout(30)
def test_a_hundred_thousand_spawn_n_calls_through_a_small_pool_complete():
    hub = get_hub()
    pool = GreenPool(10)
    for _ in range(100_000):
        pool.spawn_n(noop)
    pool.waitall()
    assert pool.running() == 0
    assert len(hub.ready) == 0


@pytest.mark.timeout(30)
def test_a_pile_of_twenty_thousand_results_yields_each_once():
    pile = GreenPile(1000)
    for i in range(20_000):
        pile.spawn(lambda i=i: i)
    assert sorted(pile) == list(range(20_000))
    assert len(pile) == 0
    assert pile.pool.running() == 0


@pytest.mark.timeout(30)
def test_resizing_up_and_down_while_a_thousand_jobs_run_completes_them_all():
    rng = random.Random(1234)
    hub = get_hub()
    pool = GreenPool(4)
    finished = []
    max_size = 20
    state = {"now": 0, "peak": 0}

    def job(i, delay):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        sleep(delay)
        state["now"] -= 1
        finished.append(i)

    spawned = Event()

    def spawner():
        for i in range(1000):
            pool.spawn(job, i, rng.choice((0, 0, 0.0005, 0.001, 0.002)))
        spawned.send()

    spawn(spawner)
    sizes = [0, 1, 7, 2, 20, 0, 3, 15, 1, 5]
    while not spawned.ready():
        pool.resize(rng.choice(sizes))
        assert pool.running() <= max_size
        sleep(rng.choice((0, 0.001, 0.002)))
    pool.resize(6)
    pool.waitall()
    assert sorted(finished) == list(range(1000))
    assert state["peak"] <= max_size
    assert pool.running() == 0
    assert pool.waiting() == 0
    assert len(hub.ready) == 0


@pytest.mark.timeout(30)
def test_many_green_threads_waiting_on_one_event_all_wake():
    event = Event()
    waiters = [spawn(event.wait) for _ in range(10_000)]
    sleep(0)
    event.send("go")
    assert all(w.wait() == "go" for w in waiters)
