"""The dashboard at `/`, in a real headless Chromium (the system `chromium` + `chromium-driver`, driven by
Selenium; no browser is downloaded): it loads with no console errors and nothing from other origins, shows
what `/v1/pool` reports, follows jobs as they start and finish, stays live while the pool is saturated,
resizes the pool from its form, and shows a banner when polling fails. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ops_support import ARTIFACTS, POOL_GAUGES, OpsServer
from tools import wait_until

TILES = POOL_GAUGES

try:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
except ImportError:  # the browser tests skip (see the `browser` fixture); the plain HTTP test still runs
    By = NoSuchElementException = StaleElementReferenceException = None

COUNTERS = ("submitted", "succeeded", "failed", "cancelled", "timed_out")


def screenshot(driver: Any, name: str) -> Path:
    """Save a PNG of the page to tests/artifacts/<name>.png (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), path
    return path


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """Console messages at SEVERE level since the last call (errors, failed loads, uncaught exceptions)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def shown(driver: Any) -> dict[str, str]:
    """The numbers the page shows, by key."""
    return {key: driver.find_element(By.ID, f"stat-{key}").text for key in (*TILES, *COUNTERS)}


def api_view(pool: dict[str, Any]) -> dict[str, str]:
    """`/v1/pool` as the page should show it."""
    return {key: str(pool[key]) for key in (*TILES, *COUNTERS)}


def polls(driver: Any) -> int:
    """How many pool polls the page has completed."""
    return int(driver.execute_script("return Number(document.body.dataset.polls || 0)"))


def page_matches_api(driver: Any, server: OpsServer, timeout: float = 8) -> dict[str, str]:
    """Wait until the page shows exactly what `/v1/pool` reports (the API read before and after agreeing)."""

    def check() -> dict[str, str] | None:
        before = api_view(server.pool())
        page = shown(driver)
        after = api_view(server.pool())
        return page if before == after == page else None

    return wait_until(check, timeout, 0.2, "the page to show what /v1/pool reports")


# The jobs and piles tables are rebuilt on every poll, so a row element found in one WebDriver call may be gone
# (stale) by the next: rows are read in one script call, and clicked by a bounded retry.
def job_rows(driver: Any) -> dict[str, str]:
    """Job id → status, from the recent-jobs table (read in one go)."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#jobs-body tr[data-job-id]')]"
        ".map(r => [r.dataset.jobId, r.dataset.status]))"
    )


def row_cells(driver: Any, selector: str) -> list[str] | None:
    """The texts of the cells of the row `selector` matches (read in one go); None while there is none."""
    return driver.execute_script(
        "const row = document.querySelector(arguments[0]); return row && [...row.cells].map(c => c.innerText)",
        selector,
    )


def click_row(driver: Any, selector: str, what: str) -> None:
    """Click the row `selector` matches, finding it again if a poll replaced it between finding and clicking."""

    def attempt() -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return True

    wait_until(attempt, 8, 0.1, what)


@pytest.mark.timeout(90)
def test_dashboard_loads_clean_and_follows_jobs(ops_server: Callable[..., OpsServer], browser: Any) -> None:
    """No console errors, everything from this origin; the numbers match the API and move as jobs start and
    finish; the chart has samples; the jobs table shows each job's state."""
    server = ops_server(env={"GREENPOOL_POOL_SIZE": "3"})
    browser.get(server.url + "/")
    assert browser.title == "greenpool"
    wait_until(lambda: polls(browser) >= 2, 10, what="two completed polls")
    idle = page_matches_api(browser, server)
    assert idle["running"] == "0" and idle["size"] == "3" and idle["free"] == "3"

    jobs = [server.submit("sleep", {"seconds": 4}) for _ in range(5)]  # 3 run, 2 wait in the queue
    busy = page_matches_api(browser, server)
    assert (busy["running"], busy["queued"], busy["free"], busy["submitted"]) == ("3", "2", "0", "5"), busy
    wait_until(lambda: set(jobs) <= set(job_rows(browser)), 8, 0.2, "the jobs in the table")
    statuses = job_rows(browser)
    assert sorted(statuses[j] for j in jobs) == ["queued", "queued", "running", "running", "running"], statuses
    screenshot(browser, "dashboard-busy")

    for job_id in jobs:
        server.job(job_id, wait=15)
    done = page_matches_api(browser, server, timeout=10)
    assert (done["running"], done["queued"], done["succeeded"]) == ("0", "0", "5"), done
    wait_until(lambda: all(job_rows(browser).get(j) == "succeeded" for j in jobs), 8, 0.2, "succeeded rows")
    samples = int(browser.find_element(By.ID, "chart").get_attribute("data-samples"))
    assert samples >= 8, samples
    assert browser.find_element(By.ID, "banner").get_attribute("hidden") is not None
    assert int(browser.execute_script("return Number(document.body.dataset.poolPolls || 0)")) >= 1
    assert browser.find_element(By.ID, "replicas").get_attribute("hidden") is not None, "no replicas: no cluster"
    screenshot(browser, "dashboard")

    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded, "the page loaded no resources?"
    foreign = [url for url in loaded if not url.startswith(server.url + "/")]
    assert not foreign, f"loaded from elsewhere: {foreign}"
    assert any(url.endswith("/static/dashboard.js") for url in loaded)
    assert not console_errors(browser)


@pytest.mark.timeout(120)
def test_dashboard_stays_live_when_saturated_and_resizes(ops_server: Callable[..., OpsServer], browser: Any) -> None:
    """With one slot and hundreds of jobs queued, the page keeps polling once a second with correct
    numbers; its resize form grows the pool and the page and the API agree on the new state."""
    server = ops_server(env={"GREENPOOL_POOL_SIZE": "1"})
    jobs = [server.submit("sleep", {"seconds": 60}) for _ in range(300)]
    browser.get(server.url + "/")
    saturated = page_matches_api(browser, server)
    assert (saturated["running"], saturated["queued"], saturated["free"]) == ("1", "299", "0"), saturated
    first = polls(browser)
    wait_until(lambda: polls(browser) >= first + 3, 6, 0.2, "three more polls while saturated")

    browser.find_element(By.ID, "resize-size").send_keys("50")
    browser.find_element(By.ID, "resize-submit").click()
    wait_until(lambda: "size is now 50" in browser.find_element(By.ID, "resize-status").text, 8, 0.1, "resized")
    grown = page_matches_api(browser, server)
    assert (grown["size"], grown["running"], grown["queued"]) == ("50", "50", "250"), grown
    newest = {job["id"]: job["status"] for job in server.get("/v1/jobs?limit=20").json()["jobs"]}
    assert len(newest) == 20 and set(newest) <= set(jobs)
    wait_until(lambda: job_rows(browser) == newest, 8, 0.2, "the table to show the 20 newest jobs as the API does")
    screenshot(browser, "dashboard-saturated")
    assert not console_errors(browser)
    assert len(jobs) == 300


POOL_KEYS = ("size", "running", "free", "queued", "submitted", "succeeded", "failed")


def pool_panels(driver: Any) -> dict[str, dict[str, str]]:
    """Pool name → the numbers its panel shows, in the page's order."""
    pairs = driver.execute_script(  # in one go: a panel may be removed between two element reads
        "return [...document.querySelectorAll('#pools .pool')].map(p => [p.dataset.pool,"
        " Object.fromEntries([...p.querySelectorAll('.value[data-key]')].map(v => [v.dataset.key, v.textContent]))])"
    )
    return dict(pairs)


def pools_match_api(driver: Any, server: OpsServer, timeout: float = 8) -> dict[str, dict[str, str]]:
    """Wait until the pool panels show exactly what `/v1/pools` reports (read before and after agreeing)."""

    def api() -> dict[str, dict[str, str]]:
        return {p["name"]: {k: str(p[k]) for k in POOL_KEYS} for p in server.get("/v1/pools").json()["pools"]}

    def check() -> dict[str, dict[str, str]] | None:
        before, page, after = api(), pool_panels(driver), api()
        return page if before == after == page and list(page) == list(before) else None

    return wait_until(check, timeout, 0.2, "the pool panels to show what /v1/pools reports")


def resize_panel(driver: Any, name: str, size: int) -> None:
    """Resize pool `name` from its own panel's form and wait for the panel to confirm."""
    panel = driver.find_element(By.CSS_SELECTOR, f'#pools .pool[data-pool="{name}"]')
    panel.find_element(By.CSS_SELECTOR, ".pool-size").send_keys(str(size))
    panel.find_element(By.CSS_SELECTOR, ".pool-resize").click()
    status = panel.find_element(By.CSS_SELECTOR, ".pool-status")
    wait_until(lambda: f"size is now {size}" in status.text, 8, 0.1, f"{name} resized")


@pytest.mark.timeout(120)
def test_dashboard_has_a_panel_per_pool_each_resizable(ops_server: Callable[..., OpsServer], browser: Any) -> None:
    """One panel per named pool with what `/v1/pools` reports; jobs in one pool move only its panel; each
    panel's form resizes its own pool alone; a pool created or deleted at runtime gains or loses its panel."""
    server = ops_server(env={"GREENPOOL_POOLS": "db:1,io:3"})
    wait_until(lambda: len(server.get("/v1/pools/db/history").json()["samples"]) >= 3, 10, 0.2, "db's history")
    browser.get(server.url + "/")
    idle = pools_match_api(browser, server)
    script = "return document.querySelector('.pool[data-pool=\"db\"]').dataset.history"
    history = wait_until(lambda: browser.execute_script(script), 5, 0.1, "db's panel to load its history")
    assert int(history) >= 3, (history, console_errors(browser))  # db's chart is full at once
    assert list(idle) == ["default", "db", "io"] and idle["db"]["size"] == "1" and idle["io"]["size"] == "3"

    for _ in range(4):
        resp = server.post("/v1/jobs", json={"task": "sleep", "args": {"seconds": 30}, "pool": "db"})
        assert resp.status_code == 202, resp.text
    busy = pools_match_api(browser, server)
    assert (busy["db"]["running"], busy["db"]["queued"], busy["db"]["free"]) == ("1", "3", "0"), busy
    assert busy["io"] == idle["io"] and busy["default"]["submitted"] == "0"

    resize_panel(browser, "db", 3)
    grown = pools_match_api(browser, server)
    assert (grown["db"]["size"], grown["db"]["running"], grown["db"]["queued"]) == ("3", "3", "1"), grown
    assert grown["io"]["size"] == "3" and grown["default"]["size"] == idle["default"]["size"]
    wait_until(lambda: int(browser.find_element(By.CSS_SELECTOR, '.pool[data-pool="db"] canvas')
                           .get_attribute("data-samples")) >= 3, 8, 0.2, "samples in db's chart")  # fmt: skip
    screenshot(browser, "dashboard-pools")

    assert server.request("PUT", "/v1/pools/extra", json={"size": 2}).status_code == 201
    assert list(pools_match_api(browser, server)) == ["default", "db", "extra", "io"]
    assert server.delete("/v1/pools/extra").status_code == 204
    assert list(pools_match_api(browser, server)) == ["default", "db", "io"]
    assert not console_errors(browser)


@pytest.mark.timeout(90)
def test_dashboard_shows_a_job_whole_cancels_it_and_follows_piles(ops_server: Callable[..., OpsServer],
                                                                 browser: Any) -> None:  # fmt: skip
    """The chart starts with the server's history; a click on a job shows its args and a cancel button that
    cancels it; the piles of the recent jobs show their progress; a rejected resize shows the API's field
    message; a shrink below what runs reads "over by N"; the chart's ticks are whole numbers."""
    server = ops_server(env={"GREENPOOL_POOL_SIZE": "1"})
    runner = server.submit("sleep", {"seconds": 60})
    waiting = server.submit("sleep", {"seconds": 30})
    pile = server.post("/v1/piles", json={"task": "echo", "items": [{"i": i} for i in range(3)]}).json()["id"]
    wait_until(lambda: len(server.get("/v1/pool/history").json()["samples"]) >= 3, 10, 0.2, "3 history samples")
    browser.get(server.url + "/")
    wait_until(lambda: polls(browser) >= 1, 10, what="a first poll")
    history = browser.execute_script("return document.body.dataset.history")
    assert history and int(history) >= 3, (history, console_errors(browser))  # the chart is full at once
    assert int(browser.find_element(By.ID, "chart").get_attribute("data-samples")) >= 4
    pile_row = f'#piles-body tr[data-pile-id="{pile}"]'
    cells = wait_until(lambda: row_cells(browser, pile_row), 10, 0.2, "the pile in the piles panel")
    assert "0 of 3" in cells, cells

    wait_until(lambda: waiting in job_rows(browser), 8, 0.2, "the queued job in the table")
    click_row(browser, f'#jobs-body tr[data-job-id="{waiting}"]', "a click on the queued job's row")
    detail = browser.find_element(By.ID, "job-detail")
    wait_until(lambda: detail.get_attribute("data-job-id") == waiting, 8, 0.1, "the job's detail")
    assert '"seconds": 30' in browser.find_element(By.ID, "detail-args").text
    assert "queued" in browser.find_element(By.ID, "detail-facts").text
    screenshot(browser, "dashboard-job-detail")
    browser.find_element(By.ID, "detail-cancel").click()
    wait_until(lambda: detail.get_attribute("data-status") == "cancelled", 8, 0.1, "the job cancelled")
    assert server.job(waiting)["status"] == "cancelled"
    assert not browser.find_element(By.ID, "detail-cancel").is_displayed()

    size = browser.find_element(By.ID, "resize-size")
    size.send_keys("200000")
    browser.find_element(By.ID, "resize-submit").click()
    status = browser.find_element(By.ID, "resize-status")
    wait_until(lambda: "0 to 100000" in status.text, 8, 0.1, "the API's field message")
    rejected = console_errors(browser)  # the browser logs the 422 itself; nothing else may be there
    assert all(e["source"] == "network" and "422" in e["message"] for e in rejected), rejected
    size.clear()
    size.send_keys("0")
    browser.find_element(By.ID, "resize-submit").click()
    wait_until(lambda: browser.find_element(By.ID, "stat-free").text == "over by 1", 8, 0.1, '"over by 1"')
    ticks = browser.find_element(By.ID, "chart").get_attribute("data-ticks").split(",")
    assert all(tick.isdigit() for tick in ticks), ticks
    screenshot(browser, "dashboard-over")

    server.cancel(runner)
    server.resize(2)
    wait_until(lambda: "3 of 3" in (row_cells(browser, pile_row) or []), 10, 0.2, "the pile's progress at 3 of 3")
    assert not console_errors(browser)


@pytest.mark.timeout(60)
def test_dashboard_shows_a_banner_when_polling_fails(ops_server: Callable[..., OpsServer], browser: Any) -> None:
    """When the server goes away the page says so (banner) instead of silently showing stale numbers."""
    server = ops_server()
    browser.get(server.url + "/")
    wait_until(lambda: polls(browser) >= 1, 10, what="a first poll")
    banner = browser.find_element(By.ID, "banner")
    assert banner.get_attribute("hidden") is not None
    assert server.stop() == 0
    wait_until(lambda: banner.get_attribute("hidden") is None, 10, 0.2, "the error banner")
    assert "/v1/pool" in banner.text, banner.text
    screenshot(browser, "dashboard-unreachable")


@pytest.mark.timeout(30)
def test_static_files_are_only_the_known_ones(ops_server: Callable[..., OpsServer]) -> None:
    """`/` is HTML; `/static/` serves the script and stylesheet with their types, and nothing else."""
    server = ops_server()
    page = server.get("/")
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, nothing external
    types = {"dashboard.js": "text/javascript; charset=utf-8", "pools.js": "text/javascript; charset=utf-8",
             "replicas.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
    for name, media in types.items():
        resp = server.get("/static/" + name)
        assert resp.status_code == 200 and resp.headers["Content-Type"] == media, (name, resp.headers)
        assert "http://" not in resp.text and "https://" not in resp.text, name
    for name in ("index.html", "..%2F..%2Fpyproject.toml", "missing.js", "dashboard.js.map"):
        resp = server.get("/static/" + name)
        assert resp.status_code == 404, (name, resp.status_code)
        assert resp.headers["Content-Type"] == "application/problem+json"
