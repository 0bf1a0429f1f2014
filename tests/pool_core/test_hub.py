import logging
import time

import greenlet
import pytest

import pool_core
from pool_core import Event, GreenletExit, LoopExit, sleep, spawn

pytestmark = pytest.mark.usefixtures("quiet_hub")


def test_ready_greenlets_run_in_the_order_they_were_woken(hub):
    order = []
    for i in range(20):
        spawn(order.append, i)
    sleep(0)
    assert order == list(range(20))


def test_wake_while_a_resume_is_pending_does_not_queue_a_second_resume(hub):
    resumes = []

    def parked():
        hub.park()
        resumes.append("first")
        hub.park()
        resumes.append("second")

    g = greenlet.greenlet(parked, hub.greenlet)
    hub.wake(g)
    sleep(0)  # g runs up to its first park
    hub.wake(g)
    hub.wake(g)
    sleep(0)
    sleep(0)
    assert resumes == ["first"]


def test_throw_replaces_a_pending_wake(hub):
    seen = []

    def parked():
        try:
            hub.park()
        except KeyError as exc:
            seen.append(exc)

    g = greenlet.greenlet(parked, hub.greenlet)
    hub.wake(g)
    sleep(0)
    hub.wake(g)
    hub.throw(g, KeyError("boom"))
    sleep(0)
    assert [type(e) for e in seen] == [KeyError]
    assert g.dead


def test_throw_replaces_a_pending_exception_but_never_a_pending_kill(hub):
    seen = []

    def parked():
        for _ in range(2):
            try:
                hub.park()
            except BaseException as exc:
                seen.append(type(exc))

    g = greenlet.greenlet(parked, hub.greenlet)
    hub.wake(g)
    sleep(0)
    hub.throw(g, KeyError())
    hub.throw(g, IndexError())
    sleep(0)
    hub.throw(g, GreenletExit())
    hub.throw(g, IndexError())
    sleep(0)
    assert seen == [IndexError, GreenletExit]


def test_timers_fire_in_deadline_order_not_creation_order(hub):
    fired = []
    done = Event()
    for delay in (0.05, 0.01, 0.04, 0.02, 0.03):
        hub.call_later(delay, fired.append, delay)
    hub.call_later(0.06, done.send)
    done.wait()
    assert fired == [0.01, 0.02, 0.03, 0.04, 0.05]


def test_timers_with_the_same_deadline_fire_in_creation_order(hub, monkeypatch):
    import pool_core.timers as timers_module

    monkeypatch.setattr(timers_module, "_monotonic", lambda: 0.0)
    fired = []
    for i in range(10):
        hub.call_later(0, fired.append, i)
    monkeypatch.undo()
    sleep(0)
    assert fired == list(range(10))


def test_a_cancelled_timer_never_fires(hub):
    fired = []
    timer = hub.call_later(0.01, fired.append, "cancelled")
    hub.call_later(0.02, fired.append, "kept")
    timer.cancel()
    sleep(0.05)
    assert fired == ["kept"]


def test_cancelling_a_timer_twice_or_after_it_fired_is_harmless(hub):
    fired = []
    timer = hub.call_later(0, fired.append, 1)
    sleep(0.01)
    cancelled = hub._timers.cancelled
    timer.cancel()
    assert hub._timers.cancelled == cancelled  # a fired timer is not counted as a cancelled heap entry
    other = hub.call_later(10, fired.append, 2)
    other.cancel()
    other.cancel()
    assert hub._timers.cancelled == cancelled + 1
    assert fired == [1]


@pytest.mark.timeout(10)
def test_cancelling_a_hundred_thousand_timers_is_fast_and_the_heap_compacts(hub):
    before = len(hub._timers.heap)
    timers = [hub.call_later(60, lambda: None) for _ in range(100_000)]
    start = time.perf_counter()
    for timer in timers:
        timer.cancel()
    elapsed = time.perf_counter() - start
    sleep(0)  # one hub turn
    assert elapsed < 1.0  # ~30 ms: removing each entry from the heap instead would take minutes
    assert len(hub._timers.heap) <= before + 300


def test_the_heap_still_fires_live_timers_after_compaction(hub):
    fired = []
    keep = [hub.call_later(0.01 + i / 1000, fired.append, i) for i in range(5)]
    for timer in [hub.call_later(60, lambda: None) for _ in range(5000)]:
        timer.cancel()
    sleep(0.05)
    assert fired == [0, 1, 2, 3, 4]
    assert not any(t.pending for t in keep)


def test_an_exception_escaping_a_green_thread_is_logged_with_its_traceback(caplog):
    def fails():
        raise ZeroDivisionError("bad arithmetic")

    with caplog.at_level(logging.ERROR, logger="pool_core"):
        spawn(fails)
        sleep(0)
    records = [r for r in caplog.records if r.name == "pool_core" and r.exc_info]
    assert records
    assert records[0].exc_info[0] is ZeroDivisionError
    assert "bad arithmetic" in caplog.text
    assert "Traceback" in caplog.text


def test_the_hub_keeps_running_after_a_green_thread_raised(caplog):
    after = []

    def fails():
        raise RuntimeError("oops")

    with caplog.at_level(logging.CRITICAL, logger="pool_core"):
        spawn(fails)
        spawn(after.append, "ran")
        sleep(0.01)
        gt = spawn(lambda: 42)
        assert gt.wait() == 42
    assert after == ["ran"]


def test_an_exception_escaping_a_raw_greenlet_is_logged_and_the_hub_survives(hub, caplog):
    def fails():
        raise ValueError("raw greenlet failed")

    g = greenlet.greenlet(fails, hub.greenlet)
    with caplog.at_level(logging.ERROR, logger="pool_core"):
        hub.wake(g)
        sleep(0)
        assert spawn(lambda: "alive").wait() == "alive"
    assert "raw greenlet failed" in caplog.text


def test_an_exception_in_a_timer_callback_is_logged_and_later_timers_still_fire(hub, caplog):
    fired = []

    def bad():
        raise LookupError("timer callback failed")

    with caplog.at_level(logging.ERROR, logger="pool_core"):
        hub.call_later(0, bad)
        hub.call_later(0.001, fired.append, "later")
        sleep(0.02)
    assert fired == ["later"]
    assert "timer callback failed" in caplog.text


@pytest.mark.timeout(5)
def test_waiting_in_the_main_greenlet_on_something_nothing_can_wake_raises_loop_exit():
    with pytest.raises(LoopExit):
        Event().wait()


@pytest.mark.timeout(5)
def test_the_hub_is_usable_again_after_a_loop_exit():
    with pytest.raises(LoopExit):
        pool_core.Semaphore(0).acquire()
    assert spawn(lambda: "fine").wait() == "fine"


@pytest.mark.timeout(5)
def test_loop_exit_is_not_raised_while_a_timer_could_still_wake_the_waiter(hub):
    event = Event()
    hub.call_later(0.02, event.send, "late")
    assert event.wait() == "late"


def test_there_is_one_hub_per_os_thread():
    import threading

    hubs = []
    t = threading.Thread(target=lambda: hubs.append(pool_core.get_hub()))
    t.start()
    t.join()
    assert pool_core.get_hub() is pool_core.get_hub()
    assert hubs[0] is not pool_core.get_hub()
