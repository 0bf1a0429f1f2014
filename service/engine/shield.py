"""Engine calls that must run to their end once begun, even if the request calling them is killed.

The server kills a request's green thread when its client goes away. With a store whose port calls park
(Redis: `Store.parks`), such a kill could land between a queue's `reserve` and its `push`, or between a
`finish` and its `discard`/result `append`, leaving a place reserved and never filled or a pile that never
completes. A `shielded` engine method runs in a green thread of its own that the caller only waits for: the
caller may be killed, the call still finishes. With stores that never park it is a plain call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from pool_core import spawn

__all__ = ["shielded"]

F = TypeVar("F", bound=Callable[..., Any])


def shielded(method: F) -> F:
    """Run `method` to its end in a green thread of its own when `self.store.parks` (else call it)."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(self.store, "parks", False):
            return method(self, *args, **kwargs)
        return spawn(method, self, *args, **kwargs).wait()

    return run  # type: ignore[return-value]
