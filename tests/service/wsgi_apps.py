"""A small WSGI app for the worker tests: hello, streamed/slow/blocking responses, and observable close/drain.

Routes (query parameters in brackets):
  /hello                      "hello <pid>", with a Content-Length
  /stream [n, pause, marker]  n chunks, `pause` seconds apart (green sleep), no length (so chunked); its
                              close() writes "closed after <k> of <n>" to the file `marker`
  /slow [s, marker]           sleeps `s` seconds (green), then answers "slow <pid>"; with `marker`, how
                              the sleep ended ("slept" or the exception's name) is written to that file
  /block [s]                  blocks the whole hub for `s` seconds (time.sleep): a bug on purpose
  /echo                       after 0.2 s, answers the request body
  /ready                      200, or 503 once service.lifecycle says the worker is draining
  /file [path, length]        the file at `path` through wsgi.file_wrapper (sendfile); with length=1 a
                              Content-Length is set, else the response is chunked

With GP_TEST_DRAIN_MARKER set, a drain callback writes "draining" to that file, then parks for
GP_TEST_DRAIN_HOLD seconds (default 0) and appends "done" (or "killed" if the grace period ends first).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import pool_core
from service import lifecycle

StartResponse = Callable[..., Any]


class Streamed:
    """An iterator response that yields `n` chunks `pause` seconds apart and records its close()."""

    def __init__(self, n: int, pause: float, marker: str | None) -> None:
        self.n = n
        self.pause = pause
        self.marker = marker
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self.n):
            if i:
                pool_core.sleep(self.pause)
            self.sent += 1
            yield f"chunk {i}\n".encode()

    def close(self) -> None:
        """Record that the server closed the iterator, and after how many chunks."""
        if self.marker:
            _write(self.marker, f"closed after {self.sent} of {self.n}\n")


def _write(path: str, text: str) -> None:
    """Append `text` to the file at `path`."""
    with open(path, "a") as f:
        f.write(text)


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    """A plain-text response with a Content-Length."""
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def app(environ: dict[str, Any], start_response: StartResponse) -> Any:
    """Route a request (see the module docstring)."""
    path = environ["PATH_INFO"]
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    pid = os.getpid()
    if path == "/hello":
        return _text(start_response, "200 OK", f"hello {pid}")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Streamed(int(query.get("n", "3")), float(query.get("pause", "0.2")), query.get("marker"))
    if path == "/slow":
        ended = "slept"
        try:
            pool_core.sleep(float(query.get("s", "1")))
        except BaseException as exc:
            ended = type(exc).__name__
            raise
        finally:
            if query.get("marker"):
                _write(query["marker"], ended + "\n")
        return _text(start_response, "200 OK", f"slow {pid}")
    if path == "/block":
        time.sleep(float(query.get("s", "1")))
        return _text(start_response, "200 OK", f"blocked {pid}")
    if path == "/echo":
        pool_core.sleep(0.2)  # read the body only after a while
        return _text(start_response, "200 OK", environ["wsgi.input"].read().decode())
    if path == "/ready":
        if lifecycle.draining():
            return _text(start_response, "503 Service Unavailable", "draining")
        return _text(start_response, "200 OK", "ready")
    if path == "/file":
        file_path = query["path"]
        headers = [("Content-Type", "application/octet-stream")]
        if query.get("length") == "1":
            headers.append(("Content-Length", str(os.path.getsize(file_path))))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](open(file_path, "rb"))  # noqa: SIM115 - the server closes it
    return _text(start_response, "404 Not Found", "not found")


def _on_drain() -> None:
    """Test drain callback: record the drain, hold the exit for GP_TEST_DRAIN_HOLD seconds, record the end."""
    marker = os.environ["GP_TEST_DRAIN_MARKER"]
    _write(marker, "draining\n")
    try:
        pool_core.sleep(float(os.environ.get("GP_TEST_DRAIN_HOLD", "0")))
    except pool_core.GreenletExit:
        _write(marker, "killed\n")
        raise
    _write(marker, "done\n")


if os.environ.get("GP_TEST_DRAIN_MARKER"):
    lifecycle.on_drain(_on_drain)
