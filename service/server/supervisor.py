"""The worker process's main greenlet: heartbeat, parent watch, signal flags, and the drain.

Every tick (at most 1 s, at most `timeout/4`) it calls gunicorn's `notify()`, checks `alive`, the parent pid
and the flags the signal handlers set (they interrupt arbitrary green threads, so they only set flags). It
parks on gunicorn's signal wake-up pipe, so a signal is acted on at once. A tick that comes late means a
green thread blocked the hub: that is logged, and past `timeout` the arbiter aborts the worker.

Drain: close the listeners, start `service.lifecycle`'s drain callbacks, end keep-alive waits, let requests
and streams in flight finish within the grace period (`graceful_timeout` minus a margin to clean up before
the arbiter's SIGKILL), then kill what is left (`finally` blocks and iterator `close()` still run). A
SIGQUIT/SIGINT during the drain ends the grace period at once.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from typing import Any

import pool_core
from pool_core.sockets import GreenSocket
from service import lifecycle, logs

__all__ = ["Supervisor"]


class Supervisor:
    """Runs in the main greenlet of a `GreenWorker` (`worker`), from `run` until the process exits."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.quit_signals = 0  # SIGQUIT/SIGINT received
        self.reopen_logs = False  # SIGUSR1 received

    def tick(self) -> float:
        """Seconds between heartbeats: well within the arbiter's timeout, at most one second."""
        timeout = self.worker.cfg.timeout
        return max(0.05, min(1.0, timeout / 4)) if timeout else 1.0

    def supervise(self) -> None:
        """Heartbeat, parent check and signal flags, until the worker's `alive` turns False."""
        worker = self.worker
        tick = self.tick()
        last = time.monotonic()
        while worker.alive:
            worker.notify()
            if worker.ppid != os.getppid():
                worker.log.info("Parent changed, shutting down: %s", worker)
                worker.alive = False
                break
            self.handle_flags()
            self.wait_signal(tick)
            logs.flush()
            now = time.monotonic()
            if now - last > tick + max(1.0, tick):
                worker.log.warning(
                    "pool_core hub was blocked for about %.1fs (heartbeat late): a green thread is calling "
                    "blocking code; the arbiter kills the worker after %ss",
                    now - last - tick,
                    worker.cfg.timeout,
                )
            last = now

    def handle_flags(self) -> None:
        """Act on what the signal handlers recorded."""
        if self.reopen_logs:
            self.reopen_logs = False
            self.worker.log.reopen_files()

    def wait_signal(self, timeout: float) -> None:
        """Park until a signal arrives (gunicorn's wake-up pipe) or `timeout` seconds pass."""
        fd = self.worker.PIPE[0]
        try:
            pool_core.get_hub().wait_read(fd, timeout)
        except TimeoutError:
            return
        try:
            while os.read(fd, 256):
                pass
        except BlockingIOError:
            pass

    def wake(self) -> None:
        """Wake the supervisor from another green thread (through the wake-up pipe)."""
        with contextlib.suppress(OSError):
            os.write(self.worker.PIPE[1], b".")

    def margin(self) -> float:
        """Time kept back from `graceful_timeout` to kill and clean up before the arbiter's SIGKILL."""
        return min(1.0, float(self.worker.cfg.graceful_timeout) * 0.1)

    def drain(
        self,
        acceptors: Iterable[pool_core.GreenThread],
        listeners: Iterable[GreenSocket],
        connections: set[pool_core.GreenThread],
        end_idle: Any,
    ) -> None:
        """Stop accepting, let `connections` and drain callbacks finish within the grace period, kill the rest;
        `end_idle()` ends the keep-alive waits once the listeners are closed."""
        worker = self.worker
        margin = self.margin()
        grace = max(0.0, worker.cfg.graceful_timeout - margin)
        deadline = time.monotonic() + grace
        for acceptor in acceptors:
            acceptor.kill()
        for listener in listeners:
            with contextlib.suppress(OSError):
                listener.close()
        if self.quit_signals:
            try:
                worker.cfg.worker_int(worker)
            except Exception:
                worker.log.exception("Exception in worker_int hook")
        hooks = lifecycle.drain(grace)
        end_idle()
        worker.log.info(
            "Draining (pid: %s): %d connection(s), %d drain callback(s), up to %.1fs",
            worker.pid,
            len(connections),
            len(hooks),
            grace,
        )
        quits = self.quit_signals
        while True:
            worker.notify()
            hooks = lifecycle.drain(grace)
            if not connections and all(hook.dead for hook in hooks):
                worker.log.info("Drained (pid: %s)", worker.pid)
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                worker.log.warning(
                    "Worker graceful timeout (pid: %s): killing %d connection(s), %d drain callback(s)",
                    worker.pid,
                    len(connections),
                    sum(not hook.dead for hook in hooks),
                )
                break
            if self.quit_signals > quits:
                worker.log.info("Quit signal during the drain: stopping now (pid: %s)", worker.pid)
                break
            self.handle_flags()
            self.wait_signal(min(0.1, remaining))
        self.kill_all([*connections, *hooks], margin / 2)

    @staticmethod
    def kill_all(threads: list[pool_core.GreenThread], cleanup: float) -> None:
        """Kill `threads`, then give their cleanup (iterator close(), finally blocks) up to `cleanup` seconds."""
        for thread in threads:
            if not thread.dead:
                thread.kill()
        end = time.monotonic() + cleanup
        while any(not thread.dead for thread in threads) and time.monotonic() < end:
            pool_core.sleep(0.01)
