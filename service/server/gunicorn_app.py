"""Running gunicorn in-process with greenpool's settings: one GreenWorker, JSON logs, drain timing."""

from __future__ import annotations

import math
from typing import Any

from gunicorn.app.base import BaseApplication

from ..api.app import create_app
from ..config import Config

WORKER_CLASS = "service.server.worker.GreenWorker"


def gunicorn_options(config: Config) -> dict[str, Any]:
    """gunicorn settings derived from `config` (one worker process: one process is one pool)."""
    return {
        "bind": [config.bind],
        "workers": 1,
        "worker_class": WORKER_CLASS,
        "worker_connections": config.worker_connections,
        "keepalive": math.ceil(config.keepalive),  # gunicorn takes whole seconds only
        "graceful_timeout": math.ceil(config.graceful_timeout),
        "timeout": 30,
        "control_socket_disable": True,  # no ~/.gunicorn socket: shared by concurrent servers, unwritable in images
        "loglevel": config.log_level,
        "logconfig_dict": {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "service.logs.JsonLines", "stream": "ext://sys.stderr"}},
            "root": {"level": config.log_level.upper(), "handlers": ["stderr"]},
            "loggers": {
                "gunicorn.error": {"level": config.log_level.upper(), "handlers": [], "propagate": True},
                # one line per request comes from service.middleware (method, route, status, duration_s)
                "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            },
        },
    }


class GreenpoolApplication(BaseApplication):
    """gunicorn's application object for `service.app:app`, configured from a Config."""

    def __init__(self, config: Config) -> None:
        self.config_obj = config
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.config_obj).items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app(self.config_obj)


def run(config: Config) -> int:
    """Serve until gunicorn exits; returns its exit status."""
    GreenpoolApplication(config).run()
    return 0
