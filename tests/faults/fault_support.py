"""Helpers for the fault tests: the plugin module to load, and the one-terminal-state-per-job check."""

from __future__ import annotations

from serverkit import TERMINAL, Server

# debug: the job log's queued and running lines too, not only each job's end
PLUGINS = {"GREENPOOL_PLUGINS": "tests.plugins.tasks", "GREENPOOL_LOG_LEVEL": "debug"}


def assert_one_terminal_state_each(server: Server, ids: list[str]) -> dict[str, list[str]]:
    """Every job in `ids` (and no other) was logged queued first and ended exactly once. The worker writes its
    info lines in batches (at the latest at its next heartbeat), so the check waits up to 5 s for the ends."""
    events = server.job_events(ended=ids)
    assert set(events) == set(ids), set(events) ^ set(ids)
    for job_id, statuses in events.items():
        assert statuses[0] == "queued", (job_id, statuses)
        assert sum(s in TERMINAL for s in statuses) == 1, (job_id, statuses)
        assert statuses[-1] in TERMINAL, (job_id, statuses)
    return events
