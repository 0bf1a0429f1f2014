"""`gunicorn -k service.worker.GreenWorker`: the documented name of the worker class in `service.server`."""

from .server.worker import GreenWorker

__all__ = ["GreenWorker"]
