import time

import pytest

from pool_core import Event, GreenletExit, sleep, spawn

pytestmark = pytest.mark.usefixtures("quiet_hub")


def test_wait_returns_the_value_sent():
    event = Event()
    spawn(event.send, "value")
    assert event.wait() == "value"


def test_wait_after_send_returns_at_once():
    event = Event()
    event.send(3)
    assert event.wait() == 3
    assert event.wait() == 3


def test_every_waiter_receives_the_value():
    event = Event()
    waiters = [spawn(event.wait) for _ in range(5)]
    sleep(0)
    event.send("all")
    assert [w.wait() for w in waiters] == ["all"] * 5


def test_send_exception_with_an_instance_raises_it_in_waiters():
    event = Event()
    waiter = spawn(event.wait)
    sleep(0)
    event.send_exception(KeyError("sent"))
    with pytest.raises(KeyError, match="sent"):
        waiter.wait()
    with pytest.raises(KeyError):
        event.wait()


def test_send_exception_with_a_class_and_argument():
    event = Event()
    event.send_exception(ValueError, "from class")
    with pytest.raises(ValueError, match="from class"):
        event.wait()
    assert event.has_exception()
    assert not event.has_result()


def test_wait_with_a_timeout_returns_none_when_nothing_is_sent():
    event = Event()
    start = time.monotonic()
    assert event.wait(0.05) is None
    assert 0.045 <= time.monotonic() - start < 1.0
    assert not event.ready()


def test_wait_with_a_timeout_returns_the_value_sent_in_time():
    event = Event()
    spawn(event.send, "in time")
    assert event.wait(5) == "in time"


def test_ready_is_true_only_after_send():
    event = Event()
    assert not event.ready()
    event.send(None)
    assert event.ready()
    assert event.has_result()


def test_sending_twice_without_reset_is_an_assertion_error():
    event = Event()
    event.send(1)
    with pytest.raises(AssertionError):
        event.send(2)


def test_reset_makes_the_event_sendable_again():
    event = Event()
    event.send(1)
    event.reset()
    assert not event.ready()
    event.send(2)
    assert event.wait() == 2


def test_resetting_a_fresh_event_is_an_assertion_error():
    with pytest.raises(AssertionError):
        Event().reset()


def test_a_waiter_woken_by_a_send_gets_that_value_even_if_the_event_is_reset_before_it_runs():
    event = Event()
    waiter = spawn(event.wait)
    sleep(0)
    event.send("before reset")
    event.reset()
    assert waiter.wait() == "before reset"


def test_waiters_keep_waiting_across_a_reset_without_send():
    event = Event()
    event.send(1)
    event.reset()
    waiter = spawn(event.wait)
    sleep(0.01)
    assert not waiter.dead
    event.send(2)
    assert waiter.wait() == 2


def test_poll_returns_notready_until_sent():
    event = Event()
    assert event.poll("nothing") == "nothing"
    event.send("something")
    assert event.poll("nothing") == "something"


def test_a_killed_waiter_does_not_stop_the_others_receiving_the_value():
    event = Event()
    doomed = spawn(event.wait)
    survivor = spawn(event.wait)
    sleep(0)
    doomed.kill()
    event.send("kept")
    assert survivor.wait() == "kept"
    with pytest.raises(GreenletExit):
        doomed.wait()
