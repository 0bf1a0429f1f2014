"""The journal's writer deletes evicted jobs' rows in batches: late by at most a moment, never a row that a
later change wrote again, and all of them by the time the journal is closed."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from service.storage.sqlite.journal import JOB, UNJOB, UNLIST, Journal
from service.storage.sqlite.schema import connect

pytestmark = pytest.mark.timeout(30)


def _row(seq: int) -> tuple:
    return (seq, f"id{seq}", "echo", {}, None, "default", "p", seq, None, "succeeded", None, None,
            1.0, 1.0, 1.0, 0, 1.0, 1, None, None)  # fmt: skip


def _listed(path: str) -> dict[int, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT seq, listed FROM jobs"))


def _seqs(path: str) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [seq for (seq,) in conn.execute("SELECT seq FROM jobs ORDER BY seq")]


def test_evicted_rows_go_once_the_writer_is_idle_and_a_row_written_again_stays(tmp_path: Path) -> None:
    path = str(tmp_path / "greenpool.db")
    journal = Journal(connect(path), path)
    for seq in (1, 2, 3, 4):
        journal.append(JOB, seq, _row(seq))
    journal.append(UNJOB, 1)
    journal.append(UNJOB, 2)
    journal.append(JOB, 2, _row(2))  # written again after its eviction: the delete is cancelled
    deadline = time.monotonic() + 10
    while _seqs(path) != [2, 3, 4] and time.monotonic() < deadline:
        time.sleep(0.02)  # the file is another process's view: nothing to wait on but the file itself
    assert _seqs(path) == [2, 3, 4]
    assert journal.committed == journal.appended
    journal.append(UNJOB, 3)
    journal.close()  # deletes what it still holds back
    assert _seqs(path) == [2, 4]


def test_an_unlisted_job_keeps_its_row_marked_unlisted_whether_its_row_is_in_the_same_commit_or_not(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "greenpool.db")
    journal = Journal(connect(path), path)
    journal.append(JOB, 1, _row(1))
    journal.append(JOB, 2, _row(2))
    deadline = time.monotonic() + 10
    while journal.committed < journal.appended and time.monotonic() < deadline:
        time.sleep(0.01)
    journal.append(UNLIST, 1)  # its row is in the file already: an UPDATE
    journal.append(JOB, 3, _row(3))
    journal.append(UNLIST, 3)  # its row is in this very batch: written unlisted
    journal.append(JOB, 4, _row(4))
    journal.append(UNLIST, 4)
    journal.append(JOB, 4, _row(4))  # written again after: listed again
    journal.close()
    assert _listed(path) == {1: 0, 2: 1, 3: 0, 4: 1}
