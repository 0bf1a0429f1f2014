import logging
import time

import greenlet
import pytest

import pool_core
from pool_core import Event, GreenletExit, Timeout, getcurrent, kill, sleep, spawn, spawn_after, spawn_n

pytestmark = pytest.mark.usefixtures("quiet_hub")


def test_wait_returns_the_result_of_the_call():
    assert spawn(lambda a, b=0: a + b, 2, b=3).wait() == 5


def test_wait_raises_the_exception_of_the_call():
    def fails():
        raise KeyError("missing")

    gt = spawn(fails)
    with pytest.raises(KeyError, match="missing"):
        gt.wait()


def test_a_spawned_call_does_not_start_until_the_spawner_yields():
    started = []
    gt = spawn(started.append, 1)
    assert started == []
    assert not gt.dead
    sleep(0)
    assert started == [1]
    assert gt.dead


def test_several_green_threads_can_wait_for_the_same_result():
    release = Event()
    target = spawn(release.wait)
    waiters = [spawn(target.wait) for _ in range(3)]
    sleep(0)
    release.send("shared")
    assert [w.wait() for w in waiters] == ["shared"] * 3


def test_a_link_is_called_with_the_green_thread_and_its_extra_arguments():
    calls = []
    gt = spawn(lambda: "r")
    gt.link(lambda g, *a, **k: calls.append((g, a, k)), 1, 2, key="v")
    gt.wait()
    assert calls == [(gt, (1, 2), {"key": "v"})]


def test_links_run_in_the_order_they_were_added():
    calls = []
    gt = spawn(sleep, 0)
    for i in range(5):
        gt.link(lambda g, i=i: calls.append(i))
    gt.wait()
    assert calls == [0, 1, 2, 3, 4]


def test_linking_to_a_dead_green_thread_calls_the_link_at_once():
    gt = spawn(lambda: None)
    gt.wait()
    calls = []
    gt.link(calls.append)
    assert calls == [gt]


def test_a_link_sees_the_result_through_wait():
    seen = []
    gt = spawn(lambda: "value")
    gt.link(lambda g: seen.append(g.wait()))
    gt.wait()
    assert seen == ["value"]


def test_unlink_removes_a_link_so_it_is_never_called():
    calls = []

    def link(g, tag):
        calls.append(tag)

    gt = spawn(sleep, 0)
    gt.link(link, "a")
    gt.link(link, "b")
    assert gt.unlink(link, "a") is True
    assert gt.unlink(link, "a") is False
    gt.wait()
    assert calls == ["b"]


def test_a_failing_link_is_logged_and_the_other_links_still_run(caplog):
    calls = []

    def bad(g):
        raise ValueError("bad link")

    gt = spawn(lambda: None)
    gt.link(bad)
    gt.link(calls.append)
    with caplog.at_level(logging.ERROR, logger="pool_core"):
        gt.wait()
    assert calls == [gt]
    assert "bad link" in caplog.text


def test_killing_a_green_thread_that_has_not_started_stops_it_from_ever_running():
    ran = []
    gt = spawn(ran.append, 1)
    gt.kill()
    sleep(0.01)
    assert ran == []
    assert gt.dead
    with pytest.raises(GreenletExit):
        gt.wait()


def test_killing_a_running_green_thread_makes_wait_raise_greenlet_exit():
    reached = []

    def body():
        sleep(10)
        reached.append("end")

    gt = spawn(body)
    sleep(0)
    kill(gt)
    assert gt.dead
    with pytest.raises(GreenletExit):
        gt.wait()
    assert reached == []


def test_kill_returns_after_the_killed_call_ran_its_cleanup():
    cleaned = []

    def body():
        try:
            sleep(10)
        finally:
            cleaned.append("cleanup")

    gt = spawn(body)
    sleep(0)
    gt.kill()
    assert cleaned == ["cleanup"]


def test_kill_with_a_custom_exception_class_or_instance():
    gt1 = spawn(sleep, 10)
    gt2 = spawn(sleep, 10)
    sleep(0)
    gt1.kill(KeyError, "by class")
    gt2.kill(IndexError("by instance"))
    with pytest.raises(KeyError, match="by class"):
        gt1.wait()
    with pytest.raises(IndexError, match="by instance"):
        gt2.wait()


def test_killing_a_dead_green_thread_does_nothing():
    gt = spawn(lambda: 7)
    assert gt.wait() == 7
    gt.kill()
    assert gt.wait() == 7


def test_a_green_thread_killing_itself_raises_in_itself():
    after = []

    def body():
        getcurrent().kill()
        after.append("not reached")

    gt = spawn(body)
    with pytest.raises(GreenletExit):
        gt.wait()
    assert after == []


def test_a_kill_reaching_a_waiter_removes_it_from_the_waited_on_green_thread():
    release = Event()
    target = spawn(release.wait)
    waiter = spawn(target.wait)
    sleep(0)
    waiter.kill()
    release.send("done")
    assert target.wait() == "done"
    with pytest.raises(GreenletExit):
        waiter.wait()


def test_cancel_before_start_stops_the_call():
    ran = []
    gt = spawn(ran.append, 1)
    gt.cancel()
    sleep(0.01)
    assert ran == []
    with pytest.raises(GreenletExit):
        gt.wait()


def test_cancel_after_start_leaves_the_call_running():
    release = Event()
    gt = spawn(release.wait)
    sleep(0)
    gt.cancel()
    release.send("still ran")
    assert gt.wait() == "still ran"


def test_dead_is_false_while_running_and_true_after():
    release = Event()
    gt = spawn(release.wait)
    sleep(0)
    assert not gt.dead
    assert not gt.ready()
    release.send()
    gt.wait()
    assert gt.dead
    assert gt.ready()


def test_spawn_after_starts_the_call_after_the_delay():
    start = time.monotonic()
    gt = spawn_after(0.05, time.monotonic)
    started_at = gt.wait()
    assert 0.045 <= started_at - start < 1.0


def test_spawn_after_cancelled_before_it_fires_never_runs():
    ran = []
    gt = spawn_after(0.02, ran.append, 1)
    gt.cancel()
    sleep(0.05)
    assert ran == []
    assert gt.dead


def test_spawn_after_killed_before_it_fires_never_runs():
    ran = []
    gt = spawn_after(0.02, ran.append, 1)
    gt.kill()
    sleep(0.05)
    assert ran == []
    with pytest.raises(GreenletExit):
        gt.wait()


def test_spawn_n_runs_the_call_without_returning_a_handle():
    done = Event()
    assert spawn_n(done.send, "ran") is None
    assert done.wait() == "ran"


def test_an_exception_raised_by_a_spawn_n_call_is_logged(caplog):
    def fails():
        raise OSError("spawn_n failure")

    with caplog.at_level(logging.ERROR, logger="pool_core"):
        spawn_n(fails)
        sleep(0)
    assert "spawn_n failure" in caplog.text


def test_sleep_zero_interleaves_runnable_green_threads():
    trace = []

    def worker(name):
        for i in range(3):
            trace.append((name, i))
            sleep(0)

    a, b = spawn(worker, "a"), spawn(worker, "b")
    a.wait()
    b.wait()
    assert trace == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]


def test_sleep_parks_for_about_the_given_time():
    start = time.monotonic()
    sleep(0.05)
    assert 0.045 <= time.monotonic() - start < 1.0


def test_getcurrent_returns_the_green_thread_inside_its_call():
    gt = spawn(getcurrent)
    assert gt.wait() is gt


def test_getcurrent_returns_the_right_handle_for_each_call_on_a_reused_worker():
    handles = [spawn(getcurrent) for _ in range(3)]
    for gt in handles:
        assert gt.wait() is gt
    again = spawn(getcurrent)
    assert again.wait() is again


def test_getcurrent_outside_any_green_thread_is_the_bare_greenlet():
    assert getcurrent() is greenlet.getcurrent()


def test_a_green_thread_cannot_wait_for_itself():
    gt = spawn(lambda: getcurrent().wait())
    with pytest.raises(RuntimeError):
        gt.wait()


@pytest.mark.timeout(5)
def test_a_timeout_left_armed_after_its_call_ended_does_not_hit_the_next_call_on_the_worker():
    workers = []

    def leaves_a_timeout_armed():
        workers.append(greenlet.getcurrent())
        Timeout(0.02)  # never cancelled
        return "first"

    assert spawn(leaves_a_timeout_armed).wait() == "first"

    def next_call():
        workers.append(greenlet.getcurrent())
        sleep(0.1)  # the first call's timer fires meanwhile
        return "second"

    assert spawn(next_call).wait() == "second"
    assert workers[0] is workers[1]


@pytest.mark.timeout(5)
def test_a_kill_after_the_call_ended_does_not_hit_the_next_call_on_the_worker():
    first = spawn(lambda: "first")
    first.wait()
    second = spawn(sleep, 0.05)
    sleep(0)
    first.kill()
    assert second.wait() is None
    assert second._exc is None


def test_green_thread_repr_mentions_its_state():
    gt = spawn(lambda: None)
    assert "not started" in repr(gt)
    gt.wait()
    assert "dead" in repr(gt)


def test_worker_greenlets_are_reused_from_one_call_to_the_next():
    workers = set()
    for _ in range(3):
        handles = [spawn(lambda: workers.add(greenlet.getcurrent())) for _ in range(100)]
        for gt in handles:
            gt.wait()
    assert len(workers) <= 100


def test_the_module_level_names_match_eventlet():
    for name in ("spawn", "spawn_n", "spawn_after", "sleep", "kill", "getcurrent", "GreenThread"):
        assert hasattr(pool_core, name)


@pytest.mark.timeout(5)
def test_a_kill_is_not_lost_when_a_timeout_of_the_victim_fires_in_the_same_hub_turn():
    def body():
        try:
            with Timeout(0.01):
                sleep(1)
        except Timeout:
            return "survived the kill"

    gt = spawn(body)
    sleep(0)
    time.sleep(0.03)  # the Timeout is due, but the hub has not run since
    gt.kill()
    with pytest.raises(GreenletExit):
        gt.wait()
