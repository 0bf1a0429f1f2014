"""The greenpool client: a Python client and the `greenpool` client sub-commands. Speaks HTTP only."""

from .client import (
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    GreenpoolError,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    Pile,
    QueueFull,
    Unauthorized,
    Unavailable,
    ValidationError,
)

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
