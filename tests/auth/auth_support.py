"""Tokens and a small requests wrapper for the authentication tests (loopback servers only)."""

from __future__ import annotations

import time
from typing import Any

import requests

#: name → (name, role, secret) of the tokens `auth_server` is configured with.
TOKENS = {
    "alice": ("alice", "submit", "alice-secret-0123456789"),
    "bob": ("bob", "submit", "bob-secret-0123456789abc"),
    "root": ("root", "admin", "root-secret-0123456789ab"),
}
CHALLENGE = 'Bearer realm="greenpool"'
HTTP_TIMEOUT = 10.0


def tokens_env(*tokens: tuple[str, str, str]) -> str:
    """`GREENPOOL_TOKENS` for (name, role, secret) triples."""
    return ",".join(":".join(t) for t in tokens)


def bearer(who: str | None) -> dict[str, str]:
    """The Authorization header of `who` (a TOKENS name, or None for no header)."""
    return {} if who is None else {"Authorization": f"Bearer {TOKENS[who][2]}"}


class Api:
    """One session to a server; every call names who makes it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def call(self, who: str | None, method: str, path: str, headers: dict[str, str] | None = None,
             **kwargs: Any) -> requests.Response:  # fmt: skip
        """One request as `who`, bounded in time."""
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.request(method, self.url + path, headers={**bearer(who), **(headers or {})}, **kwargs)

    def submit(self, who: str | None, body: dict[str, Any], key: str | None = None, **kwargs: Any) -> requests.Response:
        """POST /v1/jobs as `who`, with an Idempotency-Key if given."""
        headers = {} if key is None else {"Idempotency-Key": key}
        return self.call(who, "POST", "/v1/jobs", headers=headers, json=body, **kwargs)

    def job(self, who: str, body: dict[str, Any]) -> dict[str, Any]:
        """Submit and return the accepted job (asserts 202)."""
        response = self.submit(who, body)
        assert response.status_code == 202, response.text
        return response.json()

    def submitted(self) -> int:
        """The pool's `submitted` counter (read as root)."""
        response = self.call("root", "GET", "/v1/pool")
        assert response.status_code == 200, response.text
        return response.json()["submitted"]

    def wait_until(self, predicate: Any, timeout: float = 5.0, what: str = "") -> None:
        """Poll `predicate()` every 50 ms until true (bounded)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
            time.sleep(0.05)
