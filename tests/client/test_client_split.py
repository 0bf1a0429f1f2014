"""Piles and maps over the server's caps (GREENPOOL_MAX_PILE_SIZE=5, GREENPOOL_MAX_MAP_ITEMS=3), split by the
client and the CLI into several requests, transparently: every record once, `index` as in the whole request,
submitted order kept (issue #16.5)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import start_server
from serverkit import Server

from service import cli
from service.client import Client, PayloadTooLarge
from service.client import cli as cli_client
from service.client.split import SplitPile

pytestmark = pytest.mark.timeout(60)
CAPS = {"GREENPOOL_POOL_SIZE": "4", "GREENPOOL_MAX_PILE_SIZE": "5", "GREENPOOL_MAX_MAP_ITEMS": "3"}


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("capped"), CAPS)
    yield srv
    srv.stop()


@pytest.fixture
def client(capped: Server) -> Iterator[Client]:
    with Client(capped.url, timeout=10.0) as c:
        yield c


def test_a_pile_over_the_cap_becomes_several_and_streams_as_one(client: Client) -> None:
    pile = client.pile("echo", items=[{"n": n} for n in range(12)], order="submitted")
    assert isinstance(pile, SplitPile) and len(set(pile.ids)) == 3
    records = list(pile)
    assert [(r["index"], r["result"]["n"]) for r in records] == [(n, n) for n in range(12)]
    summary = pile.summary()
    assert summary["size"] == summary["succeeded"] == 12 and summary["closed"] is True


def test_a_pile_split_in_completion_order_yields_every_record_once(client: Client) -> None:
    pile = client.pile("echo", items=[{"n": n} for n in range(11)])
    assert sorted(r["index"] for r in pile) == list(range(11))
    assert [client.get_pile(pile_id).summary()["size"] for pile_id in pile.ids] == [5, 5, 1]


def test_jobs_of_a_split_pile_keep_their_own_tasks(client: Client) -> None:
    jobs = [{"task": "echo", "args": {"n": n}} for n in range(7)]
    records = sorted(client.pile(jobs=jobs), key=lambda r: r["index"])
    assert [r["result"]["n"] for r in records] == list(range(7))


def test_an_open_pile_over_the_cap_is_still_refused(client: Client) -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        client.pile("echo", items=[{}] * 6, open=True)
    assert caught.value.jobs_limit == 5 and caught.value.problem["unit"] == "jobs"


def test_a_map_over_the_cap_is_sent_in_parts_in_order(client: Client) -> None:
    assert list(client.map("echo", [{"n": n} for n in range(10)])) == [{"n": n} for n in range(10)]
    records = list(client.map_records("echo", [{"n": n} for n in range(7)]))
    assert [r["index"] for r in records] == list(range(7))


def test_a_body_over_the_byte_limit_is_not_split(client: Client) -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        client.submit("echo", {"pad": "x" * (2 << 20)})
    assert caught.value.problem["unit"] == "bytes" and caught.value.jobs_limit is None


def test_the_cli_splits_piles_and_maps_over_the_caps(capped: Server, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"n": n, "pad": "x" * 20}) + "\n" for n in range(13)))
    assert cli.main(["--url", capped.url, "pile", "echo", str(path), "--order", "submitted"]) == 0
    assert [json.loads(line)["index"] for line in capsys.readouterr().out.splitlines()] == list(range(13))
    assert cli.main(["--url", capped.url, "map", "echo", str(path)]) == 0
    assert [json.loads(line)["n"] for line in capsys.readouterr().out.splitlines()] == list(range(13))
    monkeypatch.setattr(cli_client, "BATCH_BYTES", 200)  # the open-pile path: batches of ~6, over the cap of 5
    assert cli.main(["--url", capped.url, "pile", "echo", str(path)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["index"] for r in records) == list(range(13))
    assert all(r["result"]["n"] == r["index"] for r in records)
