"""The greenpool client: a Python client and the `greenpool` client sub-commands. Speaks HTTP only."""

from .client import Client
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GreenpoolError,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from .streams import Pile

__all__ = [
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "GreenpoolError",
    "JobFailed",
    "NotFound",
    "Pile",
    "PayloadTooLarge",
    "QueueFull",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
]
