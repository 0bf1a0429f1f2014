"""deploy/alerts.yml: valid for `promtool check rules`, every alert fired and kept silent by the
`promtool test rules` cases of alerts_test.yml, and written against metrics a real server exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from ops_support import REPO, OpsServer
from prometheus_client.parser import text_string_to_metric_families

RULES = REPO / "deploy" / "alerts.yml"
CASES = Path(__file__).parent / "alerts_test.yml"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package `prometheus`) is not installed"
)


def alert_rules() -> list[dict]:
    """Every alerting rule of deploy/alerts.yml."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool (bounded)."""
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=REPO)


@needs_promtool
def test_alert_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts the file and counts every rule in it."""
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout, done.stdout


@needs_promtool
def test_alert_rules_pass_their_promtool_test_cases() -> None:
    """`promtool test rules` passes every case of alerts_test.yml."""
    done = promtool("test", "rules", str(CASES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout


def test_every_alert_has_cases_that_fire_it_and_cases_that_do_not() -> None:
    """Each alert of the four concerns (saturation, a replica gone, failures, the store) exists, carries a
    severity, a `for` and a summary, and is expected to fire in some case and to stay silent in another."""
    cases = yaml.safe_load(CASES.read_text())
    assert cases["rule_files"] == ["../../deploy/alerts.yml"]
    firing: set[str] = set()
    silent: set[str] = set()
    for test in cases["tests"]:
        for check in test["alert_rule_test"]:
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    for concern in ("PoolSaturated", "ReplicaDown", "NoReplicaUp", "HighFailureRatio", "StoreUnavailable"):
        assert f"Greenpool{concern}" in names, concern
    assert names <= firing, f"never expected to fire: {names - firing}"
    assert names <= silent, f"never expected to stay silent: {names - silent}"
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["for"] and rule["annotations"]["summary"], rule["alert"]


def test_alerts_use_metrics_and_labels_the_server_exposes(ops_server: Callable[..., OpsServer]) -> None:
    """Every greenpool_* series an alert reads is in a real server's /metrics, with the labels the alert
    groups or filters by (a renamed metric or label would leave an alert silently empty)."""
    server = ops_server()
    assert server.get("/v1/pool").status_code == 200  # at least one request counted
    families = {f.name: f for f in text_string_to_metric_families(server.get("/metrics").text)}
    exposed: dict[str, set[str]] = {}
    for family in families.values():
        for sample in family.samples:
            exposed.setdefault(sample.name, set()).update(sample.labels)
    for rule in alert_rules():
        expr = rule["expr"]
        for metric in set(re.findall(r"\b(greenpool_[a-z_]+)\b", expr)):
            assert metric in exposed, f"{rule['alert']}: {metric} is not in /metrics"
            for selector in re.findall(re.escape(metric) + r"\{([^}]*)\}", expr):
                labels = set(re.findall(r"([a-z_]+)\s*(?:=~|!=|=)", selector))
                assert labels <= exposed[metric], f"{rule['alert']}: {metric} has no label {labels - exposed[metric]}"
        for grouping in re.findall(r"by \(([^)]*)\)", expr):
            labels = {label.strip() for label in grouping.split(",")} - {"job", "instance"}  # added by the scrape
            metrics = set(re.findall(r"\b(greenpool_[a-z_]+)\b", expr))
            assert all(labels <= exposed[m] for m in metrics), f"{rule['alert']}: grouped by {labels}"
