"""A pile's result stream on the engine's side: batches of records read from the store's result log, parking
on the notifier for new results in between, bounded per batch so a reader that stops reading pins little."""

from __future__ import annotations

from collections.abc import Iterator

from ..storage import Pile
from ..storage.ports import PileRecords, ResultLogs
from .notifier import Notifier

__all__ = ["RECORDS_PER_BATCH", "follow"]

RECORDS_PER_BATCH = 64  # result records read and handed to a stream at a time


def follow(notifier: Notifier, piles: PileRecords, results: ResultLogs, pile: Pile, order: str, after: int,
           heartbeat: float | None) -> Iterator[list[tuple[int, dict]]]:  # fmt: skip
    """Yield batches of `(position, record)` from stream position `after + 1` on, parking for new
    results in between; an empty batch after `heartbeat` idle seconds lets the caller keep the
    connection alive. A batch holds at most `RECORDS_PER_BATCH` of the records that are ready (so a
    reader that stops reading pins a bounded amount, whatever the pile's size); the next batch follows at
    once. The pile counts as read (`readers`) from the first batch asked for until the iterator is
    closed or ends."""
    limit = RECORDS_PER_BATCH
    notifier.reading(pile.id, 1)
    try:
        position = after + 1
        while True:
            changed = notifier.pile_event(pile.id)
            jobs, end, over = results.read(pile, position - 1, order, limit)
            if jobs:
                yield [(position + i, job.result_record()) for i, job in enumerate(jobs)]
            if over:
                return
            position = end
            if len(jobs) == limit:  # more may be ready now
                continue
            if not jobs and piles.get(pile.id) is None:  # nothing new: it may have expired (then nothing will come)
                return
            changed.wait(heartbeat)  # returns at once if results arrived while the batch was written
            if not changed.ready():
                yield []
    finally:
        notifier.reading(pile.id, -1)
