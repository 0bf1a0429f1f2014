"""The engine's piles: create, add to, close, read and follow them (design §4's `/v1/piles` rows)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from ..storage import Job, Pile
from ..storage.records import COMPLETION
from .admission import JobSpec
from .errors import Draining, PileClosed, PileNotFound, TooLarge
from .shield import shielded
from .streams import follow

__all__ = ["PileMethods"]

log = logging.getLogger("greenpool.jobs")


class PileMethods:
    """The pile half of `Engine` (a mixin: admission, enqueueing and the stores are the engine's own)."""

    config: Any
    draining: bool
    _piles: Any
    _results: Any
    _notifier: Any
    _ids: Any
    _clock: Any
    _batch: Any
    _admit: Any  # the engine's own steps
    _enqueue: Any
    _close: Any

    @shielded
    def create_pile(self, specs: list[JobSpec], open: bool = False, owner: str | None = None,
                    pile_id: str | None = None, client: str | None = None) -> Pile:  # fmt: skip
        """A new pile of jobs (all accepted or none) in `client`'s share of their pools' queues; closed unless
        `open`."""
        lanes, checked = self._admit(specs, client)
        pile = Pile(pile_id or next(self._ids), owner, self._clock())
        self._piles.add(pile)
        with self._batch():
            for lane, (task, args, timeout, _, options) in zip(lanes, checked, strict=True):
                self._enqueue(lane, task, args, timeout, pile, owner, None, client, options)
        if not open:
            self._close(pile)
        log.info("pile created", extra={"pile": pile.id, "size": len(specs), "open": open})
        return pile

    @shielded
    def add_to_pile(self, pile_id: str, specs: list[JobSpec], client: str | None = None) -> list[Job]:
        """Append jobs to an open pile (all or none, in `client`'s share of the queue); PileClosed if closed."""
        pile = self.get_pile(pile_id)
        if self.draining:
            raise Draining()
        if pile.closed:
            raise PileClosed(pile_id)
        limit = self.config.max_pile_size
        if pile.size + len(specs) > limit:
            raise TooLarge(
                f"pile {pile_id} has {pile.size} jobs; {len(specs)} more would pass the limit of {limit} per pile",
                limit,
            )
        lanes, checked = self._admit(specs, client)
        owner = pile.owner
        with self._batch():
            return [self._enqueue(lane, task, args, timeout, pile, owner, None, client, options)
                    for lane, (task, args, timeout, _, options) in zip(lanes, checked, strict=True)]  # fmt: skip

    def close_pile(self, pile_id: str) -> Pile:
        """Close a pile: its streams end once every job it has has ended (closing twice is harmless)."""
        pile = self.get_pile(pile_id)
        self._close(pile)
        return pile

    def get_pile(self, pile_id: str) -> Pile:
        """The pile with this id; PileNotFound if unknown or expired."""
        pile = self._piles.get(pile_id)
        if pile is None:
            raise PileNotFound(pile_id)
        return pile

    def pile_summary(self, pile: Pile) -> dict[str, Any]:
        """The pile's size and progress, and how many result streams are open on it now (`readers`)."""
        return {**pile.summary(), "readers": self._notifier.readers.get(pile.id, 0)}

    def follow(
        self, pile: Pile, order: str = COMPLETION, after: int = -1, heartbeat: float | None = None
    ) -> Iterator[list[tuple[int, dict]]]:
        """Batches of `(position, record)` of the pile's result stream from `after + 1` on (see `follow`)."""
        return follow(self._notifier, self._piles, self._results, pile, order, after, heartbeat)
