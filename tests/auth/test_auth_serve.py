"""`greenpool serve` and tokens: without tokens a non-loopback bind is refused (exit 2) unless --insecure (a
warning is logged); with tokens (environment or --tokens-file) it binds. The servers listen on 0.0.0.0 but
every request goes to 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from auth_support import TOKENS, bearer, tokens_env
from serverkit import REPO, free_port


def _env(**extra: str) -> dict[str, str]:
    """The environment without any GREENPOOL_* variable of the caller's, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENPOOL_")}
    return {**env, "PYTHONUNBUFFERED": "1", "GREENPOOL_GRACEFUL_TIMEOUT": "2", **extra}


def _serve(tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, Path, int]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--bind", f"0.0.0.0:{port}", *args],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    return proc, log, port


def _healthy(proc: subprocess.Popen, log: Path, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise AssertionError(f"no /healthz within {timeout}s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(5)


@pytest.mark.timeout(30)
def test_non_loopback_without_tokens_exits_2(tmp_path: Path) -> None:
    port = free_port()
    refused = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--bind", f"0.0.0.0:{port}"],
                             cwd=REPO, env=_env(), capture_output=True, text=True, timeout=25)  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert f"refusing to bind 0.0.0.0:{port}" in refused.stderr
    assert "GREENPOOL_TOKENS" in refused.stderr and "--insecure" in refused.stderr


@pytest.mark.timeout(60)
def test_insecure_binds_and_warns(tmp_path: Path) -> None:
    proc, log, port = _serve(tmp_path, ["--insecure"], _env())
    try:
        _healthy(proc, log, port)
        assert requests.get(f"http://127.0.0.1:{port}/v1/pool", timeout=5).status_code == 200  # no auth
    finally:
        assert _stop(proc) == 0
    text = log.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(r["level"] == "warning" and "insecure" in r["msg"] for r in records), text


@pytest.mark.timeout(60)
def test_tokens_allow_a_non_loopback_bind(tmp_path: Path) -> None:
    secrets = tmp_path / "tokens"
    secrets.write_text(f"root admin {TOKENS['root'][2]}\n")
    env = _env(GREENPOOL_TOKENS=tokens_env(TOKENS["alice"]))
    proc, log, port = _serve(tmp_path, ["--tokens-file", str(secrets)], env)
    try:
        _healthy(proc, log, port)
        url = f"http://127.0.0.1:{port}"
        assert requests.get(url + "/v1/pool", timeout=5).status_code == 401
        assert requests.get(url + "/v1/whoami", headers=bearer("alice"), timeout=5).json()["role"] == "submit"
        assert requests.get(url + "/v1/whoami", headers=bearer("root"), timeout=5).json()["role"] == "admin"
    finally:
        assert _stop(proc) == 0
    text = log.read_text()
    assert "insecure" not in text, text
    assert all(secret not in text for _, _, secret in TOKENS.values())
