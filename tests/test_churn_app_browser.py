"""The churn watchlist app in a real browser against a real ``cim serve`` on the scored churn bank.

Playwright drives Debian's Chromium (``/usr/bin/chromium``; never ``playwright install``). In CI (``CI`` set)
a missing browser fails these tests loudly; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BROWSER_PASSWORDS, Bank

from cimlib.serve import ServeProcess

pytestmark = pytest.mark.slow

PASSWORDS = BROWSER_PASSWORDS
WIDGET_TIMEOUT = 90_000  # ms; the first visit may wait for a kernel that is still preheating
APP = "/voila/render/churn_watchlist.ipynb"
SCREENSHOT = Path("/tmp/churn_app.png")


@pytest.fixture(scope="module")
def churn_server(
    churn_bank: Bank, churn_scored: dict, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """A real ``cim serve`` on the scored churn bank, with the demo passwords, for this module."""
    from cimlib.serve import set_password

    pw_file = tmp_path_factory.mktemp("churn_serve") / "passwords.json"
    for user, pw in PASSWORDS.items():
        set_password(pw_file, user, pw)
    proc = ServeProcess(
        churn_bank.home,
        ["--pool-size", "2", "--password-file", str(pw_file)],
        log_path=pw_file.parent / "serve.log",
    )
    proc.start(timeout=180)
    try:
        yield proc
    finally:
        proc.stop()
        ours = [
            ln for ln in proc.log_text().splitlines() if ln.strip().startswith("File ") and "/cimlib/" in ln
        ]
        assert not ours, "\n".join(ours)


@pytest.fixture(scope="module")
def expected(churn_bank: Bank, churn_scored: dict) -> dict[str, Any]:
    """County manager 101's and 102's top-10-per-branch lists, from the service the app uses."""
    from cimlib.access import principal_for
    from cimlib.churn import watchlist

    out = {}
    for user in ("county_mgr_101", "county_mgr_102"):
        frame = watchlist(principal_for(user, home=churn_bank.home), limit=10, lang="zh_CN",
                          home=churn_bank.home)  # fmt: skip
        assert len(frame), f"the churn bank has no watchlist customers for {user}"
        out[user] = frame
    return out


def sign_in(browser: Any, server: ServeProcess, user: str, path: str = APP) -> tuple[Any, float]:
    """A fresh context signed in as ``user`` on ``path``; waits for the header (returns page and seconds)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1500}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(WIDGET_TIMEOUT)
    page.goto(server.url + path)
    assert "/login" in page.url  # sent to sign in first
    page.fill("#username", user)
    page.fill("#password", PASSWORDS[user])
    t0 = time.perf_counter()
    page.click("#login-submit")
    page.wait_for_selector(".cim-principal", state="visible")
    return page, time.perf_counter() - t0


def test_churn_app_needs_sign_in(churn_server: ServeProcess) -> None:
    from cimlib.serve import http_status

    status, location = http_status(churn_server.url + APP)
    assert status == 302 and "/login" in location


def test_county_manager_sees_the_county_list_opens_a_customer_and_downloads(
    browser: Any, churn_server: ServeProcess, expected: dict[str, Any], churn_scored: dict
) -> None:
    import openpyxl

    frame = expected["county_mgr_101"]
    page, header_s = sign_in(browser, churn_server, "county_mgr_101")
    page.wait_for_selector(".cim-churn-list a.cim-customer-link", state="visible")
    page.wait_for_selector(".cim-chart-branches svg", state="visible")
    print(f"\nfirst paint: header {header_s:.2f} s after the sign-in click")
    assert "桐庐县行社经理" in page.inner_text(".cim-principal")
    model = page.inner_text(".cim-model")
    # the version that scored the month now (other tests of the session may retrain the same model)
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(churn_scored["path"]).metadata[b"cim"])
    assert meta["model_version"] in model and "ROC AUC" in model and "硬流失" in model
    assert f"预警客户 {len(frame)} 位" in page.inner_text(".cim-summary")
    links = page.locator("a.cim-customer-link")
    shown = [links.nth(i).inner_text() for i in range(links.count())]
    assert shown == list(frame["customer_id"])
    # Only county 101's customers: nothing of county 102, every branch cell of 桐庐.
    assert not set(expected["county_mgr_102"]["customer_id"]) & set(shown)
    assert "淳安县" not in page.inner_text(".cim-churn-list")
    assert set(frame["home_org_code"].str[:3]) == {"101"}
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # A customer's link opens their 360 view in a new tab, for the same signed-in user.
    cid = shown[0]
    link = page.locator(f"a.cim-customer-link:has-text('{cid}')").first
    assert link.get_attribute("href") == f"/voila/render/customer_360.ipynb?customer={cid}"
    with page.context.expect_page() as new_tab:
        link.click()
    view = new_tab.value
    view.set_default_timeout(WIDGET_TIMEOUT)
    assert cid in view.wait_for_selector(".cim-detail-title").inner_text()
    assert "桐庐县行社经理" in view.inner_text(".cim-principal")
    view.close()

    # Ranked within each customer manager instead.
    page.click(".cim-by button:has-text('客户经理')")
    page.wait_for_selector(".cim-churn-list tr.cim-group:has-text('（')")
    assert page.locator("a.cim-customer-link").count() >= 1

    # The Excel download of what is shown, one sheet per branch.
    with page.expect_download() as info:
        page.click("a.cim-download-link")
    download = info.value
    assert download.suggested_filename.startswith("churn_watchlist_hard_")
    data = Path(download.path()).read_bytes()
    assert zipfile.is_zipfile(io.BytesIO(data))
    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    rows = sum(ws.max_row - 1 for ws in wb.worksheets if ws.title != "about")
    summary = page.inner_text(".cim-summary")
    assert f"预警客户 {rows} 位" in summary
    assert "Traceback" not in page.inner_text("body")
    page.context.close()


def test_language_switch_and_branch_filter(browser: Any, churn_server: ServeProcess) -> None:
    page, header_s = sign_in(browser, churn_server, "county_mgr_101")
    page.wait_for_selector(".cim-churn-list a.cim-customer-link")
    print(f"\nwarm pool: header {header_s:.2f} s after the sign-in click")
    page.click(".cim-lang button:has-text('English')")
    page.wait_for_selector(".cim-churn-list th:has-text('Deposit ADB (CNY)')")
    assert "on the watchlist" in page.inner_text(".cim-summary")
    options = page.locator(".cim-branch select option")
    assert options.count() >= 3
    label = options.nth(1).inner_text()
    page.select_option(".cim-branch select", label=label)
    page.wait_for_function("() => document.querySelectorAll('.cim-churn-list tr.cim-group').length === 1")
    page.context.close()


def test_aggregate_only_user_sees_the_message_not_names(
    browser: Any, churn_server: ServeProcess, expected: dict[str, Any]
) -> None:
    page, _ = sign_in(browser, churn_server, "prov_analyst")
    notice = page.wait_for_selector(".cim-notice p")
    assert "只能查看汇总数据" in notice.inner_text()
    assert page.locator("a.cim-customer-link").count() == 0
    assert page.locator("a.cim-download-link").count() == 0
    text = page.inner_text(".cim-app")
    for user in ("county_mgr_101", "county_mgr_102"):
        assert not any(cid in text for cid in expected[user]["customer_id"])
        assert not any(str(n) in text for n in expected[user]["cust_name"])
    page.screenshot(path="/tmp/churn_app_prov.png", full_page=True)
    page.context.close()
