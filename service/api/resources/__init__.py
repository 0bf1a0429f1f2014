"""HTTP resources: thin falcon responders, one module per group of routes, over the engine."""

from .health import HealthResource, OpenAPIResource, ReadyResource
from .history import PoolHistoryResource
from .jobs import JobResource, JobsResource
from .piles import MapResource, PileCloseResource, PileJobsResource, PileResource, PileResultsResource, PilesResource
from .pool import NamedPoolResource, PoolResource, PoolsResource
from .tasks import TasksResource

__all__ = [
    "HealthResource",
    "JobResource",
    "JobsResource",
    "MapResource",
    "NamedPoolResource",
    "PileCloseResource",
    "PileJobsResource",
    "PileResource",
    "PileResultsResource",
    "PilesResource",
    "OpenAPIResource",
    "PoolHistoryResource",
    "PoolResource",
    "PoolsResource",
    "ReadyResource",
    "TasksResource",
]
