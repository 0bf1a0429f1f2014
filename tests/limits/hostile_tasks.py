"""Plugin tasks for the hostile-client tests (GREENPOOL_PLUGINS=tests.limits.hostile_tasks)."""

from __future__ import annotations

from service.tasks import task


@task(name="hostile_surrogate")
def hostile_surrogate() -> dict:
    """Returns a lone surrogate, as a key and as a value: a task may do that, and the API must serve it."""
    return {"lone": "\ud800", "\udfff": "key"}


@task(name="hostile_text")
def hostile_text(text: str, repeat: int = 1) -> str:
    """Returns `text` `repeat` times (a result of a chosen size in UTF-8 and as JSON)."""
    return text * repeat


@task(name="hostile_list")
def hostile_list(n: int) -> list:
    """Returns a list of `n` zeros: as compact JSON 2n+1 bytes, with `json.dumps`'s `, ` separators 3n."""
    return [0] * n
