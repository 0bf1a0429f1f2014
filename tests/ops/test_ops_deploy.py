"""Deployment files, checked without a Docker engine: docker-compose.yml and deploy/prometheus.yml are parsed
and checked; the Dockerfile's instructions are checked, then its COPY and RUN steps are replayed into a fresh
virtualenv (a stand-in for the image) and the image's CMD is started there — on a loopback port only — until
`/healthz` answers, its HEALTHCHECK command passes, and SIGTERM stops it cleanly."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import venv
from pathlib import Path

import pytest
import yaml
from ops_support import REPO, OpsServer, free_port
from tools import needs, which

from service.config import ENV_PREFIX, Config

DOCKER_STOP_DEFAULT_S = 10  # `docker stop` sends SIGKILL this long after STOPSIGNAL unless told otherwise
KNOWN_VARIABLES = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Config) if f.name != "extra"} | {
    "GREENPOOL_INSECURE"
}


# -- the Dockerfile, parsed ----------------------------------------------------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions


def only(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    """The arguments of every `keyword` instruction."""
    return [rest for kw, rest in instructions if kw == keyword]


def env_of(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """Every ENV instruction's KEY=VALUE pairs."""
    env: dict[str, str] = {}
    for rest in only(instructions, "ENV"):
        for pair in shlex.split(rest):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def healthcheck_command(instructions: list[tuple[str, str]]) -> str:
    """The shell command of the HEALTHCHECK instruction."""
    (rest,) = only(instructions, "HEALTHCHECK")
    match = re.search(r"\bCMD\s+(.*)$", rest)
    assert match, rest
    return match.group(1)


def test_dockerfile_instructions() -> None:
    """Slim 3.11 base; dependencies from pyproject.toml in a layer before the source; a non-root user;
    EXPOSE 8000; HEALTHCHECK on /healthz; STOPSIGNAL SIGTERM with a drain shorter than docker's stop
    timeout; CMD `greenpool serve --bind 0.0.0.0:8000` in exec form, allowed by GREENPOOL_INSECURE."""
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    keywords = [kw for kw, _ in instructions]

    copies = only(instructions, "COPY")
    assert copies[0].split() == ["pyproject.toml", "./"], "the first COPY must be pyproject.toml alone"
    first_copy = keywords.index("COPY")
    source_copy = next(i for i, (kw, rest) in enumerate(instructions) if kw == "COPY" and "service" in rest)
    deps_runs = [rest for kw, rest in instructions[first_copy:source_copy] if kw == "RUN"]
    assert any("pip install" in run and "pyproject.toml" in run for run in deps_runs), deps_runs
    ignored = (REPO / ".dockerignore").read_text().split()
    for copy in copies:
        *sources, _dest = copy.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert source not in ignored, f"{source} is copied but excluded by .dockerignore"

    users = only(instructions, "USER")
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith("0:"), users
    assert any("useradd" in run and users[-1] in run for run in only(instructions, "RUN"))
    assert keywords.index("USER") > source_copy, "switch user after installing, before running"

    assert only(instructions, "EXPOSE") == ["8000"]
    check = healthcheck_command(instructions)
    assert "http://127.0.0.1:8000/healthz" in check and "timeout=" in check, check
    assert only(instructions, "STOPSIGNAL") == ["SIGTERM"]
    env = env_of(instructions)
    assert float(env["GREENPOOL_GRACEFUL_TIMEOUT"]) < DOCKER_STOP_DEFAULT_S, env
    assert env["GREENPOOL_INSECURE"] == "1", "the 0.0.0.0 bind needs --insecure until tokens exist"
    assert set(env) - {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"} - {k for k in env if k.startswith("PIP_")} <= (
        KNOWN_VARIABLES
    ), env
    (cmd,) = only(instructions, "CMD")
    assert json.loads(cmd) == ["greenpool", "serve", "--bind", "0.0.0.0:8000"], "CMD must be in exec form"


# -- docker-compose.yml and the Prometheus config ------------------------------------------------------------
def test_compose_file() -> None:
    """The greenpool service: built here, port 8000 on the host's loopback, known GREENPOOL_* variables,
    healthcheck on /healthz, restart policy, stop_grace_period longer than the drain; Prometheus only in the
    `monitoring` profile, with the repo's config mounted and scraping greenpool:8000/metrics."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    service = compose["services"]["greenpool"]
    assert service["build"] == "."
    assert "profiles" not in service, "the service itself runs without a profile"
    assert service["ports"] == ["127.0.0.1:8000:8000"]
    env = service["environment"]
    assert set(env) <= KNOWN_VARIABLES, set(env) - KNOWN_VARIABLES
    for required in ("GREENPOOL_POOL_SIZE", "GREENPOOL_MAX_QUEUED", "GREENPOOL_MAX_BODY_BYTES",
                     "GREENPOOL_GRACEFUL_TIMEOUT", "GREENPOOL_LOG_LEVEL", "GREENPOOL_INSECURE"):  # fmt: skip
        assert required in env, required
    assert env["GREENPOOL_BIND"] == "0.0.0.0:8000"
    assert re.fullmatch(r"\$\{GREENPOOL_POOL_SIZE:-\d+\}", env["GREENPOOL_POOL_SIZE"]), "overridable from the shell"

    check = service["healthcheck"]
    assert check["test"][0] == "CMD" and any("/healthz" in part for part in check["test"]), check
    assert {"interval", "timeout", "retries", "start_period"} <= set(check)
    assert service["restart"] in ("unless-stopped", "always", "on-failure")
    assert service["stop_signal"] == "SIGTERM"
    grace = int(re.fullmatch(r"(\d+)s", service["stop_grace_period"]).group(1))
    assert grace > float(env["GREENPOOL_GRACEFUL_TIMEOUT"]), "docker must wait longer than the drain"

    prometheus = compose["services"]["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert prometheus["depends_on"]["greenpool"]["condition"] == "service_healthy"
    mounts = [volume.split(":") for volume in prometheus["volumes"]]
    config_mount = next(m for m in mounts if m[1] == "/etc/prometheus/prometheus.yml")
    assert (REPO / config_mount[0]).resolve() == (REPO / "deploy" / "prometheus.yml").resolve()
    assert any("--config.file=/etc/prometheus/prometheus.yml" in c for c in prometheus["command"])
    assert all(p.startswith("127.0.0.1:") for p in prometheus["ports"])

    scrape = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())["scrape_configs"]
    job = next(j for j in scrape if j["job_name"] == "greenpool")
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["greenpool:8000"]


@needs("promtool")
def test_prometheus_config_is_valid() -> None:
    """deploy/prometheus.yml passes `promtool check config`."""
    done = subprocess.run(
        [which("promtool"), "check", "config", str(REPO / "deploy" / "prometheus.yml")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


# -- replaying the image -------------------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_dockerfile_replayed_in_a_fresh_virtualenv_serves_healthz(tmp_path: Path) -> None:
    """COPY and RUN steps replayed in order (a fresh venv stands in for the image's Python; `useradd` is the
    only step skipped: it needs root and changes this machine), then the image's CMD with its ENV — bound to
    127.0.0.1 instead of 0.0.0.0 — serves /healthz, the HEALTHCHECK command exits 0, and SIGTERM exits 0."""
    instructions = dockerfile()
    python_root = tmp_path / "image-python"
    venv.EnvBuilder(with_pip=True).create(python_root)
    bindir = python_root / "bin"
    workdir = tmp_path / "image-root"
    env = {
        "PATH": f"{bindir}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "VIRTUAL_ENV": str(python_root),
        # this machine's pip settings (index mirrors, certificates, timeouts), as a build host's would be
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
    }
    skipped: list[str] = []
    for keyword, rest in instructions:
        if keyword == "WORKDIR":
            workdir = tmp_path / "image-root" / rest.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            env.update(env_of([(keyword, rest)]))
        elif keyword == "COPY":
            *sources, dest = rest.split()
            for source in sources:
                target = workdir / dest / Path(source).name if dest.endswith("/") else workdir / dest
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / source, target)
        elif keyword == "RUN":
            if rest.startswith(("useradd", "groupadd", "adduser")):
                skipped.append(rest)
                continue
            done = subprocess.run(["/bin/sh", "-c", rest], cwd=workdir, env=env, capture_output=True, text=True,
                                  timeout=500)  # fmt: skip
            assert done.returncode == 0, f"RUN {rest}\n--- stdout ---\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert len(skipped) == 1, skipped

    # the image's Python has the dependencies and greenpool itself, not this checkout
    probe = subprocess.run(
        [str(bindir / "python"), "-c", "import service, prometheus_client, falcon, gunicorn; print(service.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert str(python_root) in probe.stdout and str(REPO) not in probe.stdout, probe.stdout
    assert (bindir / "greenpool").exists(), "the `greenpool` command is not installed"

    (cmd,) = only(instructions, "CMD")
    command = json.loads(cmd)
    port = free_port()
    command = [f"127.0.0.1:{port}" if part == "0.0.0.0:8000" else part for part in command]  # loopback only
    assert f"127.0.0.1:{port}" in command
    env["GREENPOOL_BIND"] = f"127.0.0.1:{port}"
    command[0] = shutil.which(command[0], path=env["PATH"]) or command[0]
    assert command[0] == str(bindir / "greenpool"), command
    server = OpsServer.start(tmp_path, env=env, command=command, port=port, cwd=workdir, boot_timeout=30)
    try:
        assert server.pool()["size"] > 0
        check = healthcheck_command(instructions).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        healthy = subprocess.run(["/bin/sh", "-c", check], env=env, capture_output=True, text=True, timeout=30)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(float(env["GREENPOOL_GRACEFUL_TIMEOUT"]) + 5)
        finally:
            server.stop(timeout=1)
    assert code == 0, server.stderr()


def test_readme_documents_every_variable_and_the_deployment() -> None:
    """The README's configuration table lists every GREENPOOL_* server variable; it has a deployment section."""
    readme = (REPO / "README.md").read_text()
    table = set(re.findall(r"^\| `(GREENPOOL_[A-Z_]+)` \|", readme, re.MULTILINE))
    missing = KNOWN_VARIABLES - table
    assert not missing, missing
    section = readme.split("## Deployment", 1)[1]
    for needle in ("docker compose up", "--profile monitoring", "replicas", "/metrics", "stop_grace_period"):
        assert needle in section, needle
