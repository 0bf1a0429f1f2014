"""service.logs: JSON lines on a stream, batched in a worker, straight from `info()` when nothing else listens."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from service import logs


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[logs.JsonLines, io.StringIO]]:
    """A root logger whose only handler is a JsonLines on a StringIO, at info; restored afterwards."""
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logs.JsonLines(stream)
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(root, "level", logging.INFO)
    monkeypatch.setattr(logs, "_buffering", False)
    yield handler, stream


def _records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_unbuffered_every_line_is_written_at_once(lines: tuple[logs.JsonLines, io.StringIO]) -> None:
    _, stream = lines
    logging.getLogger("greenpool.test").info("one", extra={"n": 1})
    logs.info(logging.getLogger("greenpool.test"), "two", {"n": 2})
    records = _records(stream)
    assert [(r["msg"], r["n"], r["level"], r["logger"]) for r in records] == [
        ("one", 1, "info", "greenpool.test"), ("two", 2, "info", "greenpool.test")]
    assert all(r["ts"].endswith("Z") and len(r["ts"]) == 24 for r in records), records


def test_buffered_info_waits_for_a_warning_or_a_flush(lines: tuple[logs.JsonLines, io.StringIO],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, stream = lines
    monkeypatch.setattr(logs, "_buffering", True)
    log = logging.getLogger("greenpool.test")
    logs.info(log, "first", {"n": 1})
    log.info("second")
    assert stream.getvalue() == ""
    log.warning("trouble")  # a warning goes out at once, after the lines that came before it
    assert [r["msg"] for r in _records(stream)] == ["first", "second", "trouble"]
    logs.info(log, "third", {})
    assert len(_records(stream)) == 3
    logs.flush()
    assert [r["msg"] for r in _records(stream)][-1] == "third"


def test_buffered_lines_are_written_when_a_batch_is_full(lines: tuple[logs.JsonLines, io.StringIO],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _, stream = lines
    monkeypatch.setattr(logs, "_buffering", True)
    log = logging.getLogger("greenpool.test")
    for n in range(2000):  # ~100 bytes a line: 64 KiB are reached before the end
        logs.info(log, "line", {"n": n, "pad": "x" * 40})
    written = _records(stream)
    assert 500 < len(written) < 2000 and [r["n"] for r in written] == list(range(len(written)))


def test_info_goes_through_logging_when_another_handler_listens(lines: tuple[logs.JsonLines, io.StringIO],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    _, stream = lines
    with caplog.at_level(logging.INFO, logger="greenpool.test"):
        logs.info(logging.getLogger("greenpool.test"), "seen by both", {"n": 3})
    assert [(r.getMessage(), r.n) for r in caplog.records] == [("seen by both", 3)]  # type: ignore[attr-defined]


def test_info_respects_the_level(lines: tuple[logs.JsonLines, io.StringIO]) -> None:
    _, stream = lines
    log = logging.getLogger("greenpool.test.quiet")
    log.setLevel(logging.WARNING)
    try:
        logs.info(log, "dropped", {})
    finally:
        log.setLevel(logging.NOTSET)
    assert stream.getvalue() == ""


def test_a_value_orjson_refuses_is_still_one_json_line(lines: tuple[logs.JsonLines, io.StringIO]) -> None:
    _, stream = lines
    logs.info(logging.getLogger("greenpool.test"), "big", {"n": 2**70})
    assert _records(stream)[0]["n"] == 2**70
