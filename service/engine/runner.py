"""The runner: one lane per pool, each a GreenPool of slots fed from that pool's queue.

A pool green thread is a *slot*: it takes the job at the head of the queue, runs it, and takes the next one
in the same green thread while jobs are queued and the pool is not over its size, so the pool's size is the
number of jobs running at once and job throughput does not depend on how long a hub pass is (a green thread
made ready runs only in the next pass: with one spawn per job, each slot would run one job per two passes).
One dispatcher green thread per lane spawns a slot for each queued job no slot is on its way to, while the
pool has room. A slot that has run jobs back to back for `_TURN` seconds yields to the other green threads
(connections) before it takes the next. A cancel or timeout kills the job, not its slot, which goes on with
the next queued job; the lane's table of running green threads is how a cancel finds the job to kill.
A queued job held back until its `not_before` (a delay, a retry's backoff) waits in the queue's `delayed`
part, out of the dispatcher's sight: one hub timer per lane, set for the earliest `not_before`, releases
the jobs that are due into the FIFO and wakes the dispatcher, so they never hold up the jobs behind them.

A task that is not cooperative runs on one of the runner's OS threads (as many as the pools' sizes, at
most `max_threads`) while its slot parks. An OS thread cannot be killed: a blocking job that is cancelled
or times out has ended, but its slot stays taken (`held`) until the thread returns, so a pool's size still
bounds the work really running.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

from pool_core import GreenletExit, GreenPool, GreenThread, get_hub, getcurrent, spawn, spawn_n
from pool_core.threads import ThreadPool
from pool_core.waitqueue import WaitQueue

from ..encoding import dumps
from ..storage import Job, JobQueue
from ..storage.records import CANCELLED, FAILED, SUCCEEDED, TERMINAL, TIMED_OUT
from ..tasks import Registry

__all__ = ["Lane", "Runner"]

_TURN = 0.002  # seconds a slot may run jobs back to back before it lets the other green threads run
_monotonic = time.monotonic
End = Callable[..., bool]  # end(job, status, error_type=None, message=None, result=None) -> it ended it
log = logging.getLogger("greenpool.tasks")  # a task that raised: its traceback


class Lane:
    """One pool: its GreenPool of slots, its dispatcher, and the green thread running each of its jobs;
    its job counters (`counts`), and what admission reads (`ended` since the last sweep, `finish_rate`)."""

    def __init__(self, name: str, size: int, queue: JobQueue, registry: Registry, clock: Callable[[], float],
                 max_result_bytes: int, started: Callable[[Job], None], end: End,
                 threads: ThreadPool) -> None:  # fmt: skip
        self.name = name
        self.pool = GreenPool(size)
        self.queue = queue
        self.threads = threads  # the OS threads of the tasks that are not cooperative
        self.running: dict[str, GreenThread] = {}  # job id → the slot running it
        self.held = 0  # slots whose job has ended while its OS thread runs on
        self._registry, self._clock, self._max_result_bytes = registry, clock, max_result_bytes
        self._started, self._end = started, end
        self.counts = {"submitted": 0, SUCCEEDED: 0, FAILED: 0, CANCELLED: 0, TIMED_OUT: 0}
        self.ended = 0  # jobs ended since the admission's last tick
        self.finish_rate = 0.0  # jobs/s, smoothed: behind this pool's Retry-After
        self._starting = 0  # slots spawned that have not yet taken their first job
        self._dispatcher = WaitQueue()  # the dispatcher, parked until it has a slot to spawn
        self._pool_full = False  # the dispatcher is parked because every slot is taken (`waiting`)
        self._holding = False  # `hold`: no more queued jobs start
        self._timer: Any = None  # the hub timer that releases the delayed jobs that are due
        self._timer_at = math.inf  # the `not_before` it is set for
        self.thread = spawn(self._dispatch)
        self.delayed(queue.release_due(clock()))  # jobs a durable store reloaded still held back

    def pushed(self) -> None:
        """A job was pushed onto the queue: wake the dispatcher unless it waits for a free slot anyway."""
        if not self._pool_full:
            self._dispatcher.wake_one()

    def delayed(self, not_before: float | None) -> None:
        """A job held back until `not_before` was pushed (or is still held): release it when it is due."""
        if not_before is None or not_before >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = not_before
        # Timers fire in the hub, which must never park: what they do (store I/O, with Redis) runs in a green thread.
        self._timer = get_hub().call_later(max(0.0, not_before - self._clock()), spawn_n, self._release)

    def _release(self) -> None:
        """The timer: move the delayed jobs that are due into the FIFO, wake the dispatcher, set the next one."""
        self._timer, self._timer_at = None, math.inf
        queued = self.queue.queued
        following = self.queue.release_due(self._clock())
        if self.queue.queued > queued:
            self.pushed()
        self.delayed(following)

    def resize(self, size: int) -> None:
        """Change how many jobs may run at once (running jobs continue; see GreenPool.resize)."""
        self.pool.resize(size)
        self._dispatcher.wake_one()  # growing may let it spawn slots for queued jobs

    def stats(self) -> dict[str, int]:
        """size, running, held (slots of ended jobs whose thread runs on), free, waiting (the dispatcher,
        when the pool is full), queued and delayed (the queued jobs held back until their `not_before`), as a
        new dict. `running` counts the held slots too."""
        pool, queue = self.pool, self.queue
        return {
            "size": pool.size,
            "running": pool.running(),
            "held": self.held,
            "free": pool.free(),
            "waiting": pool.waiting() + (1 if self._pool_full else 0),
            "queued": queue.queued + queue.delayed,
            "delayed": queue.delayed,
        }

    def hold(self) -> None:
        """Start no more queued jobs (a drain that keeps them queued for the next start); running ones go on."""
        self._holding = True
        self.thread.kill()

    def kill(self, job_id: str) -> bool:
        """Kill the green thread running this job (it has just been ended), if it runs here; True if it did."""
        thread = self.running.pop(job_id, None)
        if thread is None:
            return False
        thread.kill()
        return True

    def _dispatch(self) -> None:
        """Spawn a slot for each queued job that no slot is on its way to, while the pool has room."""
        pool, parked, queue = self.pool, self._dispatcher, self.queue
        while True:
            if queue.queued <= self._starting:
                parked.park()  # woken by a submission
            elif pool.running() >= pool.size:
                self._pool_full = True
                try:
                    parked.park()  # woken by a slot leaving the pool, or a resize
                finally:
                    self._pool_full = False
            else:
                pool.spawn(self._slot)
                self._starting += 1

    def _slot(self) -> None:
        """One pool slot: run queued jobs back to back, in FIFO order, while more are queued than slots on
        their way to them and the pool is not over its size; yield after `_TURN` s of instant jobs."""
        self._starting -= 1
        hub, queue = get_hub(), self.queue
        thread = getcurrent()
        turn, turn_started = hub.pass_started, _monotonic()
        try:
            while (job := self._next()) is not None:
                self._run(job, thread)
                if hub.pass_started != turn:  # the job parked: this slot's turn began when it resumed
                    turn, turn_started = hub.pass_started, _monotonic()
                elif _monotonic() - turn_started > _TURN:
                    hub.yield_now()
                    turn, turn_started = hub.pass_started, _monotonic()
                if not self._going_on():
                    return
        finally:  # leaving frees a slot: the dispatcher may be waiting for one, or have jobs with no slot
            self._leaving()  # what may park comes first: the wake-up below must find this slot gone
            if self._pool_full or queue.queued > self._starting:
                self._dispatcher.wake_one()

    def _leaving(self) -> None:
        """A slot is about to leave the pool: nothing to do here (a cluster lane frees its lease)."""

    def _next(self) -> Job | None:
        """The slot's next job: none once the lane holds, else `_take`'s."""
        return None if self._holding else self._take()

    def _going_on(self) -> bool:
        """After a job: does its slot go on? While more are queued than slots on their way, and the pool is
        not over its size."""
        return self.queue.queued > self._starting and self.pool.free() >= 0

    def _take(self) -> Job | None:
        """The job at the head of the queue, marked running (None: none queued); a cluster's lane also takes
        a slot of the cluster-wide limit for it (service.engine.cluster)."""
        return self.queue.take(self._clock())

    def _run(self, job: Job, thread: GreenThread) -> None:
        """Run one job the queue handed this slot (`thread`) to its terminal state."""
        self.running[job.id] = thread
        attempt = job.attempt
        self._started(job)
        timer = None
        if job.timeout is not None:
            timer = get_hub().call_later(job.timeout, spawn_n, self._expire, job, attempt)
        try:
            task = self._registry.get(job.task)
            result = task.run(job.args) if task.cooperative else self._run_blocking(job, attempt, task.bind(job.args))
            size = len(dumps(result))  # the bytes the API sends: compact UTF-8 JSON
        except GreenletExit:
            if job.status in TERMINAL or job.attempt != attempt:
                return  # killed by its cancel, timeout or the drain, which ended it (or retries it): the slot goes on
            raise  # a kill meant for the slot itself
        except Exception as exc:  # the task failed: that is the job's outcome, not the server's
            error_type, message = type(exc).__name__, str(exc) or repr(exc)
            # The traceback goes to the log only: the job's `error` keeps type and message.
            log.warning("job task raised", exc_info=exc, extra={"job_id": job.id, "task": job.task,
                                                                 "error_type": error_type, "error_message": message})
            self._end(job, FAILED, error_type, message)
            return
        finally:
            if timer is not None:
                timer.cancel()
            if self.running.get(job.id) is thread:  # not a later attempt's slot (a retry with no backoff)
                del self.running[job.id]
        if size > self._max_result_bytes:
            limit = self._max_result_bytes
            self._end(job, FAILED, "ResultTooLarge", f"the result is {size} bytes as JSON; the limit is {limit}")
            return
        self._end(job, SUCCEEDED, result=result)

    def _run_blocking(self, job: Job, attempt: int, call: Callable[[], Any]) -> Any:
        """Run `call` (attempt `attempt` of `job`) on an OS thread; if the job is killed meanwhile (cancel,
        timeout, drain) and the thread has started, keep this slot taken (`held`) until the thread returns,
        then drop what it returned."""
        running = self.threads.start(call)
        try:
            return running.wait()
        except GreenletExit:
            if (job.status in TERMINAL or job.attempt != attempt) and not running.cancel():
                self.held += 1
                try:
                    with suppress(Exception):  # the job has ended: its late outcome is dropped
                        running.wait()
                finally:
                    self.held -= 1
            raise

    def _expire(self, job: Job, attempt: int) -> None:
        if job.attempt != attempt:  # a retry started between the timer and this green thread: not its timeout
            return
        self._end(job, TIMED_OUT, "Timeout", f"the job ran longer than its timeout of {job.timeout} s")


class Runner:
    """The lanes by pool name and the OS threads they share (`os_threads`), as many as the lanes' sizes add
    up to, at most `max_threads`."""

    def __init__(self, lanes: dict[str, Lane], os_threads: ThreadPool, max_threads: int) -> None:
        self.lanes, self.os_threads, self._max_threads = lanes, os_threads, max_threads
        self._fit_threads()

    @staticmethod
    def thread_pool(size: int, max_threads: int) -> ThreadPool:
        """The OS threads for lanes of `size` slots in all (at least one thread)."""
        return ThreadPool(max(1, min(size, max_threads)), "greenpool.jobs")

    def resize(self, name: str, size: int) -> None:
        """Resize lane `name` (see Lane.resize) and the OS threads with it."""
        self.lanes[name].resize(size)
        self._fit_threads()

    def add(self, lane: Lane) -> None:
        """Serve a new pool's lane."""
        self.lanes[lane.name] = lane
        self._fit_threads()

    def remove(self, name: str) -> None:
        """Stop and forget the lane of pool `name` (nothing of it may be queued or running)."""
        self.lanes.pop(name).thread.kill()
        self._fit_threads()

    def _fit_threads(self) -> None:
        self.os_threads.resize(max(1, min(sum(lane.pool.size for lane in self), self._max_threads)))

    def __iter__(self) -> Iterator[Lane]:
        return iter(self.lanes.values())

    def threads(self) -> list[Any]:
        """The lanes' dispatcher green threads (to stop an engine in tests)."""
        return [lane.thread for lane in self.lanes.values()]
