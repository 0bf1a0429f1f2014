"""pool_core: a small, fast green-thread core on greenlet, with eventlet's pool API.

`import pool_core as eventlet` runs eventlet's pool examples unchanged. One hub per OS thread schedules
green threads cooperatively; GreenPool bounds concurrency; GreenPile yields results as they finish.
"""

from queue import Empty, Full

from .event import Event
from .greenthread import GreenletExit, GreenThread, getcurrent, kill, sleep, spawn, spawn_after, spawn_n
from .hub import Hub, LoopExit, get_hub, reinit_after_fork
from .pile import GreenPile
from .pool import GreenPool
from .queue import LightQueue, Queue
from .semaphore import BoundedSemaphore, Semaphore
from .sockets import GreenSocket, create_connection, listen, wrap_ssl
from .threads import execute
from .timeout import Timeout, with_timeout
from .waitqueue import WaitQueue

__all__ = [
    "BoundedSemaphore",
    "Empty",
    "Event",
    "Full",
    "GreenPile",
    "GreenPool",
    "GreenSocket",
    "GreenThread",
    "GreenletExit",
    "Hub",
    "LightQueue",
    "LoopExit",
    "Queue",
    "Semaphore",
    "Timeout",
    "WaitQueue",
    "create_connection",
    "execute",
    "getcurrent",
    "get_hub",
    "kill",
    "listen",
    "reinit_after_fork",
    "sleep",
    "spawn",
    "spawn_after",
    "spawn_n",
    "with_timeout",
    "wrap_ssl",
]
