"""Named pools through the client (`pools()`, `resize(n, pool=)`, `pool=` on submit, pile and map) and the CLI
(`greenpool pools`, `greenpool resize N --pool NAME`, `--pool` on submit, pile, map and stats), end to end
against a real server with pools `db` (2) and `io` (0, paused)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import start_server
from serverkit import Server
from test_cli_client import greenpool, lines

from service import cli
from service.client import Client
from service.client import cli as cli_client
from service.client.errors import Conflict, GreenpoolError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("pools-server"), {"GREENPOOL_POOLS": "db:2,io:0"})
    try:
        yield srv
    finally:
        srv.stop()


def test_the_client_lists_creates_resizes_uses_and_deletes_pools(pools: Server) -> None:
    with Client(pools.url) as gp:
        assert [p["name"] for p in gp.pools()][:3] == ["default", "db", "io"]
        assert gp.resize(3, pool="extra")["size"] == 3 and gp.stats("extra")["name"] == "extra"
        assert gp.resize(4, pool="extra")["size"] == 4
        assert gp.submit("pool_probe", {"key": "client"}, wait=10, pool="db")["pool"] == "db"
        records = list(gp.pile("pool_probe", items=[{"key": "client-pile", "seconds": 0.1}] * 6, pool="db"))
        assert {r["status"] for r in records} == {"succeeded"}
        assert max(r["result"]["running"] for r in records) == 2
        assert list(gp.map("echo", [{"a": 1}, {"a": 2}], pool="extra")) == [{"a": 1}, {"a": 2}]
        assert gp.stats("extra")["succeeded"] == 2
        queued = gp.submit("echo", {}, pool="io")
        with pytest.raises(Conflict):
            gp.delete_pool("io")
        gp.cancel(queued["id"])
        gp.delete_pool("extra")
        assert "extra" not in [p["name"] for p in gp.pools()]
        with pytest.raises(GreenpoolError) as unknown:
            gp.submit("echo", {}, pool="extra")
        assert unknown.value.status == 422 and unknown.value.problem["errors"][0]["field"] == "pool"


def test_cli_pools_table_and_json(pools: Server) -> None:
    table = greenpool("pools", url=pools.url)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "SIZE", "RUNNING", "FREE", "QUEUED", "SUBMITTED", "SUCCEEDED", "FAILED"]
    assert [row.split()[:2] for row in rows[:3]] == [["default", "100"], ["db", "2"], ["io", "0"]]
    listed = lines(greenpool("pools", "--json", url=pools.url).stdout)
    assert [p["name"] for p in listed][:3] == ["default", "db", "io"] and "uptime_s" in listed[0]


def test_cli_resize_a_named_pool_and_stats_of_it(pools: Server) -> None:
    try:
        run = greenpool("resize", "5", "--pool", "cli-made", url=pools.url)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["size"] == 5
        assert json.loads(greenpool("stats", "--pool", "cli-made", url=pools.url).stdout)["size"] == 5
        assert json.loads(greenpool("stats", url=pools.url).stdout)["size"] == 100  # default untouched
        bad = greenpool("resize", "1", "--pool", "Not A Name", url=pools.url)
        assert bad.returncode == 2 and "name" in bad.stderr
    finally:
        Client(pools.url).delete_pool("cli-made")


def test_cli_pool_on_submit_pile_and_map(pools: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    job = json.loads(greenpool("submit", "echo", "--pool", "db", "--wait", "5", url=pools.url).stdout)
    assert job["pool"] == "db" and job["status"] == "succeeded"
    stdin = "".join(json.dumps({"key": "cli-pile", "seconds": 0.1}) + "\n" for _ in range(5))
    run = greenpool("pile", "pool_probe", "--pool", "db", url=pools.url, stdin=stdin)
    assert run.returncode == 0, run.stderr
    assert max(r["result"]["running"] for r in lines(run.stdout)) == 2
    mapped = greenpool("map", "echo", "--pool", "db", url=pools.url, stdin='{"a": 1}\n{"a": 2}\n')
    assert mapped.returncode == 0 and lines(mapped.stdout) == [{"a": 1}, {"a": 2}]
    unknown = greenpool("submit", "echo", "--pool", "nope", url=pools.url)
    assert unknown.returncode == 2 and "items[0].pool" not in unknown.stderr and "pool:" in unknown.stderr
    monkeypatch.setattr(cli_client, "BATCH_BYTES", 200)  # in-process: the open pile filled in batches
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"n": n, "pad": "x" * 20}) + "\n" for n in range(30)))
    before = Client(pools.url).stats("db")["submitted"]
    assert cli.main(["--url", pools.url, "pile", "echo", str(path), "--pool", "db"]) == 0
    assert len(lines(capsys.readouterr().out)) == 30
    assert Client(pools.url).stats("db")["submitted"] == before + 30
