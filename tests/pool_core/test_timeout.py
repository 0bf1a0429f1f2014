import time

import pytest

from pool_core import Event, GreenletExit, Timeout, sleep, spawn, with_timeout

pytestmark = pytest.mark.usefixtures("quiet_hub")


class Custom(Exception):
    pass


def test_a_timeout_raises_itself_in_the_green_thread_that_created_it():
    timeout = Timeout(0.02)
    with pytest.raises(Timeout) as info:
        sleep(1)
    assert info.value is timeout


def test_a_timeout_is_a_context_manager_that_raises_on_expiry():
    start = time.monotonic()
    with pytest.raises(Timeout), Timeout(0.05):
        sleep(1)
    assert 0.045 <= time.monotonic() - start < 0.9


def test_a_timeout_that_does_not_expire_lets_the_block_finish():
    with Timeout(1) as timeout:
        sleep(0.01)
    assert not timeout.pending


def test_leaving_the_block_cancels_the_timer():
    with Timeout(0.02):
        pass
    sleep(0.05)  # would raise Timeout if the timer were still armed


def test_timeout_false_silences_its_own_expiry():
    reached = []
    start = time.monotonic()
    with Timeout(0.02, False):
        sleep(1)
        reached.append("not reached")
    assert reached == []
    assert time.monotonic() - start < 0.9


def test_a_timeout_with_a_custom_exception_raises_that_exception():
    with pytest.raises(Custom), Timeout(0.01, Custom("custom")):
        sleep(1)


def test_a_timeout_with_a_custom_exception_class_raises_it():
    with pytest.raises(Custom), Timeout(0.01, Custom):
        sleep(1)


def test_timeout_none_never_fires():
    with Timeout(None) as timeout:
        sleep(0.02)
    assert not timeout.pending


def test_cancel_disarms_a_timeout():
    timeout = Timeout(0.01)
    assert timeout.pending
    timeout.cancel()
    assert not timeout.pending
    sleep(0.03)


def test_pending_is_false_after_the_timeout_fired():
    timeout = Timeout(0.01)
    with pytest.raises(Timeout):
        sleep(1)
    assert not timeout.pending


def test_an_inner_timeout_that_fires_is_not_swallowed_by_the_outer_one():
    with pytest.raises(Timeout) as info, Timeout(1) as outer, Timeout(0.01) as inner:
        sleep(2)
    assert info.value is inner
    assert info.value is not outer


def test_an_outer_timeout_fires_through_an_inner_one():
    with pytest.raises(Timeout) as info, Timeout(0.01) as outer, Timeout(1):
        sleep(2)
    assert info.value is outer


def test_an_outer_silent_timeout_fires_through_an_inner_one_and_is_swallowed_by_its_own_block():
    reached = []
    with Timeout(0.01, False):
        with Timeout(1):
            sleep(2)
        reached.append("not reached")
    assert reached == []


def test_an_inner_silent_timeout_does_not_swallow_the_outer_one():
    with pytest.raises(Timeout) as info, Timeout(0.01) as outer, Timeout(1, False):
        sleep(2)
    assert info.value is outer


def test_a_timeout_hits_only_the_green_thread_that_created_it():
    release = Event()

    def victim():
        with Timeout(0.01):
            sleep(1)

    bystander = spawn(release.wait)
    gt = spawn(victim)
    with pytest.raises(Timeout):
        gt.wait()
    release.send("unharmed")
    assert bystander.wait() == "unharmed"


def test_a_timeout_interrupts_a_wait_on_a_primitive_and_leaves_it_usable():
    event = Event()
    with pytest.raises(Timeout), Timeout(0.01):
        event.wait()
    spawn(event.send, "later")
    assert event.wait() == "later"


def test_starting_a_pending_timeout_again_is_an_error():
    timeout = Timeout(1)
    try:
        with pytest.raises(AssertionError):
            timeout.start()
    finally:
        timeout.cancel()


def test_a_cancelled_timeout_can_be_restarted():
    timeout = Timeout(1)
    timeout.cancel()
    timeout.seconds = 0.01
    timeout.start()
    with pytest.raises(Timeout):
        sleep(1)


def test_the_message_of_a_timeout_names_its_duration():
    assert str(Timeout(None)) == ""
    timeout = Timeout(2)
    timeout.cancel()
    assert str(timeout) == "2 seconds"


def test_with_timeout_returns_the_result_of_a_quick_call():
    assert with_timeout(1, lambda x: x * 2, 21) == 42


def test_with_timeout_raises_timeout_when_the_call_is_too_slow():
    with pytest.raises(Timeout):
        with_timeout(0.01, sleep, 1)


def test_with_timeout_returns_timeout_value_instead_of_raising():
    assert with_timeout(0.01, sleep, 1, timeout_value="too slow") == "too slow"


def test_with_timeout_does_not_pass_timeout_value_to_the_call():
    assert with_timeout(1, lambda **kw: kw, a=1, timeout_value=None) == {"a": 1}


def test_with_timeout_returns_timeout_value_only_for_its_own_timeout():
    def inner():
        with Timeout(0.01):
            sleep(1)

    with pytest.raises(Timeout):
        with_timeout(1, inner, timeout_value="wrong")


def test_with_timeout_cancels_its_timer_when_the_call_returns():
    with_timeout(0.02, lambda: None)
    sleep(0.05)


@pytest.mark.timeout(5)
def test_an_outer_timeout_due_in_the_same_turn_as_a_silent_inner_one_is_not_lost():
    reached = []
    with pytest.raises(Timeout) as info, Timeout(0.01) as outer:
        with Timeout(0.02, False):
            time.sleep(0.05)  # blocks the hub: both are due when it next runs
            sleep(0)
        reached.append("after the inner block")
        sleep(1)
    assert info.value is outer
    assert reached == []
    sleep(0.03)  # leaving the inner block cancelled its expiry, deferred behind the outer one


@pytest.mark.timeout(5)
def test_a_timeout_due_in_the_same_turn_as_a_kill_is_raised_if_the_kill_is_survived():
    def body():
        with Timeout(0.01) as timeout:
            try:
                time.sleep(0.03)  # blocks the hub: the Timeout is due as the kill arrives
                sleep(1)
            except GreenletExit:
                pass
            try:
                sleep(1)
            except Timeout as exc:
                return exc is timeout
        return "the timeout was lost"

    gt = spawn(body)
    sleep(0)
    gt.kill()
    assert gt.wait() is True


@pytest.mark.timeout(5)
def test_a_timeout_due_in_the_same_turn_as_a_socket_timeout_is_not_lost(hub):
    import socket

    a, b = socket.socketpair()
    attempts = 0
    try:
        with pytest.raises(Timeout), Timeout(0.01):
            while attempts < 5:  # a retry loop: only the Timeout can end it early
                try:
                    spawn(time.sleep, 0.05)  # blocks the hub: both timeouts are due when it next runs
                    hub.wait_read(a.fileno(), timeout=0.02)
                except TimeoutError:
                    attempts += 1
    finally:
        a.close()
        b.close()
    assert attempts == 0
