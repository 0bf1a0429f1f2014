"""An example greenpool plugin module (the README's "Writing tasks"; tests/plugins/test_example_plugin.py runs it).

Load it with `PYTHONPATH=examples/tasks GREENPOOL_PLUGINS=wordcount greenpool serve`.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from pydantic import Field

import pool_core
from service.tasks import reject, task


def _check_wordcount(args: dict[str, Any]) -> None:
    """A rule across fields, run after the type checks: `min_length` may not exceed 20."""
    if args.get("min_length", 1) > 20:
        reject("min_length", "at most 20")


@task(check=_check_wordcount)
def wordcount(text: str, top: Annotated[int, Field(ge=1, le=100)] = 3, min_length: int = 1) -> dict[str, Any]:
    """Count the words of `text` (of at least `min_length` letters): the total and the `top` most common."""
    words = [word for word in text.lower().split() if len(word) >= min_length]
    return {"words": len(words), "top": [[word, n] for word, n in Counter(words).most_common(top)]}


@task(cooperative=True)
def countdown(start: int = 3, interval: float = 0.01) -> list[int]:
    """Count down from `start` to 1, waiting `interval` s between numbers without blocking the hub."""
    numbers = []
    for n in range(start, 0, -1):
        numbers.append(n)
        pool_core.sleep(interval)
    return numbers
