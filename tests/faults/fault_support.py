"""Helpers for the fault tests: the plugin module to load, and the one-terminal-state-per-job check."""

from __future__ import annotations

import json
import time

from serverkit import Server

# debug: the job log's queued and running lines too, not only each job's end
PLUGINS = {"GREENPOOL_PLUGINS": "tests.plugins.tasks", "GREENPOOL_LOG_LEVEL": "debug"}
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")


def job_events(server: Server) -> dict[str, list[str]]:
    """job_id -> the statuses the `greenpool.jobs` logger logged for it (JSON lines), in order."""
    events: dict[str, list[str]] = {}
    for line in server.log().splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("logger") == "greenpool.jobs" and rec.get("job_id") and rec.get("status"):
            events.setdefault(rec["job_id"], []).append(rec["status"])
    return events


def assert_one_terminal_state_each(server: Server, ids: list[str]) -> dict[str, list[str]]:
    """Every job in `ids` (and no other) was logged queued first and ended exactly once. The worker writes its
    info lines in batches (at the latest at its next heartbeat), so the check waits up to 5 s for the ends."""
    deadline = time.monotonic() + 5.0
    events = job_events(server)
    while not all(any(s in TERMINAL for s in events.get(i, ())) for i in ids) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling a log file: there is no event to wait on
        events = job_events(server)
    assert set(events) == set(ids), set(events) ^ set(ids)
    for job_id, statuses in events.items():
        assert statuses[0] == "queued", (job_id, statuses)
        assert sum(s in TERMINAL for s in statuses) == 1, (job_id, statuses)
        assert statuses[-1] in TERMINAL, (job_id, statuses)
    return events
