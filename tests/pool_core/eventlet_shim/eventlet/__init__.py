"""A stand-in `eventlet` made of pool_core, so eventlet's own tests run against pool_core (never the real one)."""

from pool_core import *  # noqa: F403

from . import hubs, pools, support  # noqa: F401  (the submodules eventlet's tests import from the package)
