"""Script calls gathered into pipelines: what many green threads ask of Redis in one hub pass is one round trip.

A store on Redis makes a few script calls per job (take, finish), each from its own slot's green thread; sent
one by one, each costs a connection checkout, a `sendall`, a `recv` and a hub wake-up, and that, not Redis,
bounds the jobs per second. `Coalescer.call` queues the call and parks; a sender green thread takes every call
queued so far and sends them as one pipeline (each script still atomic on its own), then wakes each caller
with its own reply or error. Up to `senders` pipelines are in flight at once, so Redis runs one batch while
this process encodes the next. A caller killed while it waits leaves its call to complete without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import greenlet
from redis.exceptions import NoScriptError

from pool_core import get_hub, spawn
from pool_core.waitqueue import WaitQueue

__all__ = ["Coalescer"]

_getcurrent = greenlet.getcurrent
_PENDING = object()  # a call's reply before its batch has been answered


class _Call:
    __slots__ = ("args", "reply", "script", "waiter")

    def __init__(self, script: Any, args: Sequence[Any], waiter: greenlet.greenlet | None) -> None:
        self.script, self.args, self.waiter, self.reply = script, args, waiter, _PENDING


class Coalescer:
    """`call(script, args)` runs `script` (a redis-py `Script`) with ARGV `args` (no KEYS) in the next
    pipeline; its reply, or the exception its batch or its own script raised."""

    def __init__(self, client: Any, senders: int = 3, max_batch: int = 512) -> None:
        self.client, self.max_batch = client, max_batch
        self._queued: list[_Call] = []
        self._idle = WaitQueue()  # senders with nothing to send
        self._senders = [spawn(self._send_loop) for _ in range(max(1, senders))]

    def call(self, script: Any, args: Sequence[Any]) -> Any:
        current = _getcurrent()
        call = _Call(script, args, current)
        self._queued.append(call)
        if len(self._queued) == 1:
            self._idle.wake_one()
        hub = get_hub()
        try:
            while call.reply is _PENDING:
                hub.park()  # woken by the sender once the reply is in
        except BaseException:  # killed meanwhile: the call completes without its caller
            call.waiter = None
            raise
        if isinstance(call.reply, BaseException):
            raise call.reply
        return call.reply

    def close(self) -> None:
        for sender in self._senders:
            sender.kill()

    def _send_loop(self) -> None:
        while True:
            if not self._queued:
                self._idle.park()
                continue
            batch, self._queued = self._queued[: self.max_batch], self._queued[self.max_batch :]
            if self._queued:
                self._idle.wake_one()  # more than one batch's worth: another sender takes the rest
            try:
                replies = self._execute(batch)
            except Exception as exc:  # the connection or the server: every call of the batch gets it
                replies = [exc] * len(batch)
            hub = get_hub()
            for call, reply in zip(batch, replies, strict=True):
                call.reply = reply
                if call.waiter is not None:
                    hub.wake(call.waiter)

    def _execute(self, batch: list[_Call]) -> list[Any]:
        """One pipeline of EVALSHAs; a script Redis does not know yet is loaded and its calls sent again."""
        replies = self._pipeline(batch)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # Redis restarted, or SCRIPT FLUSH: load what is missing, once, and run those again
            for script in {batch[i].script for i in missing}:
                script.sha = self.client.script_load(script.script)
            for i, reply in zip(missing, self._pipeline([batch[i] for i in missing]), strict=True):
                replies[i] = reply
        return replies

    def _pipeline(self, batch: list[_Call]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for call in batch:
            pipe.execute_command("EVALSHA", call.script.sha, 0, *call.args)
        return pipe.execute(raise_on_error=False)
