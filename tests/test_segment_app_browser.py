"""The segment explorer in a real browser against a real ``cim serve`` on the shared test bank.

Playwright drives Debian's Chromium (``/usr/bin/chromium``; never ``playwright install``). In CI (``CI`` set)
a missing browser fails these tests loudly; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import BROWSER_PASSWORDS, Bank

from cimlib.serve import ServeProcess

pytestmark = pytest.mark.slow

WIDGET_TIMEOUT = 90_000  # ms; the first visit may wait for a kernel that is still preheating
APP = "/voila/render/segment_explorer.ipynb"
SCREENSHOT = "/tmp/segment_app.png"


def sign_in(browser: Any, server: ServeProcess, user: str) -> Any:
    """A fresh context signed in as ``user`` on the app; waits for the app's header widget."""
    context = browser.new_context(viewport={"width": 1280, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(WIDGET_TIMEOUT)
    page.goto(server.url + APP)
    assert "/login" in page.url  # sent to sign in first
    page.fill("#username", user)
    page.fill("#password", BROWSER_PASSWORDS[user])
    page.click("#login-submit")
    page.wait_for_selector(".cim-principal", state="visible")
    return page


def show_pivot(page: Any, rows: str, cols: str, *, clickable: bool = False) -> None:
    page.select_option(".cim-rows select", label=rows)
    page.select_option(".cim-cols select", label=cols)
    page.click(".cim-run")
    # A small pivot for a role with detail is a grid of clickable cells; otherwise the heat-map table.
    shown = ".cim-pivot-grid" if clickable else ".cim-pivot-table table.cim-pivot"
    page.wait_for_selector(shown, state="visible")
    page.wait_for_selector(".cim-chart-pivot svg", state="visible")


def test_segment_app_needs_sign_in(server: ServeProcess) -> None:
    from cimlib.serve import http_status

    status, location = http_status(server.url + APP)
    assert status == 302 and "/login" in location


def test_county_manager_pivots_and_drills_into_a_cell(browser: Any, server: ServeProcess, bank: Bank) -> None:
    from cimlib.access import principal_for
    from cimlib.segmentation import drill

    page = sign_in(browser, server, "county_mgr_101")
    assert "桐庐县行社经理" in page.inner_text(".cim-principal")
    show_pivot(page, "客户类型", "存款日均", clickable=True)
    table = page.inner_text(".cim-pivot-grid")
    assert "个人" in table and "合计" in table and "—" not in table
    page.click(".cim-pivot-grid button[title='个人 × 1-5万']")  # a click on the cell lists its customers
    page.wait_for_selector(".cim-drill-list a.cim-customer-link", state="visible")
    who = principal_for("county_mgr_101", home=bank.home)
    expected = drill(who, {"customer_type": "I", "deposit_adb": "D1"}, home=bank.home)
    assert f"共 {expected.attrs['total']} 位客户" in page.inner_text(".cim-drill-summary")
    links = page.locator(".cim-drill-list a.cim-customer-link")
    shown = [links.nth(i).inner_text() for i in range(links.count())]
    assert shown == list(expected["customer_id"])
    assert links.first.get_attribute("target") == "_blank"
    assert links.first.get_attribute("href") == f"/voila/render/customer_360.ipynb?customer={shown[0]}"
    page.screenshot(path=SCREENSHOT, full_page=True)
    # The Analyses tab.
    page.click(".cim-tabs .lm-TabBar-tab:has-text('专题分析')")
    page.wait_for_selector(".cim-chart-loan-quality svg", state="visible")
    assert "不良率" in page.inner_text(".cim-analyses")
    assert "Traceback" not in page.inner_text("body")
    page.context.close()


def test_provincial_analyst_sees_no_drill_through(browser: Any, server: ServeProcess) -> None:
    page = sign_in(browser, server, "prov_analyst")
    assert "只能查看汇总数" in page.inner_text(".cim-notice")
    show_pivot(page, "县级行社", "金融资产")
    assert "—" in page.inner_text(".cim-pivot-table")
    assert page.is_visible(".cim-suppressed-note")
    assert not page.is_visible(".cim-drill")
    assert page.locator("a.cim-customer-link").count() == 0
    page.context.close()
