"""Support for the operations tests: real greenpool servers (serverkit) on loopback, and small HTTP helpers.

`OpsServer.start(...)` starts gunicorn with GreenWorker, `greenpool serve` (`cli=True`), or `command` as given
(a built image's entrypoint) through serverkit, with the shared plugin tasks and a 5 s graceful timeout.
Every HTTP call is bounded by `HTTP_TIMEOUT`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import serverkit
from serverkit import HTTP_TIMEOUT, REPO, free_port

__all__ = ["HTTP_TIMEOUT", "REPO", "free_port"]

ARTIFACTS = REPO / "tests" / "artifacts"
PLUGINS = "tests.plugins.tasks"
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")
POOL_GAUGES = ("size", "running", "held", "free", "waiting", "queued", "delayed")


class OpsServer(serverkit.Server):
    """One server process we started, with the API calls the operations tests make."""

    @classmethod
    def start(
        cls,
        directory: Path,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        *,
        cli: bool = False,
        command: Sequence[str] | None = None,
        port: int | None = None,
        cwd: Path = REPO,
        boot_timeout: float = 30.0,
    ) -> OpsServer:
        """Start a server (gunicorn, `greenpool serve`, or `command` as given) and wait for /healthz."""
        if command is None:
            env, args = {"GREENPOOL_PLUGINS": PLUGINS, **(env or {})}, ["--graceful-timeout", "5", *args]
        return serverkit.start_server(directory, env, args, serve=cli, command=command, port=port, cwd=cwd,
                                      log_level="info", boot_timeout=boot_timeout, cls=cls)  # fmt: skip

    def pool(self) -> dict[str, Any]:
        """`GET /v1/pool`."""
        resp = self.get("/v1/pool")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def submit(self, task: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> str:
        """`POST /v1/jobs`; returns the job id."""
        body: dict[str, Any] = {"task": task, "args": args or {}}
        if timeout is not None:
            body["timeout"] = timeout
        resp = self.post("/v1/jobs", json=body)
        assert resp.status_code in (200, 202), resp.text
        return resp.json()["id"]

    def job(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        """`GET /v1/jobs/{id}` (long-polls `wait` s)."""
        resp = self.get(f"/v1/jobs/{job_id}", params={"wait": wait}, timeout=HTTP_TIMEOUT + wait)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def cancel(self, job_id: str) -> None:
        """`DELETE /v1/jobs/{id}`."""
        resp = self.delete(f"/v1/jobs/{job_id}")
        assert resp.status_code == 200, resp.text

    def resize(self, size: int) -> dict[str, Any]:
        """`PATCH /v1/pool`."""
        resp = self.patch("/v1/pool", json={"size": size})
        assert resp.status_code == 200, resp.text
        return resp.json()


def log_records(text: str) -> list[dict[str, Any]]:
    """Every non-empty line of `text` parsed as JSON (AssertionError naming the first line that is not)."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"stderr line {number} is not JSON: {line!r}") from None
        assert isinstance(record, dict), f"stderr line {number} is not a JSON object: {line!r}"
        records.append(record)
    return records
