"""The engine tests' one way to build engines in-process: `engine_factory(registry, store, **config)`, with the
memory store and warning logs unless told, every engine's green threads stopped after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.config import Config
from service.engine import Engine
from service.tasks import Registry


@pytest.fixture
def engine_factory() -> Iterator[Callable[..., Engine]]:
    """`build(registry=None, store=None, **config)`: an Engine on `Config(**config)` (store `memory`, log level
    warning unless given) with `registry` (default: the built-ins) and `store` (default: from the config)."""
    made: list[Engine] = []

    def build(registry: Registry | None = None, store: Any = None, **config: Any) -> Engine:
        settings = {"log_level": "warning", "store": "memory", **config}
        engine = Engine(Config(**settings), registry or Registry.with_builtins(entry_points=False), store)
        made.append(engine)
        return engine

    yield build
    for engine in made:
        for thread in engine.threads():
            thread.kill()
