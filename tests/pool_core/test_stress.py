import contextlib
import random
import time

import pytest

from pool_core import (
    Empty,
    Event,
    Full,
    GreenletExit,
    GreenPile,
    GreenPool,
    LightQueue,
    Semaphore,
    Timeout,
    get_hub,
    sleep,
    spawn,
)

pytestmark = pytest.mark.usefixtures("quiet_hub")


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


def _queue_with_random_kills(seed):
    rng = random.Random(seed)
    q = LightQueue(rng.choice([0, 1, 2, 5, None]))
    put, got = [], []

    def producer(base):
        for i in range(20):
            try:
                q.put(base * 100 + i, timeout=rng.choice([None, 0.001, 0.005]))
                put.append(base * 100 + i)
            except Full:
                pass
            if rng.random() < 0.3:
                sleep(0)

    def consumer():
        while True:
            with contextlib.suppress(Empty):
                got.append(q.get(timeout=rng.choice([None, 0.001, 0.01])))
            if rng.random() < 0.3:
                sleep(rng.choice([0, 0.001]))

    producers = [spawn(producer, base) for base in range(4)]
    consumers = [spawn(consumer) for _ in range(3)]
    for _ in range(30):
        sleep(rng.choice([0, 0.0005]))
        if rng.random() < 0.3:
            victim = rng.choice(consumers)
            if rng.random() < 0.5:
                time.sleep(0.002)  # blocks the hub: the victim's get timeout may be due as it is killed
            victim.kill()
            assert victim.dead
            consumers.remove(victim)
            consumers.append(spawn(consumer))
    for p in producers:
        p.wait()
    sleep(0.02)
    for c in consumers:
        c.kill()
    assert sorted(got + list(q.queue)) == sorted(put)  # nothing lost, nothing twice
    assert q.getting() == 0
    assert q.putting() == 0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("seed", range(0, 400, 10))
def test_a_queue_loses_and_duplicates_nothing_while_its_getters_are_killed_at_random(seed):
    """This is how a kill lost to a get timeout firing in the same hub turn was found."""
    _queue_with_random_kills(seed)


def _pool_with_random_kills_and_resizes(seed):
    rng = random.Random(seed)
    pool = GreenPool(rng.choice([0, 1, 2, 4]))
    sem = Semaphore(rng.choice([1, 2]))
    spawners, calls = [], []

    def job():
        if rng.random() < 0.5:
            if sem.acquire(timeout=rng.choice([None, 0.001, 0.003])):
                try:
                    sleep(rng.choice([0, 0.0005]))
                finally:
                    sem.release()
        else:
            sleep(rng.choice([0, 0.0005, 0.001]))

    def spawner():
        for _ in range(15):
            calls.append(pool.spawn(job))

    spawners = [spawn(spawner) for _ in range(4)]
    for _ in range(40):
        sleep(rng.choice([0, 0.0003]))
        r = rng.random()
        if r < 0.15:
            pool.resize(rng.choice([0, 1, 2, 5]))
        elif r < 0.3 and calls:
            rng.choice(calls).kill()
        elif r < 0.4:
            rng.choice(spawners).kill()
        elif r < 0.45:
            with Timeout(0.0005, False):
                pool.spawn(job)
    pool.resize(3)
    with Timeout(5):
        pool.waitall()
        for s in spawners:
            with contextlib.suppress(GreenletExit):
                s.wait()
    assert pool.running() == 0
    assert pool.waiting() == 0
    assert sem.balance == sem.counter  # nobody left waiting for a unit
    assert all(c.dead for c in calls)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("seed", range(0, 200, 10))
def test_a_pool_drains_while_spawners_and_calls_are_killed_and_it_is_resized_at_random(seed):
    _pool_with_random_kills_and_resizes(seed)
