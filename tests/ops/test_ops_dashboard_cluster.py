"""The dashboard of a cluster, in a real headless Chromium: two real replicas on one real redis-server, the page
of either showing both in its replicas section (the jobs each runs, as `/v1/pools` reports them, and how long
ago each was last seen), following a replica that leaves; the section stays hidden without the `replicas`
field (memory and sqlite stores: test_ops_dashboard)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from ops_support import OpsServer
from test_ops_dashboard import console_errors, screenshot
from tools import wait_until


def api_replicas(server: OpsServer) -> dict[str, str]:
    """Replica id → the jobs it runs in all pools, from `/v1/pools` (as the page should show it)."""
    running: dict[str, int] = {}
    for pool in server.get("/v1/pools").json()["pools"]:
        for replica in pool["replicas"]:
            running[replica["id"]] = running.get(replica["id"], 0) + replica["running"]
    return {replica: str(n) for replica, n in sorted(running.items())}


def page_replicas(driver: Any) -> dict[str, dict[str, str]]:
    """Replica id → {running, seen} as the replicas table shows them, in its order (read in one go: the
    table is rebuilt every second)."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#replicas-body tr[data-replica-id]')].map(r => [r.dataset.replicaId,"
        " {running: r.querySelector('.running').textContent, seen: r.querySelector('.seen').textContent,"
        " at: r.querySelector('.seen').title}])"
    )
    return dict(rows)


def replicas_match_api(driver: Any, server: OpsServer, timeout: float = 10) -> dict[str, dict[str, str]]:
    """Wait until the replicas table shows what `/v1/pools` reports (read before and after agreeing)."""

    def check() -> dict[str, dict[str, str]] | None:
        before, page, after = api_replicas(server), page_replicas(driver), api_replicas(server)
        shown = {replica: row["running"] for replica, row in page.items()}
        return page if before == after == shown and list(shown) == list(before) else None

    return wait_until(check, timeout, 0.2, "the replicas table to show what /v1/pools reports")


def seconds_ago(text: str) -> int:
    """The age the page shows ("just now", "4 s ago", "2m 5s ago") in seconds."""
    if text == "just now":
        return 0
    match = re.fullmatch(r"(?:(\d+)m )?(\d+) ?s ago", text)
    assert match, text
    return 60 * int(match.group(1) or 0) + int(match.group(2))


@pytest.mark.timeout(120)
def test_dashboard_shows_each_replica_with_its_jobs_and_last_seen(replicas: Callable[..., list[OpsServer]],
                                                                  browser: Any) -> None:  # fmt: skip
    """With jobs running across two replicas (a cluster-wide size of 4), the page of replica A lists A and B
    with the jobs each runs as `/v1/pools` reports them, adding up to the cluster's running figure, each seen
    a heartbeat or two ago; when B drains and leaves, its row goes."""
    a, b = replicas(2, GREENPOOL_POOL_SIZE="4")
    wait_until(lambda: list(api_replicas(a)) == ["A", "B"], 10, 0.2, "both replicas in A's /v1/pools")
    jobs = [server.submit("sleep", {"seconds": 60}) for server in (a, b, a, b, a)]  # 4 run, 1 queued
    wait_until(lambda: (a.pool()["running"], a.pool()["queued"]) == (4, 1), 10, 0.2, "4 running, 1 queued")

    browser.get(a.url + "/")
    wait_until(lambda: browser.execute_script("return !document.getElementById('replicas').hidden"), 10, 0.2,
               "the replicas section shown")  # fmt: skip
    page = replicas_match_api(browser, a)
    assert list(page) == ["A", "B"], page
    assert sum(int(row["running"]) for row in page.values()) == 4, page
    assert browser.find_element("id", "stat-running").text == "4"
    assert browser.find_element("id", "replicas-count").text == "2"
    for replica, row in page.items():
        assert seconds_ago(row["seen"]) <= 5, (replica, row)  # one heartbeat a second
        seen = datetime.fromisoformat(row["at"].replace("Z", "+00:00"))
        assert abs(seen.timestamp() - datetime.now().timestamp()) < 10, (replica, row)
    screenshot(browser, "dashboard-replicas")

    assert b.stop() == 0  # drains: its jobs go back to the queue, and it leaves the replicas' list
    after = replicas_match_api(browser, a, timeout=15)
    assert list(after) == ["A"], after
    assert browser.find_element("id", "replicas-count").text == "1"
    assert not console_errors(browser)
    assert len(jobs) == 5
