"""pool_core.threads: blocking calls on OS threads, waited for cooperatively and without polling."""

import threading
import time

import pytest

from pool_core import GreenletExit, Timeout, sleep, spawn, threads
from pool_core.threads import execute, get_num_threads, set_num_threads

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(autouse=True)
def _restore_thread_count():
    before = get_num_threads()
    yield
    set_num_threads(before)


def test_execute_returns_the_result_of_the_call():
    assert execute(sum, [1, 2, 3], start=10) == 16
    assert execute(threading.get_ident) != threading.get_ident()


def test_execute_reraises_the_calls_exception_in_the_caller():
    def boom(x):
        raise ValueError(f"bad {x}")

    with pytest.raises(ValueError, match="bad 7"):
        execute(boom, 7)


def test_many_concurrent_executes_overlap_in_wall_time():
    set_num_threads(10)
    started = time.monotonic()
    calls = [spawn(execute, time.sleep, 0.2) for _ in range(10)]
    for call in calls:
        call.wait()
    assert 0.18 <= time.monotonic() - started < 0.6


def test_the_thread_count_bounds_how_many_calls_run_at_once():
    set_num_threads(2)
    lock, running, peak = threading.Lock(), [0], [0]

    def work():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    calls = [spawn(execute, work) for _ in range(6)]
    for call in calls:
        call.wait()
    assert peak[0] == 2


def test_other_green_threads_run_while_one_waits_in_execute():
    ticks = []

    def ticker():
        while True:
            ticks.append(1)
            sleep(0.01)

    tick = spawn(ticker)
    execute(time.sleep, 0.3)
    tick.kill()
    assert len(ticks) >= 10


def test_a_timeout_around_execute_raises_at_once_and_the_late_result_wakes_nobody():
    started = time.monotonic()
    with pytest.raises(Timeout), Timeout(0.05):
        execute(time.sleep, 0.3)
    assert time.monotonic() - started < 0.2
    # The OS thread finishes at ~0.3 s while we sleep on a timer: its dropped result must not wake us early.
    sleep(0.5)
    assert time.monotonic() - started >= 0.55
    assert execute(lambda: "still works") == "still works"


def test_killing_a_green_thread_blocked_in_execute_ends_it_at_once():
    blocked = spawn(execute, time.sleep, 1.0)
    sleep(0.02)
    started = time.monotonic()
    blocked.kill()
    assert blocked.dead
    assert time.monotonic() - started < 0.1
    with pytest.raises(GreenletExit):
        blocked.wait()


def test_waiting_in_execute_does_not_poll(loop_turns):
    cpu = time.process_time()
    execute(time.sleep, 0.5)
    assert time.process_time() - cpu < 0.1
    assert len(loop_turns) < 20


def test_the_waker_unregisters_its_pipe_once_nobody_waits(hub):
    link = threads._link()
    execute(time.sleep, 0.01)
    assert link.read_fd not in hub._fds  # so the hub can detect a real deadlock again
    victim = spawn(execute, time.sleep, 0.3)
    sleep(0.02)
    assert link.read_fd in hub._fds  # while a caller waits, the hub must not report LoopExit
    victim.kill()
    sleep(0)
    assert link.read_fd not in hub._fds


def test_each_os_thread_executes_through_its_own_hub():
    results = []

    def other_thread():
        results.append(execute(lambda: "from a second hub"))

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join(5)
    assert results == ["from a second hub"]


def test_thread_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("POOL_CORE_THREADS", "7")
    assert threads._threads_from_env() == 7
    monkeypatch.setenv("POOL_CORE_THREADS", "nonsense")
    assert threads._threads_from_env() == threads.DEFAULT_THREADS
    with pytest.raises(ValueError):
        set_num_threads(0)


def test_a_doorbell_rung_from_os_threads_wakes_its_green_thread_and_rings_in_between_count_once():
    bell = threads.Doorbell()
    try:
        woken = []
        waiter = spawn(lambda: (bell.wait(), woken.append(time.monotonic())))
        sleep(0.01)
        assert not woken
        rung = time.monotonic()
        threading.Thread(target=bell.ring).start()
        waiter.wait()
        assert woken and woken[0] - rung < 1.0
        for _ in range(3):
            bell.ring()
        bell.wait()  # the three rings: one wake-up
        with pytest.raises(TimeoutError):
            bell.wait(timeout=0.05)
    finally:
        bell.close()
