"""`eventlet.support`: only the `greenlets` module eventlet's tests use."""
