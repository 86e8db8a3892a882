"""The customer 360 app in a real browser against a real ``cim serve`` on the shared test bank.

Playwright drives Debian's Chromium (``/usr/bin/chromium``; never ``playwright install``). In CI (``CI`` set)
a missing browser fails these tests loudly; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import BROWSER_PASSWORDS, Bank

from cimlib.serve import ServeProcess, http_status, sign_identity

pytestmark = pytest.mark.slow

PASSWORDS = BROWSER_PASSWORDS
SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴")
WIDGET_TIMEOUT = 90_000  # ms; the first visit may wait for a kernel that is still preheating


def customer_of(bank: Bank, user: str) -> str:
    """A customer number in ``user``'s scope, found through the same service the app uses."""
    from cimlib.access import principal_for
    from cimlib.customer import search

    principal = principal_for(user, home=bank.home)
    for surname in SURNAMES:
        rows = search(principal, surname, home=bank.home, limit=5)
        if len(rows):
            return str(rows["customer_id"].iloc[0])
    raise AssertionError(f"no customer found for {user}")


def sign_in(browser: Any, server: ServeProcess, user: str, **context_args: Any) -> Any:
    """A fresh context (no cookies), signed in as ``user``, on the app; waits for the app's header widget."""
    context = browser.new_context(**context_args)
    page = context.new_page()
    page.set_default_timeout(WIDGET_TIMEOUT)
    page.goto(server.app_url)
    assert "/login" in page.url  # sent to sign in first
    page.fill("#username", user)
    page.fill("#password", PASSWORDS[user])
    page.click("#login-submit")
    page.wait_for_selector(".cim-principal", state="visible")
    return page


def search_in_app(page: Any, query: str) -> None:
    page.fill(".cim-search input", query)
    page.click(".cim-search-button")


def test_unauthenticated_requests_are_refused(server: ServeProcess) -> None:
    for path in ("/", "/voila/render/customer_360.ipynb", "/voila/tree"):
        status, location = http_status(server.url + path)
        assert status == 302 and "/login" in location, (path, status, location)
    # No session, but a token and a user header of the client's making: still refused.
    forged = {
        "X-CIM-Identity": sign_identity("county_mgr_101", "guessed-secret"),
        "X-Remote-User": "prov_analyst",
    }
    status, location = http_status(server.app_url + "?user=county_mgr_101", headers=forged)
    assert status == 302 and "/login" in location
    status, _ = http_status(server.url + "/api/kernels/00000000-0000-0000-0000-000000000000")
    assert status == 403
    status, body = http_status(server.url + "/login")
    assert status == 200 and 'id="username"' in body and "cim-app" not in body


def test_wrong_password_is_refused(browser: Any, server: ServeProcess) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/login")
    page.fill("#username", "county_mgr_101")
    page.fill("#password", "wrong")
    page.click("#login-submit")
    page.wait_for_selector("#login-error")
    status, _ = http_status(server.app_url)
    assert status == 302
    context.close()


def test_county_manager_finds_and_opens_a_customer_of_their_county(
    browser: Any, server: ServeProcess, bank: Bank
) -> None:
    cid = customer_of(bank, "county_mgr_101")
    page = sign_in(browser, server, "county_mgr_101")
    assert "桐庐县行社经理" in page.inner_text(".cim-principal")
    search_in_app(page, cid)
    page.locator(f".cim-result-open:has-text('{cid}')").click()
    title = page.wait_for_selector(".cim-detail-title")
    assert cid in title.inner_text()
    tabs = page.locator(".cim-tabs .lm-TabBar-tab")
    assert tabs.count() >= 8
    page.click(".cim-tabs .lm-TabBar-tab:has-text('近12个月趋势')")
    page.wait_for_selector(".cim-chart-trend svg", state="visible")
    page.click(".cim-tabs .lm-TabBar-tab:has-text('渠道')")
    page.wait_for_selector(".cim-chart-channels svg", state="visible")
    # Switch to English: the same customer, relabelled.
    page.click(".cim-lang button:has-text('English')")
    page.wait_for_selector(".cim-tabs .lm-TabBar-tab:has-text('Overview')")
    assert "County manager" in page.inner_text(".cim-principal")
    assert cid in page.inner_text(".cim-detail-title")
    page.context.close()


def test_same_manager_gets_nothing_for_a_customer_of_another_county(
    browser: Any, server: ServeProcess, bank: Bank
) -> None:
    other = customer_of(bank, "county_mgr_102")
    page = sign_in(browser, server, "county_mgr_101")
    search_in_app(page, other)
    status = page.wait_for_selector(".cim-status span")
    assert "在您的权限范围内未找到客户" in status.inner_text()
    assert page.locator(".cim-result-open").count() == 0
    assert page.locator(".cim-detail-title").count() == 0 or not page.is_visible(".cim-detail-title")
    assert other not in page.inner_text(".cim-app")
    page.context.close()


def test_provincial_analyst_gets_no_detail(browser: Any, server: ServeProcess, bank: Bank) -> None:
    cid = customer_of(bank, "county_mgr_101")
    page = sign_in(browser, server, "prov_analyst")
    assert "省联社数据分析员" in page.inner_text(".cim-principal")
    assert "不能查看单一客户明细" in page.inner_text(".cim-notice")
    assert page.is_disabled(".cim-search input") and page.is_disabled(".cim-search-button")
    assert page.locator(".cim-result-open").count() == 0
    assert cid not in page.inner_text(".cim-app")
    page.context.close()


def test_a_signed_in_user_cannot_claim_another_principal(browser: Any, server: ServeProcess) -> None:
    # Signed in as the provincial analyst, the user asks for the app with a forged identity token (for a
    # county manager), a user header and a query string naming one. The app still serves the analyst.
    page = sign_in(
        browser,
        server,
        "prov_analyst",
        extra_http_headers={
            "X-CIM-Identity": sign_identity("county_mgr_101", "guessed-secret"),
            "X-Remote-User": "county_mgr_101",
        },
    )
    page.goto(server.app_url + "?user=county_mgr_101&principal=county_mgr_101")
    page.wait_for_selector(".cim-principal", state="visible")
    assert "省联社数据分析员" in page.inner_text(".cim-principal")
    assert page.is_disabled(".cim-search-button")
    page.context.close()


def test_no_traceback_reaches_the_page(browser: Any, server: ServeProcess) -> None:
    page = sign_in(browser, server, "county_mgr_101")
    search_in_app(page, "'; DROP TABLE dim_customer; --")
    page.wait_for_selector(".cim-status span")
    text = page.inner_text("body")
    assert "Traceback" not in text and "Error" not in text
    page.context.close()


def test_the_server_log_has_no_secret(server: ServeProcess) -> None:
    assert "CIM_SERVE_SECRET=" not in server.log_text()
    assert Path(server.log_path).exists()
