"""The cluster's Prometheus (compose `cluster-prometheus`, deploy/prometheus-cluster.yml): it scrapes each
replica, found by DNS service discovery on the `replica` service's name (so `--scale` is followed), never the
proxy; `promtool` accepts the file; and the real `prometheus` binary, with that very scrape job on two real
replicas on loopback (the targets from a file instead of Docker's DNS, which does not resolve here), has both
replicas' series, told apart by their `replica` label, and follows a replica that joins."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import compose, container_environment
from ops_support import REPO, OpsServer
from prometheus_support import prometheus
from tools import needs, wait_until, which

CONFIG = REPO / "deploy" / "prometheus-cluster.yml"


def job(config: dict[str, Any]) -> dict[str, Any]:
    """The `greenpool` scrape job (the one the alert rules watch)."""
    (found,) = [j for j in config["scrape_configs"] if j["job_name"] == "greenpool"]
    return found


def test_the_cluster_profile_runs_a_prometheus_on_the_cluster_config_and_alert_rules() -> None:
    """`cluster-prometheus` belongs to the cluster profile alone, mounts deploy/prometheus-cluster.yml as its
    whole config and deploy/alerts.yml where its rule_files finds it, keeps its own data volume, publishes on
    the host's loopback only and waits for healthy replicas."""
    service = compose()["services"]["cluster-prometheus"]
    assert service["profiles"] == ["cluster"]
    assert service["image"] == compose()["services"]["prometheus"]["image"]
    mounts = dict(reversed(volume.split(":")[:2]) for volume in service["volumes"])
    assert any("--config.file=/etc/prometheus/prometheus.yml" in c for c in service["command"])
    assert (REPO / mounts["/etc/prometheus/prometheus.yml"]).resolve() == CONFIG
    for rule_file in yaml.safe_load(CONFIG.read_text())["rule_files"]:
        assert (REPO / mounts[f"/etc/prometheus/{rule_file}"]).resolve() == REPO / "deploy" / rule_file
    assert mounts["/prometheus"] == "cluster-prometheus-data" and "cluster-prometheus-data" in compose()["volumes"]
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])
    assert service["depends_on"] == {"replica": {"condition": "service_healthy"}}


def test_the_cluster_config_discovers_each_replica_by_dns_not_the_proxy() -> None:
    """The `greenpool` job finds its targets by A records of the `replica` service's name on the port the
    replicas listen on, with no static target (the proxy would answer each scrape from one replica or another)."""
    scrape = job(yaml.safe_load(CONFIG.read_text()))
    assert scrape["metrics_path"] == "/metrics" and "static_configs" not in scrape
    replica_port = int(container_environment(compose()["services"]["replica"], {})["GREENPOOL_BIND"].rsplit(":", 1)[1])
    assert scrape["dns_sd_configs"] == [{"names": ["replica"], "type": "A", "port": replica_port,
                                         "refresh_interval": "10s"}]  # fmt: skip
    assert "replica" in compose()["services"] and "proxy" not in json.dumps(scrape)


@needs("promtool")
def test_the_cluster_config_passes_promtool_check() -> None:
    """`promtool check config` accepts deploy/prometheus-cluster.yml and checks the rule file it names."""
    done = subprocess.run([which("promtool"), "check", "config", str(CONFIG)], capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "alerts.yml" in done.stdout + done.stderr, "the rule file was not checked"


def api_running(server: OpsServer) -> dict[str, float]:
    """Replica id → the jobs of the default pool it runs, from `/v1/pool`."""
    return {r["id"]: float(r["running"]) for r in server.pool()["replicas"]}


def write_targets(path: Path, servers: list[OpsServer]) -> None:
    """The file_sd targets file, replaced whole (a rename, as Prometheus wants): one group of the servers."""
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps([{"targets": [f"127.0.0.1:{s.port}" for s in servers]}]))
    scratch.replace(path)


@pytest.mark.timeout(120)
@needs("prometheus")
def test_real_prometheus_with_the_cluster_job_scrapes_each_replica(replicas: Callable[..., list[OpsServer]],
                                                                   tmp_path: Path) -> None:  # fmt: skip
    """The cluster config's `greenpool` job with its discovery switched to a targets file: with replica A
    listed, A's series arrive; once B joins the file (as a scale-up adds an A record), both are up, each
    replica's `greenpool_pool_running` is what `/v1/pool` reports for it, and the alert rules are loaded."""
    a, b = replicas(2, GREENPOOL_POOL_SIZE="4")
    wait_until(lambda: [r["id"] for r in a.pool().get("replicas", [])] == ["A", "B"], 10, 0.2, "both replicas")
    for server in (a, b, a, b, a):
        server.submit("sleep", {"seconds": 60})  # 4 running across the two, 1 queued
    wait_until(lambda: a.pool()["running"] == 4, 10, 0.2, "4 running jobs")

    config = yaml.safe_load(CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    scrape = job(config)
    scrape.pop("dns_sd_configs")
    targets = tmp_path / "targets.json"
    scrape.update(scrape_interval="1s", file_sd_configs=[{"files": [str(targets)], "refresh_interval": "1s"}])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(REPO / "deploy" / "alerts.yml", tmp_path / "alerts.yml")  # beside the config, as mounted
    write_targets(targets, [a])

    def running_by_replica() -> dict[str, float] | None:
        result = prom.query('greenpool_pool_running{job="greenpool", pool="default"}')
        return {r["metric"]["replica"]: float(r["value"][1]) for r in result or []} or None

    with prometheus(tmp_path, tmp_path / "prometheus.yml") as prom:
        assert list(wait_until(running_by_replica, 45, 0.5, "replica A's series")) == ["A"]
        write_targets(targets, [a, b])

        def agreed() -> dict[str, float] | None:
            before, seen, after = api_running(a), running_by_replica(), api_running(a)
            return seen if seen == before == after else None

        seen = wait_until(agreed, 30, 0.5, "each replica's running jobs in Prometheus as /v1/pool reports them")
        assert sorted(seen) == ["A", "B"] and sum(seen.values()) == 4, seen
        up = wait_until(lambda: prom.query('up{job="greenpool"} == 1'), 10, 0.5, "both targets up")
        assert sorted(u["metric"]["instance"] for u in up) == sorted(f"127.0.0.1:{s.port}" for s in (a, b))
        active = prom.get("targets")["activeTargets"]
        assert sorted((t["labels"]["job"], t["health"]) for t in active) == [("greenpool", "up")] * 2, active
        rules = {r["name"] for g in prom.get("rules")["groups"] for r in g["rules"]}
        assert {"GreenpoolReplicaDown", "GreenpoolNoReplicaUp"} <= rules, rules
