"""The managers' dashboard in a real browser against a real ``cim serve`` on the shared bank.

Playwright drives Debian's Chromium (``/usr/bin/chromium``; never ``playwright install``). In CI (``CI`` set)
a missing browser fails these tests loudly; elsewhere they are skipped with the reason. Screenshots of each
tab go to ``/tmp/dashboard_<user>_<tab>.png``.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from conftest import BROWSER_PASSWORDS, Bank

from cimlib.apps.management_dashboard import TABS
from cimlib.i18n import format_count, t

pytestmark = pytest.mark.slow

PASSWORDS = BROWSER_PASSWORDS
WIDGET_TIMEOUT = 120_000  # ms; the first visit may wait for a kernel that is still preheating
APP = "/voila/render/management_dashboard.ipynb"


def sign_in(browser: Any, server: Any, user: str, path: str = APP) -> tuple[Any, float]:
    """A fresh context signed in as ``user`` on ``path``; waits for the key figures (page and seconds)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(WIDGET_TIMEOUT)
    page.goto(server.url + path)
    assert "/login" in page.url  # sent to sign in first
    page.fill("#username", user)
    page.fill("#password", PASSWORDS[user])
    t0 = time.perf_counter()
    page.click("#login-submit")
    page.wait_for_selector(".cim-kpi-card", state="visible")
    return page, time.perf_counter() - t0


def open_tab(page: Any, tab: str) -> None:
    page.locator(".cim-dash-tabs .lm-TabBar-tab").nth(TABS.index(tab)).click()
    page.wait_for_selector(f".cim-tab-{tab} .cim-section svg", state="visible")
    page.wait_for_selector(f".cim-tab-{tab} .cim-section table", state="visible")


def no_traceback(page: Any) -> None:
    body = page.inner_text("body")
    assert "Traceback" not in body and "Error:" not in body


@pytest.fixture(scope="module")
def expected(bank: Bank) -> dict[str, Any]:
    """The figures the page must show, from the services the app uses."""
    from cimlib.access import principal_for
    from cimlib.analysis._macro import overview
    from cimlib.customer import available_months

    mgr = principal_for("county_mgr_101", home=bank.home)
    return {
        "overview": overview(mgr, home=bank.home, lang="zh_CN").set_index("measure"),
        "month": available_months(mgr, bank.home)[-1],
    }


def test_dashboard_needs_sign_in(server: Any) -> None:
    from cimlib.serve import http_status

    status, location = http_status(server.url + APP)
    assert status == 302 and "/login" in location


def test_county_manager_sees_figures_tabs_and_drills_to_the_360_view(
    browser: Any, server: Any, expected: dict[str, Any]
) -> None:
    page, seconds = sign_in(browser, server, "county_mgr_101")
    print(f"\nfirst paint: key figures {seconds:.1f} s after the sign-in click")
    assert "桐庐县行社经理" in page.inner_text(".cim-principal")
    # the user's org and the latest month
    assert page.locator(".cim-org select").input_value().endswith("(101000)")
    assert page.locator(".cim-as-of select").input_value().startswith(expected["month"][:7])
    customers = page.inner_text(".cim-kpi[data-measure='customers'] .cim-kpi-value")
    assert customers == format_count(expected["overview"].at["customers", "current"])
    assert "较上月" in page.inner_text(".cim-kpis")
    page.wait_for_selector(".cim-tab-macro .cim-section svg", state="visible")
    page.screenshot(path="/tmp/dashboard_county_mgr_101_macro.png", full_page=True)

    for tab in TABS[1:]:
        t0 = time.perf_counter()
        open_tab(page, tab)
        print(f"tab {tab}: {time.perf_counter() - t0:.1f} s")
        page.locator(".cim-dash-tabs").screenshot(path=f"/tmp/dashboard_county_mgr_101_{tab}.png")
    no_traceback(page)
    assert "淳安" not in page.inner_text("body")  # county 102 is not this manager's

    # A key figure's customers, each linking to the 360 view for the same signed-in user.
    page.locator(".cim-kpi-card:has([data-measure='deposit_balance']) button").click()
    page.wait_for_selector(".cim-drill-list a.cim-customer-link", state="visible")
    link = page.locator(".cim-drill-list a.cim-customer-link").first
    cid = link.inner_text()
    assert link.get_attribute("href") == f"/voila/render/customer_360.ipynb?customer={cid}"
    segment = page.locator(".cim-drill-list a.cim-open-segment").get_attribute("href")
    assert segment == f"/voila/render/segment_explorer.ipynb?org=101000&as_of={expected['month'][:7]}"
    with page.context.expect_page() as new_tab:
        link.click()
    view = new_tab.value
    view.set_default_timeout(WIDGET_TIMEOUT)
    assert cid in view.wait_for_selector(".cim-detail-title").inner_text()
    assert "桐庐县行社经理" in view.inner_text(".cim-principal")
    view.close()

    # "Open in segment explorer" pre-selects the org and the month there.
    with page.context.expect_page() as new_tab:
        page.locator(".cim-segment-link a").click()
    seg = new_tab.value
    seg.set_default_timeout(WIDGET_TIMEOUT)
    seg.wait_for_selector(".cim-org-filter", state="visible")
    assert "101000" in seg.inner_text(".cim-org-filter")
    assert seg.locator(".cim-as-of select").input_value().startswith(expected["month"][:7])
    seg.wait_for_selector(".cim-segment-results .cim-summary", state="visible")  # the pivot is shown
    assert "Traceback" not in seg.inner_text("body")
    seg.close()
    page.context.close()


def test_locale_switch_changes_the_labels_and_back(browser: Any, server: Any) -> None:
    page, _ = sign_in(browser, server, "county_mgr_101")
    assert t("dashboard.title", "zh_CN") in page.inner_text(".cim-title")
    page.click(".cim-lang button:has-text('English')")
    page.wait_for_selector(".cim-title:has-text('Management dashboard')")
    page.wait_for_selector(".cim-kpis:has-text('vs last month')")
    tabs = page.inner_text(".cim-dash-tabs .lm-TabBar")
    assert all(t(f"dashboard.tab_{k}", "en") in tabs for k in TABS)
    assert "较上月" not in page.inner_text(".cim-kpis")
    page.screenshot(path="/tmp/dashboard_county_mgr_101_en.png", full_page=True)
    page.click(".cim-lang button:has-text('中文')")
    page.wait_for_selector(".cim-kpis:has-text('较上月')")
    assert t("dashboard.tab_macro", "zh_CN") in page.inner_text(".cim-dash-tabs .lm-TabBar")
    no_traceback(page)
    page.context.close()


def test_provincial_analyst_sees_aggregates_and_no_customer_rows(browser: Any, server: Any) -> None:
    page, seconds = sign_in(browser, server, "prov_analyst")
    print(f"\nfirst paint (provincial): {seconds:.1f} s")
    assert page.locator(".cim-org select").input_value().endswith("(100000)")
    assert t("dashboard.edition_provincial", "zh_CN") in page.inner_text(".cim-edition")
    open_tab(page, "product")
    page.locator(".cim-dash-tabs").screenshot(path="/tmp/dashboard_prov_analyst_product.png")
    page.locator(".cim-kpi-card:has([data-measure='deposit_balance']) button").click()
    page.wait_for_selector(".cim-drill-refused", state="visible")
    page.locator(".cim-page-product .cim-drill").click()
    page.wait_for_selector(".cim-drill-refused", state="visible")
    assert page.locator("a.cim-customer-link").count() == 0
    assert not re.search(r"customer_360\.ipynb", page.content())
    no_traceback(page)
    page.screenshot(path="/tmp/dashboard_prov_analyst_macro.png", full_page=True)
    page.context.close()
