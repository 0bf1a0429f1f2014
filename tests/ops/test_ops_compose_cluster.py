"""The `cluster` profile of docker-compose.yml, checked without a Docker engine: Redis with AOF on a named
volume, a scaled `replica` service with the standalone service's settings plus the Redis store, nginx with
deploy/nginx.conf in front of them on the host's loopback port 8000, every one with a healthcheck and
started in order, and a Prometheus of its own (test_ops_prometheus_cluster); the default and `monitoring`
profiles still start what they did."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from deploy_support import compose, container_environment, container_mounts, interpolate, readme
from ops_support import REPO
from proxy_support import NGINX_CONF, directive

CLUSTER = {"redis", "replica", "proxy"}
CLUSTER_PROMETHEUS = "cluster-prometheus"  # scrapes each replica; started when named


def services() -> dict[str, Any]:
    """The services of docker-compose.yml."""
    return compose()["services"]


def enabled(profiles: tuple[str, ...]) -> set[str]:
    """The services `docker compose --profile P ... up` starts: those without profiles, and those of P."""
    return {name for name, s in services().items() if not s.get("profiles") or set(s["profiles"]) & set(profiles)}


def closure(name: str) -> set[str]:
    """`name` and every service it depends on, transitively (what `docker compose up NAME` starts)."""
    found, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(services()[current].get("depends_on", {}))
    return found


def host_ports(names: set[str], environ: Mapping[str, str]) -> list[str]:
    """The host side (address:port) of every port the services `names` publish."""
    return [interpolate(p, environ).rsplit(":", 1)[0] for n in sorted(names) for p in services()[n].get("ports", [])]


def cluster_section() -> str:
    """The README's "Cluster deployment" section."""
    return readme().split("## Cluster deployment", 1)[1].split("\n## ", 1)[0]


class _UniqueKeys(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with a key twice (PyYAML and compose keep the last silently);
    a key beside a `<<` merge overrides the merged one, as meant."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        keys = [self.construct_object(key) for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"]
        twice = sorted({str(k) for k in keys if keys.count(k) > 1})
        assert not twice, f"docker-compose.yml line {node.start_mark.line + 1}: keys given twice: {twice}"
        return super().construct_mapping(node, deep=deep)


def test_no_key_is_given_twice() -> None:
    """A merge of two branches can leave a setting twice in one mapping; the second would silently win."""
    assert yaml.load((REPO / "docker-compose.yml").read_text(), Loader=_UniqueKeys) == compose()


def test_the_profiles_start_what_they_should() -> None:
    """Without a profile only the standalone service; `monitoring` adds Prometheus; the cluster's three
    services and its Prometheus belong to `cluster` alone."""
    assert enabled(()) == {"greenpool"}
    assert enabled(("monitoring",)) == {"greenpool", "prometheus"}
    assert enabled(("cluster",)) == {"greenpool", *CLUSTER, CLUSTER_PROMETHEUS}
    for name in (*CLUSTER, CLUSTER_PROMETHEUS):
        assert services()[name]["profiles"] == ["cluster"], name


def test_the_cluster_comes_up_on_port_8000_in_order() -> None:
    """`up proxy` (the README's command) starts the proxy, the replicas and Redis, not the standalone
    service, and publishes only the proxy, on the host's loopback port 8000; each waits for the health of
    what it depends on. A bare `--profile cluster up` would publish 8000 twice (the standalone service
    too), so the README says to move the standalone one with GREENPOOL_PORT for that. The cluster's
    Prometheus, named too, brings up the replicas and Redis, and publishes 9090 on loopback."""
    assert closure("proxy") == CLUSTER
    assert host_ports(CLUSTER, {}) == ["127.0.0.1:8000"]
    assert closure(CLUSTER_PROMETHEUS) == {CLUSTER_PROMETHEUS, "replica", "redis"}
    assert host_ports({CLUSTER_PROMETHEUS}, {}) == ["127.0.0.1:9090"]
    assert sorted(host_ports(enabled(("cluster",)), {})) == ["127.0.0.1:8000", "127.0.0.1:8000", "127.0.0.1:9090"]
    moved = host_ports(enabled(("cluster",)), {"GREENPOOL_PORT": "8001"})
    assert len(set(moved)) == len(moved) == 3, moved
    assert services()["proxy"]["depends_on"] == {"replica": {"condition": "service_healthy"}}
    assert services()["replica"]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    section = cluster_section()
    for command in ("docker compose --profile cluster up -d proxy", "--scale replica=",
                    "GREENPOOL_PORT=8001 docker compose --profile cluster up -d"):  # fmt: skip
        assert command in section, command


def test_redis_keeps_an_append_only_file_on_a_named_volume() -> None:
    """Redis runs with AOF on, fsync every second, no RDB, its /data on the redis-data volume, with a
    healthcheck that fails on an error reply."""
    redis = services()["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "everysec" and options["--save"] == ""
    assert "redis-data:/data" in redis["volumes"] and "redis-data" in compose()["volumes"]
    assert "redis-cli ping | grep -q PONG" in redis["healthcheck"]["test"] and "ports" not in redis


@pytest.mark.parametrize("password", ["", "s3cret-of-redis"])
def test_redis_requires_the_password_the_replicas_send(password: str) -> None:
    """GREENPOOL_REDIS_PASSWORD set in the shell: Redis requires it, its healthcheck and the replicas send it;
    unset: no password anywhere (`--requirepass ""` is none)."""
    shell = {"GREENPOOL_REDIS_PASSWORD": password} if password else {}
    redis = services()["redis"]
    options = dict(zip(redis["command"][1::2], redis["command"][2::2], strict=True))
    assert interpolate(options["--requirepass"], shell) == password
    assert container_environment(redis, shell)["REDISCLI_AUTH"] == password
    replica_env = container_environment(services()["replica"], shell)
    assert replica_env.get("GREENPOOL_REDIS_PASSWORD", "") == password
    assert "@" not in replica_env["GREENPOOL_STORE"], "the password stays out of the URL"


def test_replicas_take_every_setting_of_the_standalone_service_and_share_redis() -> None:
    """Two replicas by default (`--scale` for more), none publishing a port (the proxy is the way in),
    with the standalone service's environment as passed from the shell, the Redis store, an id of each
    one's own (empty: greenpool's default, `hostname:pid`; one id from the shell would be shared by all),
    the same tokens secret, plugins, healthcheck, drain and stop deadline."""
    greenpool, replica = services()["greenpool"], services()["replica"]
    assert replica["deploy"]["replicas"] >= 2 and "ports" not in replica
    assert replica["image"] == greenpool["image"]
    shell = {name: f"value-of-{name.lower()}" for name in greenpool["environment"]}
    expected = {**container_environment(greenpool, shell), "GREENPOOL_STORE": "redis://redis:6379/0",
                "GREENPOOL_REPLICA_ID": ""}  # fmt: skip
    assert container_environment(replica, shell) == expected
    assert container_environment(replica, {})["GREENPOOL_STORE"] == "redis://redis:6379/0"
    mounts = container_mounts(compose(), replica, {})
    standalone = container_mounts(compose(), greenpool, {})
    assert mounts == {k: v for k, v in standalone.items() if k != "/data"}, "no sqlite volume: the store is Redis"
    for key in ("healthcheck", "stop_signal", "stop_grace_period", "init", "ulimits", "restart"):
        assert replica[key] == greenpool[key], key


def test_the_proxy_mounts_deploy_nginx_conf_and_reaches_the_replica_service() -> None:
    """nginx (1.27.3 or later, for `resolve`) with deploy/nginx.conf as its whole config, listening on the
    port it publishes, its upstream the `replica` service's name and port (re-resolved through Docker's DNS,
    so `--scale` is followed), with a healthcheck through to a replica."""
    proxy = services()["proxy"]
    image, tag = proxy["image"].split(":")
    assert image == "nginx"
    version = tuple(int(n) for n in re.match(r"(\d+)\.(\d+)", tag).groups())
    assert version >= (1, 28), f"{tag}: `server ... resolve` needs nginx 1.27.3 or later (stable: 1.28)"
    mounts = dict(reversed(volume.split(":")[:2]) for volume in proxy["volumes"])
    assert (REPO / mounts["/etc/nginx/nginx.conf"]).resolve() == NGINX_CONF
    assert all(volume.endswith(":ro") for volume in proxy["volumes"])
    text = NGINX_CONF.read_text()
    published = interpolate(proxy["ports"][0], {}).rsplit(":", 1)[1]
    assert directive(text, "listen") == [[published]]
    replica_port = container_environment(services()["replica"], {})["GREENPOOL_BIND"].rsplit(":", 1)[1]
    assert directive(text, "server", "upstream") == [[f"replica:{replica_port}", "resolve"]]
    assert directive(text, "resolver") == [["127.0.0.11", "valid=10s", "ipv6=off"]]
    assert "/healthz" in " ".join(proxy["healthcheck"]["test"])


@pytest.mark.parametrize(("name", "expected"), [
    ("proxy_buffering", ["off"]), ("proxy_request_buffering", ["off"]), ("proxy_http_version", ["1.1"]),
    ("proxy_set_header", ["Connection", ""]), ("client_max_body_size", ["0"]), ("gzip", ["off"]),
])  # fmt: skip
def test_the_proxy_config_lets_streams_through(name: str, expected: list[str]) -> None:
    """deploy/nginx.conf: unbuffered both ways, keep-alive HTTP/1.1 upstream, no gzip, no body cap of its own."""
    assert expected in directive(NGINX_CONF.read_text(), name, "server")


def test_the_proxy_waits_longer_than_a_long_poll_or_a_stream_heartbeat() -> None:
    """Read and send timeouts far above the longest `?wait=` (60 s) and the 15 s stream heartbeat; the
    upstream's idle keep-alive closes before greenpool's (5 s), so nginx never reuses a connection the
    replica is closing."""
    text = NGINX_CONF.read_text()
    seconds = {name: int(directive(text, name)[0][0].rstrip("s"))
               for name in ("proxy_read_timeout", "proxy_send_timeout", "keepalive_timeout")}  # fmt: skip
    assert seconds["proxy_read_timeout"] >= 120 and seconds["proxy_send_timeout"] >= 120
    assert seconds["keepalive_timeout"] < 5
    forwarded = {args[0] for args in directive(text, "proxy_set_header")}
    assert {"X-Forwarded-For", "X-Forwarded-Host", "Host"} <= forwarded
    assert not {"Authorization", "Idempotency-Key", "Last-Event-ID"} & forwarded, "passed as the client sent them"


def test_compose_file_paths_of_the_cluster_exist() -> None:
    """Every host path the cluster's services mount exists in the repository."""
    for name in (*CLUSTER, CLUSTER_PROMETHEUS):
        for volume in services()[name].get("volumes", []):
            source = interpolate(volume, {}).split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source}"
