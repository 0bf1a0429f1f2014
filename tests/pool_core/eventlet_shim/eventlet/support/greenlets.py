"""`eventlet.support.greenlets`: the greenlet names eventlet re-exports."""

from greenlet import GreenletExit, getcurrent, greenlet  # noqa: F401
