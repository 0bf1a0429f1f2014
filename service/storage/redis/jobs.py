"""Job records and per-pool queues in Redis: a hash per job, a FIFO list, a held-back sorted set and a count.

Records handed out are one object per id per process while anyone holds it (a weak identity map), refreshed
in place by every read, so a long-poll and the slot running the job see one record as with the memory store.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from typing import Any

import orjson

from ...encoding import dumps
from ..ports import StoreError
from ..records import Evicted, Job
from .link import Link

__all__ = ["RedisJobQueue", "RedisJobRecords", "decode_job", "strs", "text"]

_SELECT_BATCH = 256  # records read per round trip by `select`
_EXPIRE_BATCH = 1000  # records evicted per script run by `expire`


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _num(value: float | None) -> str:
    """A float as the scripts store it: its exact `repr`, "" for None."""
    return "" if value is None else repr(float(value))


def _float(value: bytes | None) -> float | None:
    return None if not value else float(value)


def _loads(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:  # what `dumps` wrote through json (integers beyond 64 bits)
        return json.loads(value)


def _fields(job: Job) -> tuple[Any, ...]:
    """A new job's hash but its `seq`, as field, value, field, value…"""
    spec = (job.task, job.args, job.timeout, job.pool, job.owner, job.submitted_at, job.retries, job.backoff)
    return ("id", job.id, "spec", dumps(spec), "pile", job.pile or "", "idx", job.pile_index, "pos", job.position,
            "status", job.status, "started", _num(job.started_at), "finished", "", "result", dumps(job.result),
            "error", "", "attempt", job.attempt, "attempts", "", "nb", _num(job.not_before), "listed", "1")  # fmt: skip


_RANK = {"queued": 0, "running": 1}  # then terminal: 2


def _progress(attempt: int, status: str) -> tuple[int, int]:
    """How far a record has gone: records only move forward (queued, running, ended; a retry is a new attempt)."""
    return attempt, _RANK.get(status, 2)


def strs(h: dict[bytes, bytes]) -> dict[str, str]:
    """A hash as redis-py's HGETALL returns it, as the scripts' `hash()` does (decoded)."""
    return {k.decode(): v.decode() for k, v in h.items()}


def decode_job(h: dict[str, str], live: weakref.WeakValueDictionary) -> Job | Evicted:
    """The record of hash `h`: the one object of its id in `live` (refreshed in place) or a new one; an
    `Evicted` for a record stripped for the pile that keeps it (`max_records`)."""
    job_id = h["id"]
    if h.get("evicted") == "1":
        record = Evicted.__new__(Evicted)
        record.pile_index, record.id, record.status = int(h["idx"]), job_id, h["status"]
        record.started_at, record.finished_at = _float(h.get("started")), _float(h.get("finished"))
        return record
    job = live.get(job_id)
    if job is not None and _progress(job.attempt, job.status) > _progress(int(h["attempt"]), h["status"]):
        return job  # a read answered before a change this process has since made: never move a record back
    if job is None:
        task, args, timeout, pool, owner, submitted_at, retries, backoff = orjson.loads(h["spec"])
        pile = h["pile"] or None
        job = Job(job_id, task, args, timeout, submitted_at, pool, pile, owner)
        job.seq, job.retries, job.backoff = int(h["seq"]), retries, backoff
        live[job_id] = job
    job.pile_index, job.position, job.status = int(h["idx"]), int(h["pos"]), h["status"]
    job.started_at, job.finished_at = _float(h["started"]), _float(h["finished"])
    job.result = _loads(h["result"])
    job.error = _loads(h["error"]) if h["error"] else None
    job.attempt = int(h["attempt"])
    job.attempts = _loads(h["attempts"]) if h["attempts"] else None
    job.not_before = _float(h["nb"])
    return job


class RedisJobRecords:
    """Records in `P:job:ID` hashes, listed in `P:jobs` by seq; ended ones in `P:ended` in the order they ended, which
    `finish` bounds to `max_records` (oldest first) and `expire` trims by the horizon."""

    def __init__(self, link: Link, max_records: int) -> None:
        self.max_records = max_records
        self._link = link
        self.live: weakref.WeakValueDictionary[str, Job] = weakref.WeakValueDictionary()
        self.logged: Callable[[bytes], Any] = lambda pile: None  # told each pile hash `finish` read back

    def add(self, job: Job) -> None:
        self._link.later("add", job.id, *_fields(job), then=lambda seq: setattr(job, "seq", int(seq)))
        self.live[job.id] = job

    def get(self, job_id: str) -> Job | None:
        link = self._link
        with link.guard():
            h = link.client.hgetall(f"{link.prefix}:job:{job_id}")
        if not h or h.get(b"listed") != b"1":
            return None
        return decode_job(strs(h), self.live)  # type: ignore[return-value]

    def finish(self, job: Job, status: str, result: Any, error: dict[str, str] | None, at: float) -> str | None:
        """As the port says; a pile's member is also logged in its pile's result log in the same script, so
        `job.position` is set on return (the engine then has nothing to append), unless the pile has expired."""
        err = dumps(error) if error is not None else ""
        found = self._link.run("finish", job.id, status, dumps(result), err, _num(at), self.max_records)
        if not found:
            return None
        was, started, attempt, logged = found
        job.status, job.result, job.error, job.finished_at = status, result, error, at
        job.started_at, job.attempt = _float(started), int(attempt or 1)
        if logged:
            job.position = int(logged[0])
            self.logged(logged[1])
        return text(was)

    def retry(self, job: Job, status: str, error: dict[str, str] | None, at: float, not_before: float) -> bool:
        seen = (job.status, job.started_at, job.attempts, job.attempt, job.not_before)
        job.requeue(status, error, at, not_before)
        done = False
        try:
            done = bool(self._link.run("retry", job.id, seen[3], dumps(job.attempts), job.attempt, _num(not_before)))
        finally:
            if not done:  # not retried (or the call failed): the caller's copy is left as it was
                job.status, job.started_at, job.attempts, job.attempt, job.not_before = seen
        return done

    def select(self, status: str | None = None, owner: str | None = None, before: int | None = None,
               limit: int | None = None) -> list[Job]:  # fmt: skip
        link, p = self._link, self._link.prefix
        found: list[Job] = []
        top = "+inf" if before is None else f"({before}"
        while limit is None or len(found) < limit:
            with link.guard():
                ids = link.client.zrevrangebyscore(f"{p}:jobs", top, "-inf", start=0, num=_SELECT_BATCH,
                                                   withscores=True)  # fmt: skip
                if not ids:
                    return found
                pipe = link.client.pipeline(transaction=False)
                for job_id, _ in ids:
                    pipe.hgetall(f"{p}:job:{text(job_id)}")
                hashes = pipe.execute()
            for h in hashes:
                if not h or h.get(b"listed") != b"1":
                    continue
                if (status is None or text(h[b"status"]) == status) and (owner is None or _owner(h) == owner):
                    found.append(decode_job(strs(h), self.live))  # type: ignore[arg-type]
                    if len(found) == limit:
                        break
            top = f"({int(ids[-1][1])}"
        return found

    def expire(self, horizon: float) -> None:
        while self._link.run("expire_jobs", _num(horizon), _EXPIRE_BATCH) == _EXPIRE_BATCH:
            pass


def _owner(h: dict[bytes, bytes]) -> str | None:
    return orjson.loads(h[b"spec"])[4]


class RedisJobQueue:
    """One pool's queue: `P:q:POOL:ready` (ids, FIFO), `:delayed` (id → not_before), `:n` (the queued count,
    reserved places included). `queued` and `delayed` are this replica's cached copy of the cluster-wide
    counts: set by each of its calls here, and re-read by `refresh` (the store does every REFRESH_S), so
    they may lag what other replicas did by that much; `reserve` itself checks the bound on the server.
    Except right after a `reserve` (which reports the count the bound saw), `queued` leaves out the places
    this replica reserved and has not pushed yet: nothing can take them, and while a large pile's jobs are
    pushed one by one (each push parks) the pool's slots would otherwise all try to take what is not there."""

    def __init__(self, link: Link, pool: str, records: RedisJobRecords) -> None:
        self.pool = pool
        self.queued = 0
        self.delayed = 0
        self.wake: Callable[[], None] | None = None  # told when a refresh finds more jobs queued than it knew
        self._link = link
        self._records = records
        self._unpushed = 0  # places this replica reserved and has not pushed (nor released) yet
        self._version = 0  # of the counts last applied: replies on several connections arrive in any order

    def _counts(self, reply: list[Any]) -> list[Any]:
        version = int(reply[3])
        if version > self._version:  # else an older reply than one already applied
            self._version = version
            self.queued, self.delayed = max(0, int(reply[0]) - self._unpushed), int(reply[1])
        return reply

    def refresh(self, queued: int, delayed: int, version: int) -> None:
        """The counts as read from Redis (by the store's refresher); more queued than known wakes `wake`."""
        if version < self._version:
            return
        self._version = version
        queued = max(0, queued - self._unpushed)
        grew = queued > self.queued
        self.queued, self.delayed = queued, delayed
        if grew and self.wake is not None:
            self.wake()

    def reserve(self, count: int, limit: int) -> bool:
        reply = self._link.run("reserve", self.pool, count, limit)
        if reply[2]:
            self._unpushed += count
        if int(reply[3]) > self._version:  # right after a reserve: the count the bound saw, reserved places in
            self._version = int(reply[3])
            self.queued, self.delayed = int(reply[0]), int(reply[1])
        return bool(reply[2])

    def release(self, count: int) -> None:
        self.reserve(-count, 2**62)

    def push(self, job: Job) -> None:
        self._unpushed = max(0, self._unpushed - 1)
        self._link.later("push", self.pool, job.id, _num(job.not_before), then=self._pushed)

    def _pushed(self, reply: list[Any]) -> None:
        """A push's counts: more queued than known wakes `wake` (the lane may have looked before it landed)."""
        queued = self.queued
        self._counts(reply)
        if self.queued > queued and self.wake is not None:
            self.wake()

    def release_due(self, at: float) -> float | None:
        return _float(self._counts(self._link.run("release_due", self.pool, _num(at)))[2])

    def take(self, at: float) -> Job | None:
        """As the port says; while Redis cannot be reached, None (and no queued jobs known until a refresh),
        so that the pool's slots park rather than spin on a store that is down."""
        try:
            reply = self._counts(self._link.run("take", self.pool, _num(at)))
        except StoreError:
            self.queued = 0
            return None
        if not reply[2]:
            return None
        return decode_job(orjson.loads(reply[2]), self._records.live)  # type: ignore[return-value]

    def take_leased(self, replica: str, token: str, lease_ms: int, at: float) -> tuple[Job | None, bool]:
        """The next job with lease `token` of the pool's cluster-wide slots (held by `replica`, `lease_ms` long),
        one round trip: `(job, True)`; `(None, True)` no job was queued (the lease is released); `(None, False)`
        the lease is not held (more than the size are held, or it lapsed). StoreError if Redis cannot be used
        (as `take`, no queued jobs known until a refresh)."""
        try:
            reply = self._counts(self._link.run("lease_take", self.pool, replica, token, lease_ms, _num(at)))
        except StoreError:
            self.queued = 0
            raise
        if not reply[4]:
            return None, False
        if not reply[2]:
            return None, True
        return decode_job(orjson.loads(reply[2]), self._records.live), True  # type: ignore[return-value]

    def discard(self, job: Job) -> None:
        self._counts(self._link.run("discard", self.pool, job.id))

