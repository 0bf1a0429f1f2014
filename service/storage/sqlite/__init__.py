"""The SQLite store: the ports in memory, journaled to one SQLite file by one writer thread (design §7)."""

from .schema import SCHEMA_VERSION
from .store import SqliteStore

__all__ = ["SCHEMA_VERSION", "SqliteStore"]
