import time

import pytest

from pool_core import Empty, Full, GreenletExit, LightQueue, Queue, sleep, spawn

pytestmark = pytest.mark.usefixtures("quiet_hub")


@pytest.fixture(params=[LightQueue, Queue])
def queue_class(request):
    return request.param


def test_items_come_out_in_the_order_they_went_in(queue_class):
    q = queue_class()
    for i in range(5):
        q.put(i)
    assert [q.get() for _ in range(5)] == [0, 1, 2, 3, 4]


def test_get_parks_until_an_item_is_put(queue_class):
    q = queue_class()
    getter = spawn(q.get)
    sleep(0)
    assert not getter.dead
    assert q.getting() == 1
    q.put("item")
    assert getter.wait() == "item"


def test_getters_are_served_in_fifo_order(queue_class):
    q = queue_class()
    getters = [spawn(q.get) for _ in range(3)]
    sleep(0)
    for i in range(3):
        q.put(i)
    assert [g.wait() for g in getters] == [0, 1, 2]


def test_get_with_a_timeout_raises_empty_after_the_timeout(queue_class):
    q = queue_class()
    start = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.05)
    assert 0.045 <= time.monotonic() - start < 1.0
    assert q.getting() == 0


def test_non_blocking_get_on_an_empty_queue_raises_empty(queue_class):
    q = queue_class()
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(Empty):
        q.get_nowait()


def test_put_parks_while_the_queue_is_full(queue_class):
    q = queue_class(1)
    q.put(1)
    assert q.full()
    putter = spawn(q.put, 2)
    sleep(0)
    assert not putter.dead
    assert q.putting() == 1
    assert q.get() == 1
    putter.wait()
    assert q.get() == 2


def test_put_with_a_timeout_raises_full_after_the_timeout(queue_class):
    q = queue_class(1)
    q.put(1)
    start = time.monotonic()
    with pytest.raises(Full):
        q.put(2, timeout=0.05)
    assert 0.045 <= time.monotonic() - start < 1.0
    assert q.qsize() == 1


def test_non_blocking_put_on_a_full_queue_raises_full(queue_class):
    q = queue_class(1)
    q.put_nowait(1)
    with pytest.raises(Full):
        q.put_nowait(2)


def test_an_unbounded_queue_is_never_full(queue_class):
    q = queue_class()
    for i in range(10_000):
        q.put_nowait(i)
    assert not q.full()
    assert q.qsize() == len(q) == 10_000


def test_a_zero_size_queue_is_a_channel_whose_put_waits_for_a_getter(queue_class):
    q = queue_class(0)
    assert q.full()
    putter = spawn(q.put, "handed over")
    sleep(0.01)
    assert not putter.dead
    assert q.qsize() == 0
    assert q.get() == "handed over"
    putter.wait()


def test_a_channel_put_succeeds_at_once_when_a_getter_waits(queue_class):
    q = queue_class(0)
    getter = spawn(q.get)
    sleep(0)
    q.put("direct", block=False)
    assert getter.wait() == "direct"


def test_a_channel_put_without_a_getter_times_out_with_full(queue_class):
    q = queue_class(0)
    with pytest.raises(Full):
        q.put("nobody", timeout=0.02)
    with pytest.raises(Full):
        q.put_nowait("nobody")


@pytest.mark.timeout(5)
def test_a_getter_killed_after_being_woken_passes_the_item_on(queue_class):
    q = queue_class()
    first = spawn(q.get)
    second = spawn(q.get)
    sleep(0)
    q.put("only")
    first.kill()
    assert second.wait() == "only"
    with pytest.raises(GreenletExit):
        first.wait()


@pytest.mark.timeout(5)
def test_a_putter_killed_after_being_woken_passes_the_space_on(queue_class):
    q = queue_class(1)
    q.put("a")
    first = spawn(q.put, "b")
    second = spawn(q.put, "c")
    sleep(0)
    assert q.get() == "a"
    first.kill()
    second.wait()
    assert q.get_nowait() == "c"


def test_growing_a_queue_lets_parked_putters_proceed(queue_class):
    q = queue_class(1)
    q.put(0)
    putters = [spawn(q.put, i) for i in (1, 2)]
    sleep(0)
    q.resize(3)
    sleep(0)
    assert all(p.dead for p in putters)
    assert [q.get_nowait() for _ in range(3)] == [0, 1, 2]


def test_resize_to_none_makes_the_queue_unbounded(queue_class):
    q = queue_class(1)
    q.put(0)
    q.resize(None)
    q.put_nowait(1)
    assert q.maxsize is None


def test_join_returns_once_every_item_is_marked_done():
    q = Queue()
    for i in range(3):
        q.put(i)
    done = []

    def consumer():
        while True:
            item = q.get()
            sleep(0)
            done.append(item)
            q.task_done()

    worker = spawn(consumer)
    assert q.join() is True
    assert done == [0, 1, 2]
    assert q.unfinished_tasks == 0
    worker.kill()


def test_join_on_a_queue_with_nothing_unfinished_returns_at_once():
    assert Queue().join() is True


def test_join_with_a_timeout_returns_false_while_work_is_unfinished():
    q = Queue()
    q.put(1)
    start = time.monotonic()
    assert q.join(timeout=0.05) is False
    assert 0.045 <= time.monotonic() - start < 1.0


@pytest.mark.timeout(5)
def test_join_timeout_is_a_deadline_even_when_new_work_arrives_as_the_count_hits_zero():
    q = Queue()
    q.put("first")

    def timed_join():
        start = time.monotonic()
        return q.join(timeout=0.3), time.monotonic() - start

    joiner = spawn(timed_join)
    sleep(0.2)
    q.get()
    q.task_done()  # wakes the joiner...
    q.put("second")  # ...but there is unfinished work again before it runs
    ok, elapsed = joiner.wait()
    assert ok is False
    assert elapsed < 0.45  # not 0.2 + a fresh 0.3


def test_task_done_called_too_often_is_a_value_error():
    q = Queue()
    q.put(1)
    q.get()
    q.task_done()
    with pytest.raises(ValueError):
        q.task_done()


def test_empty_and_full_are_the_standard_library_exceptions():
    import queue

    assert Empty is queue.Empty
    assert Full is queue.Full


@pytest.mark.timeout(5)
def test_a_kill_is_not_lost_when_the_victims_timed_get_expires_in_the_same_hub_turn(queue_class):
    q = queue_class()
    getter = spawn(q.get, timeout=0.01)
    sleep(0)
    time.sleep(0.03)  # the get's timeout is due, but the hub has not run since
    getter.kill()
    with pytest.raises(GreenletExit):
        getter.wait()
    assert q.getting() == 0


@pytest.mark.timeout(5)
def test_a_getter_whose_timeout_expired_and_was_then_killed_does_not_wake_another_getter(queue_class):
    q = queue_class()
    first = spawn(q.get)
    doomed = spawn(q.get, timeout=0.01)
    third = spawn(q.get)
    sleep(0)
    time.sleep(0.03)
    sleep(0)  # the timeout fires: `doomed` is due to raise Empty...
    doomed.kill()  # ...but is killed first
    sleep(0)
    q.put("a")
    q.put("b")
    assert first.wait() == "a"  # `first` was not woken for nothing and sent to the back of the line
    assert third.wait() == "b"
