"""HTTP resources: thin falcon responders, one module per group of routes, over the engine."""

from .health import HealthResource, OpenAPIResource, ReadyResource
from .jobs import JobResource, JobsResource
from .pool import PoolResource
from .tasks import TasksResource

__all__ = [
    "HealthResource",
    "JobResource",
    "JobsResource",
    "OpenAPIResource",
    "PoolResource",
    "ReadyResource",
    "TasksResource",
]
