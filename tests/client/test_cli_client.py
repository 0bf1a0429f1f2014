"""The `greenpool` client sub-commands, run as subprocesses (`.venv/bin/greenpool --url …`) against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import start_server
from serverkit import REPO, Server, free_port

from service import cli
from service.client import Client
from service.client import cli as cli_client

pytestmark = pytest.mark.timeout(30)
SCRIPT = Path(sys.executable).parent / "greenpool"


def greenpool(*args: str, url: str | None = None, stdin: str = "", env: dict[str, str] | None = None,
              timeout: float = 20.0) -> subprocess.CompletedProcess:  # fmt: skip
    """Run the console script (or `python -m service.cli` if not installed), bounded by `timeout`; text output."""
    cmd = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "service.cli"]
    if url is not None:
        cmd += ["--url", url]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GREENPOOL_")}
    full_env.update(env or {})
    run = subprocess.run([*cmd, *args], input=stdin.encode(), capture_output=True, timeout=timeout,
                         cwd=REPO, env=full_env)  # fmt: skip
    # decoded by hand: text=True would turn the progress bar's carriage returns into newlines
    return subprocess.CompletedProcess(run.args, run.returncode, run.stdout.decode(), run.stderr.decode())


def lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_submit(server: Server) -> None:
    done = greenpool("submit", "echo", "--args", '{"a": [1, 2]}', "--wait", "5", url=server.url)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded" and job["result"] == {"a": [1, 2]}
    queued = greenpool("submit", "sleep", "--args", '{"seconds": 0}', url=server.url)
    assert queued.returncode == 0 and json.loads(queued.stdout)["task"] == "sleep"


def test_submit_wait_exit_1_when_the_job_fails(server: Server) -> None:
    failed = greenpool("submit", "client_value", "--args", '{"fail": true}', "--wait", "5", url=server.url)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["status"] == "failed"
    timed = greenpool("submit", "sleep", "--args", '{"seconds": 5}', "--timeout", "0.1", "--wait", "5",
                      url=server.url)  # fmt: skip
    assert timed.returncode == 1 and json.loads(timed.stdout)["status"] == "timed_out"


def test_wait_that_runs_out_exits_3(server: Server) -> None:
    run = greenpool("submit", "sleep", "--args", '{"seconds": 3}', "--wait", "0.2", url=server.url)
    assert run.returncode == cli_client.Exit.NOT_FINISHED == 3, run.stderr
    job = json.loads(run.stdout)
    assert job["status"] in ("queued", "running"), job
    got = greenpool("get", job["id"], "--wait", "0.2", url=server.url)
    assert got.returncode == 3 and json.loads(got.stdout)["id"] == job["id"]
    done = greenpool("get", job["id"], "--wait", "10", url=server.url)
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "succeeded"


def test_a_401_says_how_to_pass_a_token(tmp_path: Path) -> None:
    secret = "cli-test-secret-0123456789"
    auth = start_server(tmp_path, {"GREENPOOL_TOKENS": f"ops:admin:{secret}"})
    try:
        bare = greenpool("stats", url=auth.url)
        assert bare.returncode == 2 and "--token" in bare.stderr and "GREENPOOL_TOKEN" in bare.stderr, bare.stderr
        wrong = greenpool("stats", "--token", "not-the-right-secret-000", url=auth.url)
        assert wrong.returncode == 2 and "refused" in wrong.stderr, wrong.stderr
        good = greenpool("stats", env={"GREENPOOL_URL": auth.url, "GREENPOOL_TOKEN": secret})
        assert good.returncode == 0, good.stderr
    finally:
        auth.stop()


def test_jobs_lists_newest_first_with_status_and_limit(server: Server) -> None:
    ids = [json.loads(greenpool("submit", "echo", "--args", f'{{"i": {i}}}', "--wait", "5",
                                url=server.url).stdout)["id"] for i in range(3)]  # fmt: skip
    run = greenpool("jobs", "--status", "succeeded", "--limit", "2", url=server.url)
    assert run.returncode == 0, run.stderr
    listed = lines(run.stdout)
    assert [j["id"] for j in listed] == ids[::-1][:2], listed
    assert greenpool("jobs", "--limit", "0", url=server.url).returncode == 2


def test_get_and_cancel(server: Server) -> None:
    job = json.loads(greenpool("submit", "sleep", "--args", '{"seconds": 20}', url=server.url).stdout)
    got = greenpool("get", job["id"], url=server.url)
    assert got.returncode == 0 and json.loads(got.stdout)["id"] == job["id"]
    cancelled = greenpool("cancel", job["id"], url=server.url)
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["status"] == "cancelled"
    again = greenpool("cancel", job["id"], url=server.url)
    assert again.returncode == 2 and "already ended" in again.stderr


def test_pile_from_stdin_with_progress(server: Server) -> None:
    items = [{"value": i, "fail": i == 3} for i in range(12)]
    stdin = "\n".join(json.dumps(i) for i in items) + "\n\n"  # a blank line is skipped
    run = greenpool("pile", "client_value", "--progress", url=server.url, stdin=stdin)
    assert run.returncode == 1, run.stderr  # one item failed
    records = lines(run.stdout)
    assert sorted(r["index"] for r in records) == list(range(12))
    assert {r["index"]: r["status"] for r in records}[3] == "failed"
    assert "\r[" in run.stderr and run.stderr.rstrip().endswith("12/12 ok=11 failed=1")
    assert "[####################] 12/12" in run.stderr
    quiet = greenpool("pile", "echo", url=server.url, stdin='{"x": 1}\n')  # stderr is a pipe: no progress bar
    assert quiet.returncode == 0 and quiet.stderr == "" and lines(quiet.stdout)[0]["result"] == {"x": 1}


def test_pile_from_a_file_in_completion_order(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"seconds": s}) + "\n" for s in (0.4, 0.2, 0.0)))
    run = greenpool("pile", "sleep", str(path), url=server.url)
    assert run.returncode == 0, run.stderr
    assert [r["index"] for r in lines(run.stdout)] == [2, 1, 0]
    ordered = greenpool("pile", "sleep", str(path), "--order", "submitted", url=server.url)
    assert [r["index"] for r in lines(ordered.stdout)] == [0, 1, 2]


def test_map(server: Server) -> None:
    items = [{"i": i, "tag": "t" * i} for i in range(25)]
    run = greenpool("map", "echo", url=server.url, stdin="".join(json.dumps(i) + "\n" for i in items))
    assert run.returncode == 0, run.stderr
    assert lines(run.stdout) == items
    run = greenpool("map", "client_value", "--order", "completion", url=server.url,
                    stdin="".join(json.dumps({"value": v}) + "\n" for v in range(10)))  # fmt: skip
    assert sorted(lines(run.stdout)) == list(range(10))


def test_map_failed_item(server: Server) -> None:
    stdin = '{"value": 1}\n{"value": 2, "fail": true}\n{"value": 3}\n'
    run = greenpool("map", "client_value", url=server.url, stdin=stdin)
    assert run.returncode == 1
    assert lines(run.stdout) == [1, None, 3]  # line i of the output is item i
    assert "item 1 failed: ValueError: bad 2" in run.stderr


def test_stats_and_watch(server: Server) -> None:
    run = greenpool("stats", url=server.url)
    assert run.returncode == 0 and json.loads(run.stdout)["size"] == 8
    started = time.monotonic()
    watch = greenpool("stats", "--watch", "0.2", "--count", "3", url=server.url)
    assert watch.returncode == 0, watch.stderr
    shown = watch.stdout.splitlines()
    assert len(shown) == 3 and all(line.startswith("size=8 running=") for line in shown)
    assert all(f" {k}=" in shown[0] for k in ("running", "free", "waiting", "queued"))
    assert time.monotonic() - started >= 0.4


def test_resize(server: Server) -> None:
    try:
        run = greenpool("resize", "3", url=server.url)
        assert run.returncode == 0 and json.loads(run.stdout)["size"] == 3
        bad = greenpool("resize", "-1", url=server.url)
        assert bad.returncode == 2 and "size" in bad.stderr
    finally:
        Client(server.url).resize(8)


def test_tasks_and_env_url(server: Server) -> None:
    run = greenpool("tasks", "--json", env={"GREENPOOL_URL": server.url})
    assert run.returncode == 0, run.stderr
    assert "client_value" in {t["name"] for t in lines(run.stdout)}
    table = greenpool("tasks", env={"GREENPOOL_URL": server.url})
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "RUNS", "ON", "ARGS", "DESCRIPTION"], header
    sleep = next(row for row in rows if row.startswith("sleep "))
    assert " hub " in sleep and "seconds: number" in sleep, sleep
    block = next(row for row in rows if row.startswith("api_block "))
    assert " thread " in block, block


def test_error_exit_codes(server: Server) -> None:
    missing = greenpool("get", "no-such-job", url=server.url)
    assert missing.returncode == 2 and "no job with id 'no-such-job'" in missing.stderr
    unknown = greenpool("submit", "nope", url=server.url)
    assert unknown.returncode == 2 and "no task named 'nope'" in unknown.stderr and "task:" in unknown.stderr
    invalid = greenpool("submit", "sleep", "--args", '{"seconds": "x"}', url=server.url)
    assert invalid.returncode == 2 and "args.seconds" in invalid.stderr
    bad_json = greenpool("submit", "echo", "--args", "{nope", url=server.url)
    assert bad_json.returncode == 2 and "--args is not valid JSON" in bad_json.stderr
    bad_line = greenpool("pile", "echo", url=server.url, stdin='{"a": 1}\n[1]\n')
    assert bad_line.returncode == 2 and "<stdin>:2" in bad_line.stderr
    usage = greenpool("submit", url=server.url)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    down = greenpool("stats", url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 2 and "cannot reach" in down.stderr


def test_large_pile_is_sent_in_batches(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setattr(cli_client, "BATCH_BYTES", 200)  # in-process, so the open-pile path runs with 40 items
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"n": i, "pad": "x" * 20}) + "\n" for i in range(40)))
    assert cli.main(["--url", server.url, "pile", "echo", str(path)]) == 0
    records = lines(capsys.readouterr().out)
    assert sorted(r["index"] for r in records) == list(range(40))
    assert all(r["result"]["n"] == r["index"] for r in records)
    assert cli.main(["--url", server.url, "map", "echo", str(path)]) == 0
    assert [r["n"] for r in lines(capsys.readouterr().out)] == list(range(40))


def test_version() -> None:
    run = greenpool("--version")
    assert run.returncode == 0 and run.stdout.strip() == "greenpool 0.1.0", run.stderr


def test_submit_pile_and_map_take_retries_backoff_and_delay(server: Server) -> None:
    done = greenpool("submit", "retry_flaky", "--args", '{"key": "cli-submit"}', "--retries", "2",
                     "--retry-backoff", "0.05", "--wait", "10", url=server.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert (job["status"], job["attempt"], len(job["attempts"])) == ("succeeded", 3, 2)
    later = json.loads(greenpool("submit", "echo", "--delay", "60", url=server.url).stdout)
    assert later["status"] == "queued" and later["not_before"] is not None
    pile = greenpool("pile", "retry_flaky", "--retries", "2", "--retry-backoff", "0.05", url=server.url,
                     stdin='{"key": "cli-pile"}\n')  # fmt: skip
    assert pile.returncode == 0 and [r["result"] for r in lines(pile.stdout)] == [3], pile.stderr
    mapped = greenpool("map", "retry_flaky", "--retries", "2", "--retry-backoff", "0.05", url=server.url,
                       stdin='{"key": "cli-map"}\n')  # fmt: skip
    assert mapped.returncode == 0 and lines(mapped.stdout) == [3], mapped.stderr
    bad = greenpool("submit", "echo", "--retries", "99", url=server.url)
    assert bad.returncode != 0 and "retries" in bad.stderr
