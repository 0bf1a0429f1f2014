"""`greenpool serve` and tokens: without tokens a non-loopback bind is refused (exit 2) unless --insecure (a
warning is logged); with tokens (environment or --tokens-file) it binds. The servers listen on 0.0.0.0 but
every request goes to 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from auth_support import TOKENS, bearer, tokens_env
from serverkit import Server, free_port, run_cli, start_server

GRACE = {"GREENPOOL_GRACEFUL_TIMEOUT": "2"}


def _serve(tmp_path: Path, args: list[str], env: dict[str, str]) -> Server:
    """`greenpool serve` bound to 0.0.0.0 (serverkit), once it answers /healthz on 127.0.0.1."""
    return start_server(tmp_path, {**GRACE, **env}, args, serve=True, bind_host="0.0.0.0", log_level="info")


@pytest.mark.timeout(30)
def test_non_loopback_without_tokens_exits_2(tmp_path: Path) -> None:
    port = free_port()
    refused = run_cli(["serve", "--bind", f"0.0.0.0:{port}"], GRACE)
    assert refused.returncode == 2, refused.stderr
    assert f"refusing to bind 0.0.0.0:{port}" in refused.stderr
    assert "GREENPOOL_TOKENS" in refused.stderr and "--insecure" in refused.stderr


@pytest.mark.timeout(60)
def test_insecure_binds_and_warns(tmp_path: Path) -> None:
    server = _serve(tmp_path, ["--insecure"], {})
    try:
        assert requests.get(f"http://127.0.0.1:{server.port}/v1/pool", timeout=5).status_code == 200  # no auth
    finally:
        assert server.stop() == 0
    text = server.log()
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(r["level"] == "warning" and "insecure" in r["msg"] for r in records), text


@pytest.mark.timeout(60)
def test_tokens_allow_a_non_loopback_bind(tmp_path: Path) -> None:
    secrets = tmp_path / "tokens"
    secrets.write_text(f"root admin {TOKENS['root'][2]}\n")
    env = {"GREENPOOL_TOKENS": tokens_env(TOKENS["alice"])}
    server = _serve(tmp_path, ["--tokens-file", str(secrets)], env)
    try:
        url = server.url
        assert requests.get(url + "/v1/pool", timeout=5).status_code == 401
        assert requests.get(url + "/v1/whoami", headers=bearer("alice"), timeout=5).json()["role"] == "submit"
        assert requests.get(url + "/v1/whoami", headers=bearer("root"), timeout=5).json()["role"] == "admin"
    finally:
        assert server.stop() == 0
    text = server.log()
    assert "insecure" not in text, text
    assert all(secret not in text for _, _, secret in TOKENS.values())
