"""`service.app:app`, what gunicorn loads: the app of `service.api.app`, built on first access."""

from typing import Any

from .api import app as _api_app
from .api.app import GreenpoolApp, create_app

__all__ = ["GreenpoolApp", "create_app"]


def __getattr__(name: str) -> Any:
    """`service.app.app`: the app built from the environment inside the worker process."""
    if name == "app":
        return _api_app.app
    raise AttributeError(name)
