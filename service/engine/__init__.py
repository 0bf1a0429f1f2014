"""The engine layer: jobs in, results out. Speaks no HTTP; its errors are in `service.engine.errors`.

It re-exports the store ports its callers type their collaborators with, so the API never imports storage.
"""

from ..storage.ports import IdempotencyKeys, Store
from ..storage.records import COMPLETION, QUEUED, RUNNING, STATUSES, SUBMITTED, TERMINAL, Job, Pile, rfc3339
from .admission import JobSpec
from .engine import Engine
from .retries import RETRYING, JobOptions
from .stores import StoreError, check_store, open_store

__all__ = [
    "COMPLETION", "QUEUED", "RETRYING", "RUNNING", "STATUSES", "SUBMITTED", "TERMINAL", "Engine", "IdempotencyKeys",
    "Job", "JobOptions", "JobSpec", "Pile", "Store", "StoreError", "check_store", "open_store", "rfc3339",
]  # fmt: skip
