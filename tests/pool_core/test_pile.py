import pytest

from pool_core import Event, GreenPile, GreenPool, sleep, spawn

pytestmark = pytest.mark.usefixtures("quiet_hub")


def delayed(delay, value):
    sleep(delay)
    return value


def test_results_come_in_completion_order_fastest_first():
    pile = GreenPile(10)
    for delay, value in [(0.04, "slow"), (0.0, "instant"), (0.02, "medium"), (0.01, "quick")]:
        pile.spawn(delayed, delay, value)
    assert list(pile) == ["instant", "quick", "medium", "slow"]


def test_next_raises_stop_iteration_when_nothing_is_outstanding():
    pile = GreenPile(2)
    with pytest.raises(StopIteration):
        pile.next()
    pile.spawn(lambda: 1)
    assert pile.next() == 1
    with pytest.raises(StopIteration):
        next(pile)


def test_next_parks_until_a_result_is_ready():
    pile = GreenPile(2)
    release = Event()
    pile.spawn(release.wait)
    taker = spawn(pile.next)
    sleep(0.01)
    assert not taker.dead
    release.send("ready now")
    assert taker.wait() == "ready now"


def test_len_counts_results_not_yet_taken():
    pile = GreenPile(5)
    release = Event()
    assert len(pile) == 0
    pile.spawn(lambda: "fast")
    pile.spawn(release.wait)
    assert len(pile) == 2
    assert pile.next() == "fast"
    assert len(pile) == 1
    release.send("slow")
    sleep(0)
    assert len(pile) == 1  # finished but not taken
    assert pile.next() == "slow"
    assert len(pile) == 0


def test_an_exception_is_raised_when_its_result_is_taken():
    pile = GreenPile(3)

    def fails():
        sleep(0.01)
        raise KeyError("second to finish")

    pile.spawn(delayed, 0, "first")
    pile.spawn(fails)
    pile.spawn(delayed, 0.03, "third")
    assert pile.next() == "first"
    with pytest.raises(KeyError, match="second to finish"):
        pile.next()
    assert pile.next() == "third"


def test_spawning_after_iteration_started_adds_to_the_pile():
    pile = GreenPile(3)
    pile.spawn(lambda: 1)
    assert next(pile) == 1
    pile.spawn(lambda: 2)
    assert list(pile) == [2]


def test_a_pile_bounds_concurrency_by_its_pool_size():
    pile = GreenPile(2)
    counter = {"now": 0, "peak": 0}

    def call(i):
        counter["now"] += 1
        counter["peak"] = max(counter["peak"], counter["now"])
        sleep(0.001)
        counter["now"] -= 1
        return i

    producer = spawn(lambda: [pile.spawn(call, i) for i in range(10)])
    sleep(0)
    results = sorted(pile)
    producer.wait()
    results += sorted(pile)
    assert sorted(results) == list(range(10))
    assert counter["peak"] == 2


def test_a_pile_can_use_an_existing_pool():
    pool = GreenPool(3)
    pile = GreenPile(pool)
    assert pile.pool is pool
    pile.spawn(lambda: "via the pool")
    assert pool.running() == 1
    assert list(pile) == ["via the pool"]
    assert pool.running() == 0


def test_several_piles_share_one_pool_and_each_gets_only_its_own_results():
    pool = GreenPool(2)
    evens, odds = GreenPile(pool), GreenPile(pool)
    spawners = [
        spawn(lambda: [evens.spawn(delayed, 0.001, i) for i in range(0, 10, 2)]),
        spawn(lambda: [odds.spawn(delayed, 0.001, i) for i in range(1, 10, 2)]),
    ]
    sleep(0)
    for s in spawners:
        s.wait()
    assert sorted(evens) == [0, 2, 4, 6, 8]
    assert sorted(odds) == [1, 3, 5, 7, 9]
    assert pool.running() == 0


def test_the_default_pile_has_a_pool_of_a_thousand():
    assert GreenPile().pool.size == 1000


def test_used_becomes_true_after_the_first_spawn():
    pile = GreenPile(1)
    assert not pile.used
    pile.spawn(lambda: None)
    assert pile.used
    list(pile)


def test_spawn_returns_the_green_thread_of_the_call():
    pile = GreenPile(1)
    gt = pile.spawn(lambda: "x")
    assert gt.wait() == "x"
    assert list(pile) == ["x"]


def test_a_pile_spawning_from_inside_its_full_pool_still_collects_the_inline_result():
    pool = GreenPool(1)
    pile = GreenPile(pool)

    def outer():
        pile.spawn(lambda: "inline")
        return "outer"

    pile.spawn(outer)
    assert sorted(pile) == ["inline", "outer"]
