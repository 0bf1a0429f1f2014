"""Support for the operations tests: real greenpool servers on loopback, and small HTTP helpers.

`OpsServer.start(...)` runs either `python -m gunicorn -k service.worker.GreenWorker ... service.app:app` or
(`cli=True`) `python -m service.cli serve ...` on a free 127.0.0.1 port, captures stdout and stderr to files,
waits for `/healthz` within a bounded deadline, and `stop()` always ends it (SIGTERM, then SIGKILL of the
process group it started). Every HTTP call is bounded by `HTTP_TIMEOUT`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests
from serverkit import free_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
PYTHON = sys.executable
PLUGINS = "tests.ops.ops_tasks"
HTTP_TIMEOUT = 10.0
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")
POOL_GAUGES = ("size", "running", "free", "waiting", "queued")



def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll `predicate` until it returns a truthy value (returned) or `timeout` s pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {last!r})")
        time.sleep(interval)


class OpsServer:
    """One server process we started, its port and its captured output."""

    def __init__(self, proc: subprocess.Popen, port: int, stdout: Path, stderr: Path) -> None:
        self.proc = proc
        self.port = port
        self.stdout_path = stdout
        self.stderr_path = stderr
        self.url = f"http://127.0.0.1:{port}"
        self.http = requests.Session()

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
        port = port or free_port()
        bind = f"127.0.0.1:{port}"
        if command is not None:
            cmd = list(command)
        elif cli:
            cmd = [PYTHON, "-m", "service.cli", "serve", "--bind", bind, "--graceful-timeout", "5", *args]
        else:
            cmd = [PYTHON, "-m", "gunicorn", "-k", "service.worker.GreenWorker", "--bind", bind, "--workers", "1",
                   "--no-control-socket", "--graceful-timeout", "5", *args, "service.app:app"]  # fmt: skip
        if command is not None:  # exactly the environment given (e.g. an image's), nothing of this process's
            full_env = {"PYTHONUNBUFFERED": "1", **(env or {})}
        else:
            full_env = {k: v for k, v in os.environ.items() if not k.startswith("GREENPOOL_")}
            full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
            full_env.update({"PYTHONUNBUFFERED": "1", "GREENPOOL_PLUGINS": PLUGINS, **(env or {})})
        stdout, stderr = directory / f"server-{port}.stdout", directory / f"server-{port}.stderr"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=full_env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
            )
        server = cls(proc, port, stdout, stderr)
        try:
            server.wait_healthy(boot_timeout)
        except BaseException:
            server.stop(timeout=2)
            raise
        return server

    def wait_healthy(self, timeout: float) -> None:
        """Bounded wait for `GET /healthz` → 200; AssertionError with the server's stderr otherwise."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.stderr()}")
            try:
                resp = requests.get(self.url + "/healthz", timeout=1)
                if resp.status_code == 200:
                    return
                last = resp.status_code
            except requests.RequestException as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"no /healthz within {timeout} s (last: {last!r}):\n{self.stderr()}")

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to `timeout` s, then SIGKILL the process group; returns the exit code."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left of the session we started
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return None

    # -- HTTP helpers ------------------------------------------------------------------------------------
    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET `path` (bounded)."""
        return self.http.get(self.url + path, timeout=HTTP_TIMEOUT, **kwargs)

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
        resp = self.http.post(self.url + "/v1/jobs", json=body, timeout=HTTP_TIMEOUT)
        assert resp.status_code in (200, 202), resp.text
        return resp.json()["id"]

    def job(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        """`GET /v1/jobs/{id}` (long-polls `wait` s)."""
        resp = self.http.get(f"{self.url}/v1/jobs/{job_id}", params={"wait": wait}, timeout=HTTP_TIMEOUT + wait)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def cancel(self, job_id: str) -> None:
        """`DELETE /v1/jobs/{id}`."""
        resp = self.http.delete(f"{self.url}/v1/jobs/{job_id}", timeout=HTTP_TIMEOUT)
        assert resp.status_code == 200, resp.text

    def resize(self, size: int) -> dict[str, Any]:
        """`PATCH /v1/pool`."""
        resp = self.http.patch(self.url + "/v1/pool", json={"size": size}, timeout=HTTP_TIMEOUT)
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
