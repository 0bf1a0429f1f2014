"""GREENPOOL_STORE, GREENPOOL_DATA_DIR and GREENPOOL_SQLITE_SYNC: parsed and checked by Config, opened by
`open_store` (by default a SQLite file in the data directory, created if missing); a store file that cannot
be used stops `greenpool serve` with exit status 2 and a message naming the file (or the Redis server, never
its password)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serverkit import free_port, run_cli, start_server

from service.config import Config, ConfigError
from service.engine import open_store

pytestmark = pytest.mark.timeout(30)


def test_sqlite_in_the_data_dir_is_the_default_memory_and_sqlite_path_are_chosen(tmp_path: Path) -> None:
    data = tmp_path / "data" / "deeper"
    default = open_store(Config.from_env({"GREENPOOL_DATA_DIR": str(data)}))
    try:
        assert default.durable and (data / "greenpool.db").is_file()
    finally:
        default.close()
    assert Config().sqlite_path == "./greenpool-data/greenpool.db"
    memory = open_store(Config.from_env({"GREENPOOL_STORE": "memory"}))
    assert not memory.durable
    path = tmp_path / "gp.db"
    store = open_store(Config.from_env({"GREENPOOL_STORE": f"sqlite:{path}", "GREENPOOL_SQLITE_SYNC": "full"}))
    try:
        assert store.durable and path.exists()
    finally:
        store.close()


@pytest.mark.parametrize(("name", "value"), [
    ("GREENPOOL_STORE", "sqlite:"), ("GREENPOOL_STORE", "redis-ish"), ("GREENPOOL_SQLITE_SYNC", "off"),
])  # fmt: skip
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value})


def test_serve_keeps_its_default_store_under_greenpool_data_in_its_working_directory(tmp_path: Path) -> None:
    """`greenpool serve` with neither GREENPOOL_STORE nor GREENPOOL_DATA_DIR set (as `make run` starts it):
    ./greenpool-data/greenpool.db, created, holds what was accepted."""
    server = start_server(tmp_path, {"GREENPOOL_STORE": ""}, serve=True, cwd=tmp_path)
    try:
        assert server.post("/v1/jobs", json={"task": "echo", "args": {"x": 1}}).status_code == 202
    finally:
        assert server.stop() == 0
    assert (tmp_path / "greenpool-data" / "greenpool.db").stat().st_size > 0


def test_serve_exits_2_naming_a_file_it_cannot_use(tmp_path: Path) -> None:
    bad = tmp_path / "gp.db"
    bad.write_bytes(b"not a database, " * 256)
    refused = run_cli(["serve", "--bind", "127.0.0.1:1"], {"GREENPOOL_STORE": f"sqlite:{bad}"})
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0], refused.stderr


@pytest.mark.parametrize("url", ["redis://:secret@127.0.0.1:{port}/0", "rediss://127.0.0.1:{port}/3"])
def test_serve_exits_2_naming_a_redis_it_cannot_reach_never_its_password(url: str) -> None:
    port = free_port()
    config = Config.from_env({"GREENPOOL_STORE": url.format(port=port)})
    assert config.redis_url and not config.sqlite_path
    refused = run_cli(["serve", "--bind", "127.0.0.1:1"], {"GREENPOOL_STORE": url.format(port=port)})
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "secret" not in lines[0], refused.stderr


def test_a_redis_url_that_cannot_be_parsed_exits_2_without_echoing_it() -> None:
    refused = run_cli(["serve", "--bind", "127.0.0.1:1"], {"GREENPOOL_STORE": "redis://:secret@host:port/x"})
    assert refused.returncode == 2 and "secret" not in refused.stderr and "Redis URL" in refused.stderr, refused.stderr
