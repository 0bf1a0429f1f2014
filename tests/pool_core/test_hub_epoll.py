"""The hub's lazy, level-triggered fd registration: an fd stays armed after a wake-up, an event nobody waits
for disarms it, stale entries (an fd closed without notify_close) never leave a waiter unregistered, and
idle armed fds never hide a deadlock."""

import contextlib
import errno
import os
import socket
import threading

import pytest

from pool_core import Event, LoopExit, Queue, sleep, spawn
from pool_core import hub as hub_module
from pool_core.hub import get_hub, new_fd_owner
from pool_core.poller import SelectorPoller
from pool_core.sockets import GreenSocket

pytestmark = [pytest.mark.timeout(10), pytest.mark.usefixtures("quiet_hub")]

IN = 0x001  # EPOLLIN
#: An idle hub polls once per wait, and a turn or two more around it; a spinning one polls thousands of times.
FEW_POLLS = 10


class CountingPoller:
    """The hub's epoll object, counting its epoll_ctl calls and polls."""

    def __init__(self, real):
        self.real = real
        self.ctl = []
        self.polls = 0

    def register(self, fd, mask):
        self.ctl.append(("ADD", fd))
        self.real.register(fd, mask)

    def modify(self, fd, mask):
        self.ctl.append(("MOD", fd))
        self.real.modify(fd, mask)

    def unregister(self, fd):
        self.ctl.append(("DEL", fd))
        self.real.unregister(fd)

    def poll(self, timeout=None):
        self.polls += 1
        return self.real.poll(timeout)

    def close(self):
        self.real.close()


@pytest.fixture
def poller(hub, monkeypatch):
    counting = CountingPoller(hub._selector)
    monkeypatch.setattr(hub, "_selector", counting)
    return counting


@pytest.fixture
def make_pipe(hub):
    """Non-blocking pipes, closed (through notify_close) after the test unless the test closed them."""
    opened = []

    def make():
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        opened.extend((r, w))
        return r, w

    yield make
    for fd in opened:
        hub.notify_close(fd)
        os.close(fd)


def arm_and_leave_idle(hub, r, w, owner=None):
    """Park on `r` once (it wakes at once: a byte is there), consume the byte: `r` stays armed, unwaited."""
    os.write(w, b"!")
    hub.wait_read(r, owner=new_fd_owner() if owner is None else owner)
    assert os.read(r, 1) == b"!"
    assert r in hub._armed and r not in hub._fds


def test_a_reader_parking_again_on_the_fd_it_armed_still_wakes(hub, make_pipe):
    r, w = make_pipe()
    owner = new_fd_owner()
    got = Queue()

    def reader():
        for _ in range(3):
            hub.wait_read(r, owner=owner)
            got.put(os.read(r, 10))

    spawn(reader)
    for message in (b"one", b"two", b"three"):
        os.write(w, message)
        assert got.get(timeout=2) == message


def test_a_green_socket_ping_pong_makes_no_epoll_ctl_after_its_first_round_trip(poller):
    a, b = (GreenSocket(s) for s in socket.socketpair())
    with a, b:

        def echo():
            for _ in range(10):
                b.sendall(b.recv(64))

        echoer = spawn(echo)
        a.sendall(b"ping")
        assert a.recv(64) == b"ping"
        poller.ctl.clear()
        polls_before = poller.polls
        for _ in range(9):
            a.sendall(b"ping")
            assert a.recv(64) == b"ping"
        echoer.wait()
        assert poller.polls > polls_before  # both sides really parked on their sockets
        assert poller.ctl == []


def test_an_anonymous_park_on_an_armed_fd_confirms_its_registration_with_one_epoll_ctl(hub, make_pipe, poller):
    r, w = make_pipe()
    arm_and_leave_idle(hub, r, w)
    poller.ctl.clear()
    os.write(w, b"x")
    hub.wait_read(r)
    assert poller.ctl == [("MOD", r)]


def test_data_arriving_with_no_waiter_is_disarmed_instead_of_reported_on_every_poll(hub, make_pipe, poller):
    r, w = make_pipe()
    other_r, _other_w = make_pipe()
    arm_and_leave_idle(hub, r, w)
    os.write(w, b"nobody reads this yet")
    polls_before = poller.polls
    with pytest.raises(TimeoutError):
        hub.wait_read(other_r, timeout=0.1)  # the hub polls epoll for 0.1 s meanwhile
    assert poller.polls - polls_before < FEW_POLLS
    assert r not in hub._armed  # disarmed: nothing else was armed on it
    hub.wait_read(r)  # and a later park arms it again and sees the data
    assert os.read(r, 100) == b"nobody reads this yet"


def test_a_hang_up_with_no_waiter_is_unregistered_not_reported_on_every_poll(hub, make_pipe, poller):
    r, w = os.pipe()
    other_r, _other_w = make_pipe()
    try:
        arm_and_leave_idle(hub, r, w)
        os.close(w)  # r reports a hang-up now, which epoll reports even for a zero mask
        polls_before = poller.polls
        with pytest.raises(TimeoutError):
            hub.wait_read(other_r, timeout=0.1)
        assert poller.polls - polls_before < FEW_POLLS
        assert ("DEL", r) in poller.ctl and r not in hub._armed
    finally:
        os.close(r)


@pytest.mark.parametrize(
    ("armed_by", "owner"), [("an owner", "anonymous"), ("an owner", "new owner"), ("anonymous", "anonymous")]
)
def test_a_pipe_reusing_the_number_of_one_closed_without_notify_close_wakes_its_waiter(hub, armed_by, owner):
    r, w = os.pipe()
    arm_and_leave_idle(hub, r, w, owner=0 if armed_by == "anonymous" else None)
    os.close(r)  # raw close: the kernel drops r from epoll, but the hub's table still says it is armed
    os.close(w)
    new_r, new_w = os.pipe()
    try:
        assert new_r == r
        assert hub._armed[new_r].events & IN  # the stale entry a waiter must not trust
        woke = Queue()

        def waiter():
            hub.wait_read(new_r, owner=0 if owner == "anonymous" else new_fd_owner())
            woke.put(os.read(new_r, 10))

        spawn(waiter)
        os.write(new_w, b"wake up")
        assert woke.get(timeout=2) == b"wake up"
    finally:
        hub.notify_close(new_r)
        os.close(new_r)
        os.close(new_w)


def test_arming_an_fd_epoll_already_watches_but_the_table_forgot_modifies_it(hub, make_pipe, poller):
    r, w = make_pipe()
    arm_and_leave_idle(hub, r, w)
    del hub._armed[r]  # the kernel still has the registration: ADD fails with EEXIST
    poller.ctl.clear()
    os.write(w, b"x")
    hub.wait_read(r, owner=new_fd_owner())
    assert poller.ctl == [("ADD", r), ("MOD", r)]


def test_loop_exit_is_still_raised_when_only_idle_armed_fds_remain(hub, make_pipe):
    r, w = make_pipe()
    arm_and_leave_idle(hub, r, w)
    os.write(w, b"ready, but nobody waits for it")
    with pytest.raises(LoopExit):
        Event().wait()


def test_an_idle_armed_fd_does_not_make_a_sleeping_hub_poll(hub, make_pipe, loop_turns, poller):
    r, w = make_pipe()
    arm_and_leave_idle(hub, r, w)
    os.write(w, b"ready, but nobody waits for it")
    polls_before = poller.polls
    done = Event()
    hub.call_later(0.05, done.send, True)
    assert done.wait() is True
    assert poller.polls == polls_before  # nobody waits on an fd: the hub sleeps until the timer instead
    assert len(loop_turns) < FEW_POLLS


def test_notify_close_wakes_the_parked_reader_and_writer_with_ebadf(hub, poller):
    a, b = socket.socketpair()
    a.setblocking(False)
    with a, b:
        with contextlib.suppress(BlockingIOError):
            while True:  # fill the send buffer, so a writer really has to wait
                a.send(b"x" * 65536)
        fd = a.fileno()
        errors = Queue()

        def wait(park):
            try:
                park(fd)
            except OSError as exc:
                errors.put(exc.errno)

        spawn(wait, hub.wait_read)
        spawn(wait, hub.wait_write)
        sleep(0)  # both run, and park, before this greenlet resumes
        assert hub._fds[fd].reader is not None and hub._fds[fd].writer is not None
        hub.notify_close(fd)
        assert [errors.get(timeout=2), errors.get(timeout=2)] == [errno.EBADF, errno.EBADF]
        assert fd not in hub._armed and fd not in hub._fds
        assert poller.ctl[-1] == ("DEL", fd)
        with pytest.raises(FileNotFoundError):  # the kernel has forgotten it too
            poller.real.modify(fd, IN)


def test_a_registration_orphaned_by_raw_closing_a_duplicated_fd_is_dropped_by_a_rebuild(hub, make_pipe, loop_turns):
    r, w = os.pipe()
    duplicate = os.dup(r)
    other_r, _other_w = make_pipe()
    old_selector = hub._selector
    try:
        arm_and_leave_idle(hub, r, w)
        os.close(r)  # the pipe lives on through `duplicate`: epoll keeps reporting it under the number r
        os.write(w, b"reported for an fd that is closed")
        with pytest.raises(TimeoutError):
            hub.wait_read(other_r, timeout=0.1)
        assert len(loop_turns) < FEW_POLLS
        assert hub._selector is not old_selector
    finally:
        os.close(duplicate)
        os.close(w)


def test_the_selectors_fallback_serves_a_green_socket_ping_pong(monkeypatch):
    monkeypatch.setattr(hub_module, "_new_poller", SelectorPoller)
    results = []

    def in_a_thread_with_its_own_hub():
        assert isinstance(get_hub()._selector, SelectorPoller)
        a, b = (GreenSocket(s) for s in socket.socketpair())
        with a, b:

            def echo():
                for _ in range(100):
                    b.sendall(b.recv(64))

            echoer = spawn(echo)
            for i in range(100):
                a.sendall(b"%d" % i)
                results.append(a.recv(64))
            echoer.wait()

    thread = threading.Thread(target=in_a_thread_with_its_own_hub)
    thread.start()
    thread.join(5)
    assert results == [b"%d" % i for i in range(100)]
