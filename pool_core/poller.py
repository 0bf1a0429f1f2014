"""`select.epoll`'s interface over `selectors`: the hub's poller on platforms without epoll."""

from __future__ import annotations

import errno
import selectors

__all__ = ["IN", "OUT", "SelectorPoller"]

#: epoll's event bits (poll's too, so the fallback shares them).
IN = 0x001
OUT = 0x004


class SelectorPoller:
    """`select.epoll`'s interface over `selectors`, for platforms without epoll."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def register(self, fd: int, mask: int) -> None:
        try:
            self._selector.register(fd, _selector_events(mask))
        except KeyError:
            raise FileExistsError(errno.EEXIST, "fd already registered") from None

    def modify(self, fd: int, mask: int) -> None:
        try:
            self._selector.modify(fd, _selector_events(mask))
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "fd not registered") from None

    def unregister(self, fd: int) -> None:
        try:
            self._selector.unregister(fd)
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "fd not registered") from None

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        return [
            (key.fd, (IN if events & selectors.EVENT_READ else 0) | (OUT if events & selectors.EVENT_WRITE else 0))
            for key, events in self._selector.select(timeout)
        ]

    def close(self) -> None:
        self._selector.close()


def _selector_events(mask: int) -> int:
    return (selectors.EVENT_READ if mask & IN else 0) | (selectors.EVENT_WRITE if mask & OUT else 0)
