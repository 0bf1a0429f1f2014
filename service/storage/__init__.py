"""The storage layer: the ports the engine stores through (`ports`), the records they hold, and the stores."""

from .memory import MemoryStore
from .ports import IdempotencyKeys, JobQueue, JobRecords, PileRecords, PoolSizes, ResultLogs, Store, StoreError
from .records import Job, Pile

__all__ = [
    "IdempotencyKeys", "Job", "JobQueue", "JobRecords", "MemoryStore", "Pile", "PileRecords", "PoolSizes",
    "ResultLogs", "Store", "StoreError",
]  # fmt: skip
