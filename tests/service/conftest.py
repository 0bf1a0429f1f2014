"""Fixtures that run a real gunicorn (with service.worker.GreenWorker) on a free loopback port (serverkit)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serverkit import Server, Servers

HERE = Path(__file__).resolve().parent


@pytest.fixture
def gunicorn_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start gunicorn servers: `start(*cli_args, app=..., env=..., ready_path=..., tls=...)`; all stopped at
    teardown.

    `app` defaults to the test app (tests/service/wsgi_apps.py); any "module:callable" importable from the
    repository root works (e.g. "service.app:app"). `env` adds environment variables. With `--certfile` and
    `--keyfile` among the arguments, pass `tls` (a client SSLContext trusting the certificate).
    """
    servers = Servers(tmp_path, pythonpath=[HERE], log_level="info", ready_status=None)

    def start(
        *args: str,
        app: str = "wsgi_apps:app",
        env: dict[str, str] | None = None,
        ready_path: str = "/",
        boot_timeout: float = 20.0,
        tls: ssl.SSLContext | None = None,
    ) -> Server:
        return servers.start(env, ["--log-level", "info", *args], app=app, ready_path=ready_path,
                             boot_timeout=boot_timeout, tls=tls)  # fmt: skip

    yield start
    servers.close()


@pytest.fixture
def gunicorn_server(gunicorn_factory: Callable[..., Server]) -> Server:
    """One gunicorn with GreenWorker serving the test app with default settings."""
    return gunicorn_factory()
