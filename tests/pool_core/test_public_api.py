"""What pool_core offers its users beyond the eventlet API: a fresh hub after fork, a quiet-hub check, the live
timers, a green thread's pending exception, wait queues, and a green socket's underlying socket."""

import socket
import threading

import greenlet
import pytest

import pool_core
from pool_core import GreenSocket, WaitQueue, get_hub, reinit_after_fork, sleep, spawn

pytestmark = [pytest.mark.timeout(10), pytest.mark.usefixtures("quiet_hub")]


def in_own_thread(fn):
    """Run `fn` on a new OS thread (which has its own hub) and return its result."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed back to the test
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_hub_with_nothing_to_do_is_quiet(hub):
    sleep(0)
    assert hub.is_quiet()


def test_a_live_timer_makes_the_hub_not_quiet_until_it_is_cancelled(hub):
    timer = hub.call_later(60, lambda: None)
    assert not hub.is_quiet()
    timer.cancel()
    assert hub.is_quiet()


def test_a_ready_green_thread_makes_the_hub_not_quiet(hub):
    gt = spawn(lambda: None)
    assert not hub.is_quiet()
    gt.wait()
    assert hub.is_quiet()


def test_a_green_thread_waiting_on_a_socket_makes_the_hub_not_quiet(hub):
    a, b = socket.socketpair()
    with GreenSocket(a) as green, b:
        reader = spawn(green.recv, 1)
        sleep(0)
        assert not hub.is_quiet()
        b.sendall(b"x")
        assert reader.wait() == b"x"
    assert hub.is_quiet()


def test_timers_lists_the_live_timers_earliest_first(hub):
    late = hub.call_later(50, lambda: None)
    cancelled = hub.call_later(20, lambda: None)
    early = hub.call_later(10, lambda: None)
    cancelled.cancel()
    try:
        assert hub.timers() == [early, late]
    finally:
        early.cancel()
        late.cancel()
    assert hub.timers() == []


def test_pending_exception_tells_a_pending_throw_from_a_plain_wake(hub):
    seen, parked_on = [], []

    def parked():
        parked_on.append(greenlet.getcurrent())
        try:
            hub.park()
        except LookupError as exc:
            seen.append(exc)

    gt = spawn(parked)
    sleep(0)
    (g,) = parked_on
    assert hub.pending_exception(g) is None
    hub.wake(g)
    assert hub.pending_exception(g) is None  # a wake is no exception
    error = LookupError("on its way")
    hub.throw(g, error)
    assert hub.pending_exception(g) is error
    gt.wait()
    assert seen == [error]


def test_reinit_after_fork_gives_the_thread_a_fresh_hub_and_closes_the_old_poller():
    def run():
        assert reinit_after_fork() is True  # no hub yet: nothing was lost
        old = get_hub()
        assert reinit_after_fork() is True  # a quiet hub
        new = get_hub()
        return old, new

    old, new = in_own_thread(run)
    assert new is not old
    assert old._selector.closed


def test_reinit_after_fork_reports_a_hub_that_had_work_pending():
    def run():
        get_hub().call_later(60, lambda: None)
        return reinit_after_fork(), get_hub().timers()

    quiet, timers = in_own_thread(run)
    assert quiet is False
    assert timers == []  # the old hub's timer does not follow into the new one


def test_wait_queue_is_exported_and_wakes_in_arrival_order():
    queue, woken = WaitQueue(), []

    def waiter(name):
        queue.park()
        woken.append(name)

    threads = [spawn(waiter, name) for name in "abc"]
    sleep(0)
    queue.wake_all()
    for gt in threads:
        gt.wait()
    assert woken == ["a", "b", "c"]
    assert pool_core.WaitQueue is WaitQueue


def test_a_green_socket_fd_is_its_underlying_non_blocking_socket():
    a, b = socket.socketpair()
    with GreenSocket(a) as green, b:
        assert green.fd is a
        assert green.fd.getblocking() is False
        b.sendall(b"peek")
        sleep(0.01)
        assert green.fd.recv(4, socket.MSG_PEEK) == b"peek"
        assert green.recv(4) == b"peek"
