"""The target-customer search app in a real browser against a real ``cim serve`` on the shared test bank.

Playwright drives Debian's Chromium (``/usr/bin/chromium``; never ``playwright install``). In CI (``CI`` set)
a missing browser fails these tests loudly; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import BROWSER_PASSWORDS, Bank

from cimlib.serve import ServeProcess

pytestmark = pytest.mark.slow

PASSWORDS = BROWSER_PASSWORDS
WIDGET_TIMEOUT = 90_000  # ms; the first visit may wait for a kernel that is still preheating
APP = "/voila/render/target_search.ipynb"
RULESET = "events"
RULESET_ZH = "重要事件提醒"


@pytest.fixture(scope="module")
def expected(bank: Bank) -> dict[str, Any]:
    """The rule set's list for county manager 101 and 102, from the service the app uses."""
    from cimlib.access import principal_for
    from cimlib.targeting import run

    out = {}
    for user in ("county_mgr_101", "county_mgr_102"):
        frame = run(RULESET, principal_for(user, home=bank.home), home=bank.home)
        assert len(frame), f"the test bank has no {RULESET} hits for {user}"
        out[user] = frame
    return out


def sign_in(browser: Any, server: ServeProcess, user: str, path: str = APP) -> Any:
    """A fresh context signed in as ``user`` on ``path``; waits for the app's header widget."""
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(WIDGET_TIMEOUT)
    page.goto(server.url + path)
    assert "/login" in page.url  # sent to sign in first
    page.fill("#username", user)
    page.fill("#password", PASSWORDS[user])
    page.click("#login-submit")
    page.wait_for_selector(".cim-principal", state="visible")
    return page


def run_ruleset(page: Any, label: str = RULESET_ZH) -> None:
    page.select_option(".cim-ruleset select", label=label)
    page.click(".cim-run")
    page.wait_for_selector(".cim-chart-branches svg", state="visible")


def test_target_app_needs_sign_in(server: ServeProcess) -> None:
    from cimlib.serve import http_status

    status, location = http_status(server.url + APP)
    assert status == 302 and "/login" in location


def test_county_manager_runs_a_rule_set_and_opens_a_customer(
    browser: Any, server: ServeProcess, expected: dict[str, Any]
) -> None:
    frame = expected["county_mgr_101"]
    page = sign_in(browser, server, "county_mgr_101")
    assert "桐庐县行社经理" in page.inner_text(".cim-principal")
    run_ruleset(page)
    assert f"找到 {len(frame)} 位客户" in page.inner_text(".cim-summary")
    page.wait_for_selector(".cim-chart-rules svg", state="visible")
    assert "各网点客户数" in page.inner_text(".cim-chart-branches")
    links = page.locator("a.cim-customer-link")
    assert links.count() == min(len(frame), 200)
    shown = [links.nth(i).inner_text() for i in range(links.count())]
    assert shown == list(frame["customer_id"].head(len(shown)))
    # Nothing from another county bank.
    others = set(expected["county_mgr_102"]["customer_id"])
    assert not others & set(shown)
    assert "淳安县" not in page.inner_text(".cim-target-list")
    # A customer's link opens their 360 view (in a new tab), for the same signed-in user.
    cid = shown[0]
    link = page.locator(f"a.cim-customer-link:has-text('{cid}')").first
    assert link.get_attribute("href") == f"/voila/render/customer_360.ipynb?customer={cid}"
    with page.context.expect_page() as new_tab:
        link.click()
    view = new_tab.value
    view.set_default_timeout(WIDGET_TIMEOUT)
    title = view.wait_for_selector(".cim-detail-title")
    assert cid in title.inner_text()
    assert "桐庐县行社经理" in view.inner_text(".cim-principal")
    assert view.locator(".cim-tabs .lm-TabBar-tab").count() >= 8
    page.context.close()


def test_download_gives_the_whole_list_as_a_workbook(
    browser: Any, server: ServeProcess, expected: dict[str, Any]
) -> None:
    import openpyxl

    frame = expected["county_mgr_101"]
    page = sign_in(browser, server, "county_mgr_101")
    run_ruleset(page)
    with page.expect_download() as info:
        page.click("a.cim-download-link")
    download = info.value
    assert download.suggested_filename.startswith(f"targets_{RULESET}_") and (
        download.suggested_filename.endswith(".xlsx")
    )
    data = Path(download.path()).read_bytes()
    assert zipfile.is_zipfile(io.BytesIO(data))
    sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    assert sum(1 for _ in sheet.iter_rows()) - 1 == len(frame)
    page.context.close()


def test_adhoc_condition_error_shows_its_position(browser: Any, server: ServeProcess) -> None:
    page = sign_in(browser, server, "county_mgr_101")
    page.click(".cim-lang button:has-text('English')")
    page.click(".cim-mode button:has-text('Ad-hoc condition')")
    page.select_option(".cim-cond-indicator select", label="Age")
    page.fill(".cim-cond-value input", "sixty")
    page.click(".cim-run")
    error = page.wait_for_selector("pre.cim-rule-error")
    text = error.inner_text()
    assert "column 8: unknown indicator 'sixty'" in text and "age >= sixty" in text and "^" in text
    assert "Traceback" not in page.inner_text("body")
    page.fill(".cim-cond-value input", "60")
    page.click(".cim-run")
    page.wait_for_selector(".cim-summary:has-text('Ad-hoc condition')")
    assert page.locator("pre.cim-rule-error").count() == 0
    page.context.close()


def test_provincial_analyst_sees_counts_only(
    browser: Any, server: ServeProcess, expected: dict[str, Any]
) -> None:
    page = sign_in(browser, server, "prov_analyst")
    assert "只能查看汇总数" in page.inner_text(".cim-notice")
    run_ruleset(page)
    assert "各县行社客户数" in page.inner_text(".cim-chart-branches")
    assert "仅汇总数" in page.inner_text(".cim-summary")
    assert page.locator("a.cim-customer-link").count() == 0
    assert page.locator("a.cim-download-link").count() == 0
    text = page.inner_text(".cim-app")
    assert not any(cid in text for cid in expected["county_mgr_101"]["customer_id"])
    page.context.close()


def test_deep_link_to_another_county_shows_nothing(
    browser: Any, server: ServeProcess, expected: dict[str, Any]
) -> None:
    other = str(expected["county_mgr_102"]["customer_id"].iloc[0])
    page = sign_in(
        browser, server, "county_mgr_101", path=f"/voila/render/customer_360.ipynb?customer={other}"
    )
    status = page.wait_for_selector(".cim-status span")
    assert "客户不存在或无权查看" in status.inner_text()
    assert not page.is_visible(".cim-detail-title")
    assert other not in page.inner_text(".cim-app")
    page.context.close()
