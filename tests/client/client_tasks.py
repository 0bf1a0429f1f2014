"""Plugin tasks for the client tests (loaded with GREENPOOL_PLUGINS=tests.client.client_tasks).

* `client_value(value, fail=False)` returns `value`, or raises ValueError when `fail`: one task whose items
  can succeed or fail, so a single pile or map can mix outcomes.
"""

from __future__ import annotations

from typing import Any

from service.tasks import task


@task(name="client_value")
def client_value(value: Any = None, fail: bool = False) -> Any:
    """Return `value`; raise ValueError(f"bad {value}") instead when `fail`."""
    if fail:
        raise ValueError(f"bad {value}")
    return value
