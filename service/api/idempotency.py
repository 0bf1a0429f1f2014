"""`Idempotency-Key` on `POST /v1/jobs` and `POST /v1/piles`: a retry returns the original, never a second run.

A key (1-255 visible ASCII characters) is scoped to the principal that sent it (the token's name) and is
remembered with the id of the job or pile its request created and a fingerprint of the request (the route
and the body as canonical JSON). A later request with the same key and fingerprint gets the original back
(`Idempotent-Replayed: true`); the same key with another body or route is a 422 problem
(`idempotency-key-reused`). Only successful creations are remembered: after a 4xx/5xx the key is free.

A key lives as long as the record it points to (until `GREENPOOL_RESULT_TTL` seconds after the job ended or
the pile completed), and at most `GREENPOOL_MAX_RECORDS` keys are kept (oldest forgotten first). The lookup
and the insertion never park the green thread between them, so two requests with one key on one hub cannot
both create.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import falcon

from ..engine import Engine
from .errors import BadRequest, IdempotencyKeyReused, JobNotFound, PileNotFound

__all__ = ["HEADER", "REPLAYED", "IdempotencyStore"]

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
JOB, PILE = "job", "pile"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    target_id: str
    fingerprint: str


class IdempotencyStore:
    """Keys seen per principal → the job or pile their first request created."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._entries: OrderedDict[tuple[str | None, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

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

    def original(self, owner: str | None, key: str | None, kind: str, body: Any) -> Any:
        """The job or pile this key created for `owner`, if it is still known; 422 if the request differs."""
        if key is None:
            return None
        entry = self._entries.get((owner, key))
        if entry is None:
            return None
        target = self._target(entry)
        if target is None:  # its record expired: so has the key
            del self._entries[(owner, key)]
            return None
        if entry.kind != kind or entry.fingerprint != self.fingerprint(kind, body):
            message = f"this {HEADER} was already used for a different request; use a new key for a new request"
            raise IdempotencyKeyReused(message, [{"field": "", "message": message}])
        return target

    def remember(self, owner: str | None, key: str | None, kind: str, body: Any, target_id: str) -> None:
        """Remember that `key` (from `owner`) created `target_id`; forget expired and excess keys."""
        if key is None:
            return
        entries = self._entries
        entries[(owner, key)] = _Entry(kind, target_id, self.fingerprint(kind, body))
        entries.move_to_end((owner, key))
        limit = max(1, self.engine.config.max_records)
        while len(entries) > limit:
            entries.popitem(last=False)
        for _ in range(2):  # amortised: drop a couple of expired keys from the old end per insertion
            oldest_key, oldest = next(iter(entries.items()))
            if oldest_key == (owner, key) or self._target(oldest) is not None:
                break
            del entries[oldest_key]

    def _target(self, entry: _Entry) -> Any:
        try:
            if entry.kind == JOB:
                return self.engine.get(entry.target_id)
            return self.engine.get_pile(entry.target_id)
        except (JobNotFound, PileNotFound):
            return None
