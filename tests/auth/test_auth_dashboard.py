"""The dashboard with tokens configured, in a real headless Chromium (skips without chromium/chromedriver):
it asks for a token on 401, sends it on every request, keeps it in sessionStorage, and enables the resize
form only for an admin token."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from auth_support import TOKENS, tokens_env
from serverkit import Server

try:
    from selenium.webdriver.common.by import By
except ImportError:  # the browser tests skip (see the `browser` fixture)
    By = None


def until(check: Callable[[], Any], timeout: float = 8.0, what: str = "") -> None:
    """Poll `check()` every 0.1 s until truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def visible(driver: Any, element_id: str) -> bool:
    return driver.find_element(By.ID, element_id).get_attribute("hidden") is None


def use_token(driver: Any, secret: str) -> None:
    driver.find_element(By.ID, "token").send_keys(secret)
    driver.find_element(By.ID, "token-submit").click()


@pytest.mark.timeout(90)
def test_dashboard_asks_for_a_token_and_shows_resize_to_admins(start: Callable[..., Server], browser: Any) -> None:
    server = start({"GREENPOOL_POOL_SIZE": "8", "GREENPOOL_TOKENS": tokens_env(TOKENS["alice"], TOKENS["root"])})
    browser.get(server.url + "/")
    until(lambda: visible(browser, "token-form"), what="the token form")
    until(lambda: "401" in browser.find_element(By.ID, "banner").text, what="a 401 in the banner")
    assert browser.find_element(By.ID, "resize-submit").get_attribute("disabled") is not None

    use_token(browser, TOKENS["alice"][2])  # submit: sees the pool, may not resize
    until(lambda: browser.find_element(By.ID, "who").text == "alice (submit)", what="alice")
    until(lambda: browser.find_element(By.ID, "stat-size").text == "8", what="the pool's size")
    until(lambda: not visible(browser, "banner"), what="the banner to clear")
    assert not visible(browser, "token-form")
    assert browser.find_element(By.ID, "resize-submit").get_attribute("disabled") is not None
    assert "admin" in browser.find_element(By.ID, "resize-status").text
    pool_button = '#pools .pool[data-pool="default"] .pool-resize'  # each pool panel's form: admins only too
    until(lambda: browser.find_elements(By.CSS_SELECTOR, pool_button), what="the default pool's panel")
    assert browser.find_element(By.CSS_SELECTOR, pool_button).get_attribute("disabled") is not None
    assert browser.execute_script("return sessionStorage.getItem('greenpool-token')") == TOKENS["alice"][2]

    browser.find_element(By.ID, "token-forget").click()  # back to no token: asked again
    until(lambda: visible(browser, "token-form"), what="the token form again")
    use_token(browser, TOKENS["root"][2])
    until(lambda: browser.find_element(By.ID, "who").text == "root (admin)", what="root")
    until(lambda: browser.find_element(By.ID, "resize-submit").get_attribute("disabled") is None, what="resize on")
    browser.find_element(By.ID, "resize-size").send_keys("5")
    browser.find_element(By.ID, "resize-submit").click()
    until(lambda: "size is now 5" in browser.find_element(By.ID, "resize-status").text, what="resized")
    until(lambda: browser.find_element(By.CSS_SELECTOR, pool_button).get_attribute("disabled") is None,
          what="the pool panel's resize on for root")  # fmt: skip

    browser.refresh()  # the token survives a reload of the tab
    until(lambda: browser.find_element(By.ID, "who").text == "root (admin)", what="root after reload")
    assert not visible(browser, "token-form")
