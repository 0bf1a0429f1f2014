"""Piles and maps larger than the server takes in one request (413 with `unit: jobs`: the pile or map cap,
or one client's share of the queue), sent as several; their records stream as one, each `index` its
position in the whole request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .streams import Pile

__all__ = ["SplitPile", "shifted"]


def shifted(record: dict[str, Any], offset: int) -> dict[str, Any]:
    """`record` with its `index` moved by `offset` (its part's first position in the whole request)."""
    if offset:
        record["index"] += offset
    return record


class SplitPile:
    """The piles one request's jobs were split into: iterate it for every record (the parts in turn, each in
    its order, so `submitted` order is the whole request's), `ids` and `summary()` for all of them."""

    def __init__(self, parts: list[tuple[int, Pile]], order: str) -> None:
        self.parts = parts  # (offset of the part's first job in the whole request, its pile)
        self.order = order

    def __repr__(self) -> str:
        return f"<SplitPile {self.ids} order={self.order}>"

    @property
    def ids(self) -> list[str]:
        """The parts' pile ids, in request order."""
        return [pile.id for _, pile in self.parts]

    @property
    def id(self) -> str:
        """The first part's id (where a single pile's id is expected)."""
        return self.parts[0][1].id

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for offset, pile in self.parts:
            for record in pile:
                yield shifted(record, offset)

    def summary(self) -> dict[str, Any]:
        """The parts' summaries added up (`size`, `done`, `pending`, …), `closed` if all are, and `ids`."""
        total: dict[str, Any] = {}
        closed = True
        for _, pile in self.parts:
            for key, value in pile.summary().items():
                if key == "closed":
                    closed = closed and bool(value)
                elif isinstance(value, int) and not isinstance(value, bool):
                    total[key] = total.get(key, 0) + value
        total.update(closed=closed, ids=self.ids)
        return total
