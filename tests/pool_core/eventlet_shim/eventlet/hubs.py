"""`eventlet.hubs`: the hub of the current OS thread."""

from pool_core.hub import get_hub  # noqa: F401
