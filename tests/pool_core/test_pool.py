import itertools
import time

import pytest

from pool_core import Event, GreenletExit, GreenPool, LoopExit, getcurrent, sleep, spawn, spawn_n
from pool_core.pool import WaitallInPoolError

pytestmark = pytest.mark.usefixtures("quiet_hub")


class Gate:
    """Calls that park until the test opens the gate, counting how many run at once."""

    def __init__(self):
        self.event = Event()
        self.active = 0
        self.peak = 0

    def call(self, value=None):
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            self.event.wait()
        finally:
            self.active -= 1
        return value

    def open(self):
        self.event.send()


@pytest.fixture
def gate():
    gate = Gate()
    yield gate
    if not gate.event.ready():
        gate.open()
    sleep(0)


# -- construction -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "expected"), [(1e3, 1000), ("3", 3), (2.7, 2), (True, 1), (0, 0)])
def test_the_size_is_int_of_the_argument_as_in_eventlet(size, expected):
    assert GreenPool(size).size == expected


@pytest.mark.parametrize("size", ["foo", None, object(), float("inf"), float("nan")])
def test_a_size_that_int_cannot_convert_is_a_type_error(size):
    with pytest.raises(TypeError):
        GreenPool(size)


def test_a_negative_size_is_a_value_error():
    with pytest.raises(ValueError):
        GreenPool(-1)


def test_resizing_to_an_invalid_size_is_refused_and_keeps_the_old_size():
    pool = GreenPool(3)
    with pytest.raises(TypeError):
        pool.resize("two")
    with pytest.raises(ValueError):
        pool.resize(-2)
    assert pool.size == 3


def test_resize_takes_int_of_its_argument():
    pool = GreenPool(3)
    pool.resize(5.0)
    assert pool.size == 5


def test_the_default_size_is_a_thousand():
    assert GreenPool().size == 1000


# -- spawning -----------------------------------------------------------------------------------------
def test_spawn_returns_a_green_thread_with_the_result():
    pool = GreenPool(2)
    assert pool.spawn(lambda a, b: a * b, 6, b=7).wait() == 42


def test_spawn_n_runs_the_call_and_returns_none():
    pool = GreenPool(2)
    done = Event()
    assert pool.spawn_n(done.send, "ran") is None
    assert done.wait() == "ran"


@pytest.mark.timeout(10)
def test_ten_calls_of_a_fifth_of_a_second_in_a_pool_of_five_take_about_two_rounds():
    pool = GreenPool(5)
    start = time.monotonic()
    for _ in range(10):
        pool.spawn(sleep, 0.2)
    pool.waitall()
    assert 0.35 <= time.monotonic() - start <= 0.9


def test_no_more_than_size_calls_run_at_once(gate):
    pool = GreenPool(3)
    threads = []
    spawner = spawn(lambda: threads.extend(pool.spawn(gate.call) for _ in range(10)))
    sleep(0.01)
    assert gate.active == 3
    gate.open()
    spawner.wait()
    pool.waitall()
    assert gate.peak == 3
    assert len(threads) == 10


def test_spawn_parks_while_the_pool_is_full(gate):
    pool = GreenPool(1)
    pool.spawn(gate.call)
    spawner = spawn(pool.spawn, lambda: "second")
    sleep(0.01)
    assert not spawner.dead
    assert pool.waiting() == 1
    gate.open()
    assert spawner.wait().wait() == "second"
    assert pool.waiting() == 0


def test_blocked_spawners_start_in_the_order_they_blocked(gate):
    pool = GreenPool(1)
    pool.spawn(gate.call)
    order = []
    spawners = [spawn(pool.spawn, order.append, i) for i in range(5)]
    sleep(0)
    gate.open()
    for s in spawners:
        s.wait().wait()
    assert order == [0, 1, 2, 3, 4]


@pytest.mark.timeout(5)
def test_spawn_from_inside_the_pool_when_full_runs_the_call_inline():
    pool = GreenPool(1)

    def outer():
        inner = pool.spawn(lambda: "inner result")
        return inner.dead, inner.wait()

    assert pool.spawn(outer).wait() == (True, "inner result")
    assert pool.running() == 0


@pytest.mark.timeout(5)
def test_an_inline_call_that_raises_keeps_the_exception_in_its_green_thread():
    pool = GreenPool(1)

    def fails():
        raise KeyError("inline")

    def outer():
        inner = pool.spawn(fails)
        with pytest.raises(KeyError):
            inner.wait()
        return "outer survived"

    assert pool.spawn(outer).wait() == "outer survived"


@pytest.mark.timeout(5)
def test_spawn_from_a_spawn_n_green_thread_into_a_full_pool_parks(gate):
    pool = GreenPool(1)
    pool.spawn(gate.call)
    done = Event()
    spawn_n(lambda: done.send(pool.spawn(lambda: "after").wait()))
    sleep(0.01)
    assert pool.waiting() == 1
    gate.open()
    assert done.wait() == "after"


@pytest.mark.timeout(5)
def test_spawn_into_a_full_pool_from_another_pools_green_thread_parks_instead_of_running_inline(gate):
    pool, other = GreenPool(1), GreenPool(1)
    pool.spawn(gate.call)
    inner = []

    def outer():
        inner.append(pool.spawn(lambda: "inner"))

    outer_gt = other.spawn(outer)
    sleep(0.01)
    assert inner == []
    assert pool.waiting() == 1
    gate.open()
    outer_gt.wait()
    assert inner[0].wait() == "inner"


@pytest.mark.timeout(5)
def test_waitall_from_inside_one_of_the_pools_green_threads_is_an_assertion_and_a_runtime_error():
    pool = GreenPool(2)
    gt = pool.spawn(pool.waitall)
    with pytest.raises(WaitallInPoolError) as raised:
        gt.wait()
    assert isinstance(raised.value, AssertionError)
    assert isinstance(raised.value, RuntimeError)


@pytest.mark.timeout(5)
def test_waitall_from_a_spawn_n_green_thread_waits_for_the_pool():
    pool = GreenPool(2)
    pool.spawn(sleep, 0.02)
    done = Event()
    spawn_n(lambda: (pool.waitall(), done.send(pool.running())))
    assert done.wait() == 0


def test_waitall_on_an_empty_pool_returns_at_once():
    GreenPool(3).waitall()


def test_waitall_waits_for_every_call():
    pool = GreenPool(5)
    done = []
    for i in range(12):
        pool.spawn(lambda i=i: (sleep(0.001 * (i % 4)), done.append(i)))
    pool.waitall()
    assert sorted(done) == list(range(12))
    assert pool.running() == 0


def test_a_call_that_raises_frees_its_slot():
    pool = GreenPool(1)

    def fails():
        raise ValueError("fails")

    gt = pool.spawn(fails)
    with pytest.raises(ValueError):
        gt.wait()
    assert pool.free() == 1
    assert pool.spawn(lambda: "next").wait() == "next"


def test_killing_a_call_frees_its_slot(gate):
    pool = GreenPool(1)
    gt = pool.spawn(gate.call)
    sleep(0)
    gt.kill()
    assert pool.running() == 0
    assert pool.spawn(lambda: "next").wait() == "next"


def test_killing_a_call_before_it_started_frees_its_slot():
    pool = GreenPool(1)
    ran = []
    gt = pool.spawn(ran.append, 1)
    gt.kill()
    assert pool.running() == 0
    pool.waitall()
    assert ran == []


# -- counters -----------------------------------------------------------------------------------------
def test_running_counts_calls_spawned_and_not_yet_ended(gate):
    pool = GreenPool(4)
    assert pool.running() == 0
    for _ in range(3):
        pool.spawn(gate.call)
    assert pool.running() == 3
    assert pool.free() == 1
    gate.open()
    pool.waitall()
    assert pool.running() == 0
    assert pool.free() == 4


def test_waiting_counts_spawners_parked_for_a_slot(gate):
    pool = GreenPool(1)
    pool.spawn(gate.call)
    for _ in range(3):
        spawn(pool.spawn, lambda: None)
    sleep(0)
    assert pool.waiting() == 3
    gate.open()
    pool.waitall()
    assert pool.waiting() == 0


# -- resizing -----------------------------------------------------------------------------------------
def test_free_goes_negative_after_a_shrink_until_work_drains():
    pool = GreenPool(4)
    release = [Event() for _ in range(4)]
    for event in release:
        pool.spawn(event.wait)
    pool.resize(1)
    assert pool.free() == -3
    release[0].send()
    release[1].send()
    sleep(0)
    assert pool.free() == -1
    release[2].send()
    release[3].send()
    pool.waitall()
    assert pool.free() == 1


def test_a_shrunk_pool_starts_nothing_new_until_below_its_new_size(gate):
    pool = GreenPool(3)
    for _ in range(3):
        pool.spawn(gate.call)
    pool.resize(1)
    started = []
    spawner = spawn(pool.spawn, started.append, "new")
    sleep(0.01)
    assert started == []
    gate.open()
    spawner.wait().wait()
    assert started == ["new"]


def test_resize_to_zero_pauses_new_starts(gate):
    pool = GreenPool(2)
    pool.resize(0)
    started = []
    spawner = spawn(pool.spawn, started.append, "paused")
    sleep(0.02)
    assert started == []
    assert pool.waiting() == 1
    pool.resize(1)
    spawner.wait().wait()
    assert started == ["paused"]


def test_running_calls_continue_after_resize_to_zero():
    pool = GreenPool(2)
    release = Event()
    gt = pool.spawn(release.wait)
    pool.resize(0)
    release.send("finished")
    assert gt.wait() == "finished"


def test_growing_a_pool_wakes_blocked_spawners_at_once(gate):
    """eventlet leaves them parked until a running call ends; pool_core starts them right away."""
    pool = GreenPool(1)
    pool.spawn(gate.call)
    started = []
    spawners = [spawn(pool.spawn, started.append, i) for i in range(3)]
    sleep(0)
    assert pool.waiting() == 3
    pool.resize(4)
    sleep(0)
    sleep(0)
    assert started == [0, 1, 2]
    assert gate.active == 1  # the first call is still running
    assert all(s.dead for s in spawners)


def test_growing_a_pool_wakes_only_as_many_spawners_as_there_are_free_slots(gate):
    pool = GreenPool(1)
    pool.spawn(gate.call)
    for _ in range(5):
        spawn(pool.spawn, gate.call)
    sleep(0)
    pool.resize(3)
    sleep(0)
    sleep(0)
    assert pool.running() == 3
    assert pool.waiting() == 3


@pytest.mark.timeout(5)
def test_waitall_returns_only_after_work_started_by_spawners_that_were_blocked(gate):
    """eventlet's waitall can hang (or return early) here; pool_core waits for that work too."""
    pool = GreenPool(1)
    pool.spawn(gate.call)
    finished = []

    def late(i):
        sleep(0.01)
        finished.append(i)

    for i in range(3):
        spawn(pool.spawn, late, i)
    sleep(0)
    spawn(gate.open)
    pool.waitall()
    assert finished == [0, 1, 2]
    assert pool.running() == 0
    assert pool.waiting() == 0


@pytest.mark.timeout(5)
def test_waitall_returns_when_the_last_blocked_spawner_is_killed():
    pool = GreenPool(0)
    spawner = spawn(pool.spawn, lambda: None)
    sleep(0)
    assert pool.waiting() == 1
    waiter = spawn(pool.waitall)
    sleep(0)
    spawner.kill()
    assert pool.waiting() == 0
    waiter.wait()


@pytest.mark.timeout(5)
def test_a_killed_blocked_spawner_passes_its_slot_to_the_next_one(gate):
    pool = GreenPool(1)
    pool.spawn(gate.call)
    first = spawn(pool.spawn, lambda: "first")
    second = spawn(pool.spawn, lambda: "second")
    sleep(0)
    gate.open()
    sleep(0)  # the call ends, its slot goes to `first`...
    first.kill()  # ...which is killed before it can take it
    with pytest.raises(GreenletExit):
        first.wait()
    assert second.wait().wait() == "second"


@pytest.mark.timeout(5)
def test_waitall_with_a_paused_pool_and_a_blocked_spawner_cannot_return():
    pool = GreenPool(0)
    spawn(pool.spawn, lambda: None)
    sleep(0)
    with pytest.raises(LoopExit):
        pool.waitall()


# -- imap and starmap ---------------------------------------------------------------------------------
def test_imap_yields_results_in_input_order_whatever_the_finishing_order():
    pool = GreenPool(4)

    def slow_first(i):
        sleep(0.005 * (5 - i))
        return i * 10

    assert list(pool.imap(slow_first, range(5))) == [0, 10, 20, 30, 40]


def test_imap_with_several_iterables_stops_at_the_shortest():
    pool = GreenPool(3)
    assert list(pool.imap(lambda a, b: a + b, [1, 2, 3, 4], [10, 20, 30])) == [11, 22, 33]
    assert list(pool.imap(lambda a, b: (a, b), range(100), "ab")) == [(0, "a"), (1, "b")]


def test_imap_of_an_empty_iterable_yields_nothing():
    assert list(GreenPool(2).imap(lambda x: x, [])) == []


@pytest.mark.timeout(5)
def test_imap_is_lazy_and_does_not_consume_an_infinite_iterator():
    pool = GreenPool(4)
    drawn = []

    def numbers():
        for i in itertools.count():
            drawn.append(i)
            yield i

    results = pool.imap(lambda x: x * x, numbers())
    assert list(itertools.islice(results, 10)) == [i * i for i in range(10)]
    sleep(0.01)
    assert len(drawn) <= 10 + 2 * pool.size + 2


@pytest.mark.timeout(10)
def test_imap_keeps_at_most_pool_size_calls_running_for_a_long_input():
    pool = GreenPool(5)
    counter = {"now": 0, "peak": 0}

    def call(i):
        counter["now"] += 1
        counter["peak"] = max(counter["peak"], counter["now"])
        sleep(0)
        counter["now"] -= 1
        return i

    total = 0
    for result in pool.imap(call, range(2000)):
        total += result
    assert total == sum(range(2000))
    assert counter["peak"] <= 5


@pytest.mark.timeout(10)
def test_imap_holds_a_bounded_number_of_unconsumed_results_when_the_consumer_is_slow():
    pool = GreenPool(3)
    drawn = []

    def numbers():
        for i in range(1000):
            drawn.append(i)
            yield i

    results = pool.imap(lambda x: x, numbers())
    assert next(results) == 0
    sleep(0.02)  # give the producer every chance to run ahead
    assert len(drawn) <= 2 * pool.size + 2
    assert list(results) == list(range(1, 1000))


def test_imap_raises_a_calls_exception_at_its_position():
    pool = GreenPool(3)

    def call(i):
        if i == 2:
            raise ValueError("two")
        return i

    results = pool.imap(call, range(5))
    assert next(results) == 0
    assert next(results) == 1
    with pytest.raises(ValueError, match="two"):
        next(results)
    assert list(results) == [3, 4]


def test_imap_raises_an_error_of_the_input_iterable_after_the_results_before_it():
    pool = GreenPool(3)

    def numbers():
        yield 1
        yield 2
        raise LookupError("input failed")

    results = pool.imap(lambda x: x, numbers())
    assert next(results) == 1
    assert next(results) == 2
    with pytest.raises(LookupError):
        next(results)


def test_imap_through_a_pool_of_size_zero_makes_no_progress_until_resized():
    pool = GreenPool(0)
    results = pool.imap(lambda x: x + 1, range(3))
    sleep(0.01)
    assert pool.waiting() == 1
    pool.resize(2)
    assert list(results) == [1, 2, 3]


def test_starmap_unpacks_each_argument_tuple():
    pool = GreenPool(2)
    assert list(pool.starmap(lambda a, b: a - b, [(5, 1), (10, 3), (7, 7)])) == [4, 7, 0]


def test_imap_without_a_function_yields_the_argument_tuples():
    pool = GreenPool(3)
    assert list(pool.imap(None, range(3))) == [(0,), (1,), (2,)]
    assert list(pool.imap(None, [1, 2, 3], "ab")) == [(1, "a"), (2, "b")]


def test_starmap_without_a_function_yields_each_argument_tuple():
    pool = GreenPool(3)
    assert list(pool.starmap(None, [(1, 2), [3], ()])) == [(1, 2), (3,), ()]


def test_the_imap_iterator_has_eventlets_next_method():
    results = GreenPool(2).imap(lambda x: x + 1, [1])
    assert results.next() == 2
    with pytest.raises(StopIteration):
        results.next()


def test_starmap_yields_in_input_order():
    pool = GreenPool(3)

    def call(delay, value):
        sleep(delay)
        return value

    assert list(pool.starmap(call, [(0.03, "a"), (0.01, "b"), (0.02, "c")])) == ["a", "b", "c"]


def test_imap_can_be_used_from_inside_a_pool_green_thread():
    pool = GreenPool(2)

    def outer():
        return list(pool.imap(lambda x: x * 2, range(5)))

    assert pool.spawn(outer).wait() == [0, 2, 4, 6, 8]


def test_getcurrent_inside_a_pooled_call_is_its_green_thread():
    pool = GreenPool(2)
    gt = pool.spawn(getcurrent)
    assert gt.wait() is gt


def _endless(closed):
    try:
        yield from itertools.count()
    finally:
        closed.append(True)


@pytest.mark.timeout(5)
def test_dropping_an_unfinished_imap_iterator_stops_its_producer():
    pool = GreenPool(3)
    closed = []
    results = pool.imap(lambda x: x, _endless(closed))
    assert next(results) == 0
    del results
    sleep(0.01)
    assert closed == [True]  # the producer ended and released the input iterator
    pool.waitall()
    assert pool.running() == 0


@pytest.mark.timeout(5)
def test_breaking_out_of_an_imap_loop_stops_its_producer():
    pool = GreenPool(2)
    closed = []
    for result in pool.imap(lambda x: x * 2, _endless(closed)):
        if result >= 10:
            break
    sleep(0.01)
    assert closed == [True]


@pytest.mark.timeout(5)
def test_close_stops_an_imap_producer_and_keeps_the_calls_already_spawned():
    pool = GreenPool(2)
    closed = []
    results = pool.imap(lambda x: x, _endless(closed))
    assert next(results) == 0
    results.close()
    sleep(0.01)
    assert closed == [True]
    rest = list(results)
    assert rest == list(range(1, len(rest) + 1))
    assert len(rest) <= 2 * pool.size + 2
