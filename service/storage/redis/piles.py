"""Piles and their result logs in Redis: a hash per pile (counts, closed, times), a members list and a log list.

A position in a pile's stream is an index in its `:log` list (completion order) or `:m` list (submission
order): plain integers that never change, the SSE ids the API already sends, the same on every replica.
A pile object handed out holds no member records: its `jobs` and `log` are `Span`s, their lengths only.
"""

from __future__ import annotations

import weakref
from typing import Any

import orjson

from ..records import COMPLETION, TERMINAL, Evicted, Job, Pile
from .jobs import RedisJobRecords, _float, _num, decode_job, strs, text
from .link import Link

__all__ = ["RedisPileRecords", "RedisResultLogs", "Span"]

_CLEAN_BATCH = 1000  # members of an expired pile cleaned up per script run


class Span:
    """How many members (or results) a pile has; the records themselves stay in Redis."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"Span({self.n})"


def decode_pile(h: dict[str, str], live: weakref.WeakValueDictionary) -> Pile:
    """The pile of hash `h`: its one object in `live` (refreshed in place) or a new one."""
    pile_id = h["id"]
    pile = live.get(pile_id)
    if pile is None:
        pile = live[pile_id] = Pile(pile_id, h["owner"] or None)
    elif int(h["done"]) < len(pile.log) or int(h["n"]) < len(pile.jobs) or (pile.closed and h["closed"] != "1"):
        return pile  # a read answered before a change this process has since made: never move a pile back
    pile.closed = h["closed"] == "1"
    pile.finished_at, pile.active_at = _float(h["finished"]), float(h["active"])
    pile.jobs, pile.log = Span(int(h["n"])), Span(int(h["done"]))  # type: ignore[assignment]
    pile.counts = {status: int(h[status]) for status in TERMINAL}
    return pile


class RedisPileRecords:
    """Piles in `P:pile:ID` hashes, members in `P:pile:ID:m`; `P:piles` orders them by last activity (a
    complete pile's last activity is when it completed), which is where `expire` looks."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self.live: weakref.WeakValueDictionary[str, Pile] = weakref.WeakValueDictionary()

    def add(self, pile: Pile) -> None:
        link, p = self._link, self._link.prefix
        fields: dict[str, Any] = {"id": pile.id, "owner": pile.owner or "", "closed": "0", "finished": "",
                                  "active": _num(pile.active_at), "n": 0, "done": 0}  # fmt: skip
        fields.update(dict.fromkeys(TERMINAL, 0))
        with link.guard():
            pipe = link.client.pipeline(transaction=True)
            pipe.hset(f"{p}:pile:{pile.id}", mapping=fields)
            pipe.zadd(f"{p}:piles", {pile.id: pile.active_at})
            pipe.sadd(f"{p}:piles:open", pile.id)
            pipe.execute()
        pile.jobs, pile.log = Span(0), Span(0)  # type: ignore[assignment]
        self.live[pile.id] = pile

    def seen(self, packed: bytes) -> None:
        """A pile's hash (JSON) a script read back: refresh its record here."""
        decode_pile(orjson.loads(packed), self.live)

    def get(self, pile_id: str) -> Pile | None:
        link = self._link
        with link.guard():
            h = link.client.hgetall(f"{link.prefix}:pile:{pile_id}")
        return decode_pile(strs(h), self.live) if h else None

    def add_job(self, pile: Pile, job: Job) -> int:
        def added(index: Any) -> None:
            job.pile_index = int(index)
            pile.jobs = Span(max(len(pile.jobs), job.pile_index + 1))  # type: ignore[assignment]

        self._link.later("add_job", pile.id, job.id, _num(job.submitted_at), then=added)
        pile.active_at = job.submitted_at
        return job.pile_index  # inside `RedisStore.batch()`: -1 until the batch is sent

    def close(self, pile: Pile, at: float) -> None:
        decode_pile(orjson.loads(self._link.run("close", pile.id, _num(at))), self.live)

    def open_piles(self) -> list[Pile]:
        link, p = self._link, self._link.prefix
        with link.guard():
            ids = sorted(text(i) for i in link.client.smembers(f"{p}:piles:open"))
            pipe = link.client.pipeline(transaction=False)
            for pile_id in ids:
                pipe.hgetall(f"{p}:pile:{pile_id}")
            hashes = pipe.execute()
        return [decode_pile(strs(h), self.live) for h in hashes if h]

    def expire(self, horizon: float) -> None:
        for pile_id in self._link.run("expire_piles", _num(horizon)):
            while self._link.run("clean_pile", text(pile_id), _CLEAN_BATCH):
                pass


class RedisResultLogs:
    """Each pile's log is its `P:pile:ID:log` list of job ids; the records are the jobs' hashes."""

    def __init__(self, link: Link, piles: RedisPileRecords, jobs: RedisJobRecords) -> None:
        self._link, self._piles, self._jobs = link, piles, jobs

    def append(self, pile: Pile, job: Job, at: float) -> int:
        """As the port says; a member `finish` has logged already (the same script) keeps its position."""
        if job.position >= 0:
            return job.position
        reply = self._link.run("append", pile.id, job.id, job.status, _num(at))
        if not reply:  # the pile expired meanwhile: nothing reads it any more
            return -1
        job.position = int(reply[0])
        decode_pile(orjson.loads(reply[1]), self._piles.live)
        return job.position

    def read(
        self, pile: Pile, after: int, order: str, limit: int | None = None
    ) -> tuple[list[Job | Evicted], int, bool]:
        start = after + 1
        submitted = "0" if order == COMPLETION else "1"
        reply = self._link.run("read", pile.id, start, -1 if limit is None else limit, submitted)
        if not reply:  # expired: its stream is over
            return [], start, True
        end, closed, size, hashes = reply
        live = self._jobs.live
        records = [decode_job(orjson.loads(h), live) for h in hashes]
        return records, int(end), closed == b"1" and int(end) >= int(size)
