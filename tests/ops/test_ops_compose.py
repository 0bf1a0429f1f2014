"""docker-compose.yml and deploy/prometheus.yml, checked without a Docker engine: the compose file is valid
against the Compose Specification's JSON schema (vendored in compose_spec/), the variables it hands the
container are exactly the README's configuration table, each reaching the container with the value set in
the shell, and the Prometheus config (with its alert rules) is what the monitoring profile mounts."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from deploy_support import (
    COMPOSE_ONLY,
    compose,
    configuration_table,
    container_environment,
    container_mounts,
    deployment_section,
    interpolate,
    variables_used,
)
from ops_support import REPO

from service.config import ENV_PREFIX, Config

SCHEMA = Path(__file__).parent / "compose_spec" / "compose-spec.json"
KNOWN_VARIABLES = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Config) if f.name != "extra"} | {
    "GREENPOOL_INSECURE"
}
TOKENS_SECRET = "/run/secrets/greenpool-tokens"
#: Variables compose gives a value of its own when the shell has none.
COMPOSE_VALUES = {"GREENPOOL_BIND", "GREENPOOL_GRACEFUL_TIMEOUT", "GREENPOOL_TOKENS_FILE"}


def greenpool() -> dict:
    """The greenpool service of docker-compose.yml."""
    return compose()["services"]["greenpool"]


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    """The file as written (before interpolation) validates against the vendored schema, and the schema
    really checks: an unknown service key is refused."""
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, errors
    broken = compose()
    broken["services"]["greenpool"]["enviroment"] = {}
    assert not validator.is_valid(broken)


def test_the_readme_configuration_table_is_what_compose_passes() -> None:
    """Every GREENPOOL_* server setting (Config's fields and GREENPOOL_INSECURE) is in the README's table, the
    container's environment has exactly the table's variables, and any other variable the file reads is one
    of compose's own (COMPOSE_ONLY), each explained in the README's deployment section."""
    table = configuration_table()
    assert len(table) == len(set(table)), "a variable is listed twice"
    missing = KNOWN_VARIABLES - set(table)
    assert not missing, f"not in the README's configuration table: {missing}"
    passed = set(greenpool()["environment"])
    assert not set(table) - passed, f"documented but not passed into the container: {set(table) - passed}"
    assert not passed - set(table), f"passed but not documented: {passed - set(table)}"
    read = variables_used(compose())
    assert read <= set(table) | set(COMPOSE_ONLY), read - set(table) - set(COMPOSE_ONLY)
    section = deployment_section()
    for name in COMPOSE_ONLY:
        assert name in read, f"{name} is listed as compose's own but the file does not use it"
        assert f"`{name}`" in section, f"{name} is not explained in the README's deployment section"


@pytest.mark.parametrize("variable", configuration_table())
def test_each_documented_setting_reaches_the_container(variable: str) -> None:
    """Set in the shell, a setting arrives in the container unchanged; the tokens file is a host path, so it
    arrives as the secret compose mounts from that path. Unset, it stays unset (greenpool's default applies)
    unless compose gives it a value of its own."""
    value = "/srv/greenpool/tokens" if variable == "GREENPOOL_TOKENS_FILE" else f"value-of-{variable.lower()}"
    env = container_environment(greenpool(), {variable: value})
    if variable == "GREENPOOL_TOKENS_FILE":
        assert env[variable] == TOKENS_SECRET
        assert container_mounts(compose(), greenpool(), {variable: value})[TOKENS_SECRET] == Path(value)
    else:
        assert env[variable] == value
    if variable not in COMPOSE_VALUES:
        assert variable not in container_environment(greenpool(), {})


def test_compose_defaults() -> None:
    """With nothing set in the shell: greenpool on 0.0.0.0:8000 in the container, published on the host's
    loopback port 8000 (GREENPOOL_PORT changes the host side only), a 30 s drain inside a 35 s
    stop_grace_period, the placeholder tokens file (no tokens) as the secret, deploy/plugins at /plugins, the
    greenpool-data volume at /data (the store)."""
    service = greenpool()
    assert service["build"] == "."
    assert "profiles" not in service, "the service itself runs without a profile"
    env = container_environment(service, {})
    assert set(env) == COMPOSE_VALUES
    assert env["GREENPOOL_BIND"] == "0.0.0.0:8000" and env["GREENPOOL_TOKENS_FILE"] == TOKENS_SECRET
    assert [interpolate(p, {}) for p in service["ports"]] == ["127.0.0.1:8000:8000"]
    assert [interpolate(p, {"GREENPOOL_PORT": "9000"}) for p in service["ports"]] == ["127.0.0.1:9000:8000"]
    mounts = container_mounts(compose(), service, {})
    placeholder = mounts[TOKENS_SECRET]
    assert placeholder.is_file() and all(
        not line.strip() or line.lstrip().startswith("#") for line in placeholder.read_text().splitlines()
    ), "the placeholder tokens file must hold no token"
    assert mounts["/plugins"] == REPO / "deploy" / "plugins" and mounts["/plugins"].is_dir()
    assert any(v.endswith(":/plugins:ro") for v in service["volumes"]), "plugins are mounted read-only"
    assert "greenpool-data:/data" in service["volumes"] and "greenpool-data" in compose()["volumes"], (
        "the store (GREENPOOL_DATA_DIR, /data in the image) is on a named volume: it outlives the container"
    )

    check = service["healthcheck"]
    assert check["test"] == ["CMD", "greenpool-healthcheck"], "the image's check, which follows GREENPOOL_BIND"
    assert {"interval", "timeout", "retries", "start_period"} <= set(check)
    assert service["restart"] in ("unless-stopped", "always", "on-failure")
    assert service["stop_signal"] == "SIGTERM"
    grace = int(re.fullmatch(r"(\d+)s", service["stop_grace_period"]).group(1))
    assert grace > float(env["GREENPOOL_GRACEFUL_TIMEOUT"]), "docker must wait longer than the drain"
    text = (REPO / "docker-compose.yml").read_text()
    assert "no authentication" not in text and 'GREENPOOL_INSECURE: "1"' not in text


def test_monitoring_profile_mounts_the_prometheus_config_and_alert_rules() -> None:
    """Prometheus only in the `monitoring` profile, with deploy/prometheus.yml and deploy/alerts.yml mounted
    where the config's rule_files finds them, scraping greenpool:8000/metrics."""
    prometheus = compose()["services"]["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert prometheus["depends_on"]["greenpool"]["condition"] == "service_healthy"
    mounts = dict(reversed(volume.split(":")[:2]) for volume in prometheus["volumes"])
    assert (REPO / mounts["/etc/prometheus/prometheus.yml"]).resolve() == REPO / "deploy" / "prometheus.yml"
    assert any("--config.file=/etc/prometheus/prometheus.yml" in c for c in prometheus["command"])
    assert all(p.startswith("127.0.0.1:") for p in prometheus["ports"])

    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:  # relative to the config file, in the repo and in the container
        assert (REPO / "deploy" / rule_file).is_file(), rule_file
        mounted = mounts[str(Path("/etc/prometheus") / rule_file)]
        assert (REPO / mounted).resolve() == (REPO / "deploy" / rule_file).resolve()
    assert "alerts.yml" in config["rule_files"]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "greenpool")
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["greenpool:8000"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package `prometheus`) is not installed")
def test_prometheus_config_is_valid() -> None:
    """deploy/prometheus.yml (and the rule files it names) pass `promtool check config`."""
    done = subprocess.run(
        ["promtool", "check", "config", str(REPO / "deploy" / "prometheus.yml")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "alerts.yml" in done.stdout + done.stderr, "the rule file was not checked"


def _docker_compose() -> list[str] | None:
    if shutil.which("docker") is None:
        return None
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    return ["docker", "compose"] if probe.returncode == 0 else None


@pytest.mark.skipif(
    _docker_compose() is None,
    reason="`docker compose` (Compose v2) is not available: Debian packages docker.io (the client) and "
    "docker-compose from version 2 on (Debian 13), or Docker's docker-compose-plugin",
)
def test_docker_compose_config_renders_what_the_tests_emulate(tmp_path: Path) -> None:
    """`docker compose config` (no engine needed) accepts the file, and its rendering of the greenpool
    container's environment, with a setting, tokens and a port in the shell, is what these tests emulate."""
    tokens = tmp_path / "tokens"
    tokens.write_text("# none\n")
    shell = {"GREENPOOL_POOL_SIZE": "7", "GREENPOOL_TOKENS": "a:submit:x", "GREENPOOL_TOKENS_FILE": str(tokens),
             "GREENPOOL_PORT": "9000"}  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **shell}
    done = subprocess.run(
        [*_docker_compose(), "-f", str(REPO / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rendered = json.loads(done.stdout)
    service = rendered["services"]["greenpool"]
    rendered_env = {k: v for k, v in service["environment"].items() if v is not None}  # null: unset in the container
    assert rendered_env == container_environment(greenpool(), shell)
    assert {p["published"] for p in service["ports"]} == {"9000"}
    assert Path(rendered["secrets"]["greenpool-tokens"]["file"]) == tokens


def test_readme_documents_the_deployment() -> None:
    """The README's deployment section covers compose, tokens, plugins, monitoring with alerts, stopping and
    scaling."""
    section = deployment_section()
    needles = ("docker compose up", "--profile monitoring", "replicas", "/metrics", "stop_grace_period",
               "GREENPOOL_TOKENS", "GREENPOOL_TOKENS_FILE", "/plugins", "deploy/alerts.yml", "promtool")  # fmt: skip
    for needle in needles:
        assert needle in section, needle
