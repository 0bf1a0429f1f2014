"""`eventlet.pools` (resource pools) has no pool_core counterpart: empty, so that importing it succeeds.

The tests built on it are excluded from the run (see test_eventlet_greenpool.py).
"""
