"""`Idempotency-Key` on `POST /v1/jobs` and `POST /v1/piles`: a retry returns the original, never a second run.

A key (1-255 visible ASCII characters) is scoped to the principal that sent it (the token's name) and is
remembered with the id of the job or pile its request created and a fingerprint of the request (the route
and the body as canonical JSON). A later request with the same key and fingerprint gets the original back
(`Idempotent-Replayed: true`); the same key with another body or route is a 422 problem
(`idempotency-key-reused`). Only successful creations are remembered: after a 4xx/5xx the key is free.

A key lives as long as the record it points to (until `GREENPOOL_RESULT_TTL` seconds after the job ended or
the pile completed), and at most `GREENPOOL_MAX_RECORDS` keys are kept (oldest forgotten first). Keys are
held by the store's idempotency port, claim-style: the first request claims its key for a fresh id before
anything is created, so of two requests racing with one key only one creates.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import falcon

from ..engine import Engine, IdempotencyKeys
from ..engine.errors import JobNotFound, PileNotFound
from .errors import BadRequest, IdempotencyKeyReused

__all__ = ["HEADER", "REPLAYED", "IdempotencyStore"]

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
JOB, PILE = "job", "pile"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_PRUNE = 2  # expired keys dropped from the old end per successful creation (amortised)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    target_id: str
    fingerprint: str


class IdempotencyStore:
    """Keys seen per principal (held by `keys`, the store's port) → the job or pile their first request created."""

    def __init__(self, engine: Engine, keys: IdempotencyKeys) -> None:
        self.engine = engine
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    @staticmethod
    def key(req: falcon.Request) -> str | None:
        """The request's Idempotency-Key (None if absent); 400 if it is not 1-255 visible ASCII characters."""
        raw = req.get_header(HEADER)
        if raw is None:
            return None
        if not _KEY.fullmatch(raw):
            raise BadRequest(f"{HEADER} must be 1 to 255 visible ASCII characters", parameter=HEADER)
        return raw

    @staticmethod
    def fingerprint(kind: str, body: Any) -> str:
        """What makes two requests the same request: the route kind and the body as canonical JSON."""
        canonical = json.dumps([kind, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()

    def create(self, owner: str | None, key: str | None, kind: str, body: Any,
               create: Callable[[str | None], T]) -> tuple[T, bool]:  # fmt: skip
        """`create(id)` (id None without a key), unless `key` (from `owner`) already created a job or pile that
        is still known: then that one, and True (a replay); 422 if the key came with another request."""
        if key is None:
            return create(None), False
        slot = (owner, key)
        entry = _Entry(kind, self.engine.new_id(), self.fingerprint(kind, body))
        found = self.keys.claim(slot, entry)
        if found is not None and not self._live(found):  # its record expired: so has the key
            self.keys.release(slot, found)
            found = self.keys.claim(slot, entry)
        if found is not None:
            if found.kind != kind or found.fingerprint != entry.fingerprint:
                message = f"this {HEADER} was already used for a different request; use a new key for a new request"
                raise IdempotencyKeyReused(message, [{"field": "", "message": message}])
            return self._target(found), True
        try:
            created = create(entry.target_id)
        except BaseException:  # only successful creations are remembered
            self.keys.release(slot, entry)
            raise
        self.keys.prune(self._live, _PRUNE)
        return created, False

    def _target(self, entry: _Entry) -> Any:
        """The job or pile `entry` points to; JobNotFound or PileNotFound if it is gone."""
        if entry.kind == JOB:
            return self.engine.get(entry.target_id)
        return self.engine.get_pile(entry.target_id)

    def _live(self, entry: _Entry) -> bool:
        try:
            self._target(entry)
        except (JobNotFound, PileNotFound):
            return False
        return True
