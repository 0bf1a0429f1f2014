"""The notifier: wakes long-polls when a job ends and result streams when a pile changes.

It lives beside the store, never in a record: an Event exists only while someone waits on it, so a job
or pile nobody watches costs one dict lookup when it changes. It also counts each pile's open readers.
"""

from __future__ import annotations

from pool_core import Event

__all__ = ["Notifier"]


class Notifier:
    """Events keyed by job id (`job_ended`) and pile id (`pile_changed`), created by the first waiter."""

    def __init__(self) -> None:
        self._jobs: dict[str, Event] = {}
        self._piles: dict[str, Event] = {}
        self.readers: dict[str, int] = {}  # pile id → result streams open on it now

    def job_event(self, job_id: str) -> Event:
        """The Event sent when job `job_id` ends (check the job's status before parking on it)."""
        event = self._jobs.get(job_id)
        if event is None:
            event = self._jobs[job_id] = Event()
        return event

    def job_ended(self, job_id: str) -> None:
        """Wake whoever waits for this job."""
        if self._jobs:
            event = self._jobs.pop(job_id, None)
            if event is not None:
                event.send(None)

    def pile_event(self, pile_id: str) -> Event:
        """The Event sent at the pile's next change: take it *before* reading the pile, so a change made while
        the reader writes what it read wakes it at once."""
        event = self._piles.get(pile_id)
        if event is None:
            event = self._piles[pile_id] = Event()
        return event

    def pile_changed(self, pile_id: str) -> None:
        """Wake the pile's readers (a result was logged, or it was closed)."""
        event = self._piles.pop(pile_id, None)
        if event is not None:
            event.send(None)

    def reading(self, pile_id: str, delta: int) -> None:
        """A stream on the pile opened (+1) or ended (-1)."""
        left = self.readers.get(pile_id, 0) + delta
        if left:
            self.readers[pile_id] = left
        else:
            self.readers.pop(pile_id, None)
