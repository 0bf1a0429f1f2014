"""The engine layer: jobs in, results out. Speaks no HTTP."""

from .engine import Engine, JobSpec

__all__ = ["Engine", "JobSpec"]
