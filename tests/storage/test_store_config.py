"""GREENPOOL_STORE and GREENPOOL_SQLITE_SYNC: parsed and checked by Config, opened by `open_store`; a store
file that cannot be used stops `greenpool serve` with exit status 2 and a message naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from serverkit import run_cli

from service.config import Config, ConfigError
from service.engine import open_store

pytestmark = pytest.mark.timeout(30)


def test_memory_is_the_default_and_sqlite_opens_the_file(tmp_path: Path) -> None:
    memory = open_store(Config.from_env({}))
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


def test_serve_exits_2_naming_a_file_it_cannot_use(tmp_path: Path) -> None:
    bad = tmp_path / "gp.db"
    bad.write_bytes(b"not a database, " * 256)
    refused = run_cli(["serve", "--bind", "127.0.0.1:1"], {"GREENPOOL_STORE": f"sqlite:{bad}"})
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0], refused.stderr
