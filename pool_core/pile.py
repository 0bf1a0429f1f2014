"""`GreenPile`: spawn calls, then iterate over their results as they finish (completion order).

Unlike eventlet, whose pile yields in spawn order, results come fastest-first, as the reference page
specifies; `GreenPool.imap` is the ordered form. Several piles may share one pool.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from .greenthread import GreenThread
from .pool import GreenPool
from .waitqueue import WaitQueue

__all__ = ["GreenPile"]


class GreenPile:
    """Results of the calls spawned into it, in the order the calls finish.

    `next()` parks until a result is ready, returns it (or raises the call's exception), and raises
    StopIteration when nothing is outstanding. `len()` counts results not yet taken (running or ready).
    """

    def __init__(self, size_or_pool: int | GreenPool = 1000) -> None:
        self.pool = size_or_pool if isinstance(size_or_pool, GreenPool) else GreenPool(size_or_pool)
        self.used = False
        self._finished: deque[GreenThread] = deque()
        self._outstanding = 0
        self._consumers = WaitQueue()

    def spawn(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> GreenThread:
        """Run `func(*args, **kwargs)` through the pool; its result joins the pile when it ends."""
        self.used = True
        self._outstanding += 1
        try:
            gt = self.pool.spawn(func, *args, **kwargs)
        except BaseException:
            self._outstanding -= 1
            raise
        gt.link(self._collect)
        return gt

    def _collect(self, gt: GreenThread) -> None:
        self._outstanding -= 1
        self._finished.append(gt)
        self._consumers.wake_one()

    def __len__(self) -> int:
        return self._outstanding + len(self._finished)

    def __iter__(self) -> GreenPile:
        return self

    def __next__(self) -> Any:
        finished = self._finished
        while not finished:
            if not self._outstanding:
                raise StopIteration
            self._consumers.park()
        return finished.popleft().wait()

    next = __next__
