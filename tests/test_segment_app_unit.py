"""The segment explorer app without a browser: its widget logic on the shared test bank.

Numbers come from :mod:`cimlib.segmentation` through the real access layer (scope, suppression, masking,
audit), with principals of ``parameters/access.yaml``.
"""

from __future__ import annotations

import ast
import json
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cimlib.apps import SegmentApp, segment_explorer_app
from cimlib.apps import segment_explorer as se
from cimlib.i18n import t
from cimlib.segmentation._cube import TOTAL
from cimlib.serve import sign_identity
from cimlib.serve._token import SECRET_ENV, TOKEN_ENV

ROOT = Path(__file__).resolve().parent.parent
SECRET = "unit-test-secret-0123456789"


def principal(bank: Any, user: str) -> Any:
    from cimlib.access import principal_for

    return principal_for(user, home=bank.home)


def all_html(widget: Any) -> str:
    out: list[str] = []

    def walk(node: Any) -> None:
        if hasattr(node, "value") and isinstance(node.value, str):
            out.append(node.value)
        for child in getattr(node, "children", ()):
            walk(child)

    walk(widget)
    return "\n".join(out)


def table_cells(table_html: str) -> list[list[str]]:
    """The body rows of a pivot table as lists of cell texts (row label first)."""
    body = table_html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r) for r in rows]


def number(text: str) -> float:
    return float(text.replace(",", "")) if text not in ("", "—") else 0.0


@pytest.fixture(scope="module")
def manager_app(bank: Any) -> SegmentApp:
    """County manager 101: customers by customer type x deposit ADB band (English)."""
    app = SegmentApp(principal(bank, "county_mgr_101"), home=bank.home, lang="en")
    app.rows.value, app.cols.value, app.measure.value = "customer_type", "deposit_adb", "customers"
    app.run_button.click()  # the same path as a user's click
    assert app.status.value == "", app.status.value
    return app


# ---- the pivot ---------------------------------------------------------------------------------------------


def test_pivot_table_shows_the_service_numbers_with_subtotals_that_add_up(manager_app: SegmentApp) -> None:
    from cimlib.segmentation import pivot

    app = manager_app
    expected = pivot(app.principal, "customer_type", "deposit_adb", "customers", home=app.home, lang="en")
    pd.testing.assert_frame_equal(app.frame, expected)
    rows = table_cells(app.pivot_table.value)
    assert [r[0] for r in rows] == [expected.attrs["row_labels"][i] for i in expected.index]
    assert rows[-1][0] == "Total"
    grid = [[number(c) for c in r[1:]] for r in rows]
    for line in grid:  # every row subtotal is the sum of its cells
        assert line[-1] == pytest.approx(sum(line[:-1]))
    for j in range(len(grid[0])):  # every column subtotal is the sum of its column
        assert grid[-1][j] == pytest.approx(sum(line[j] for line in grid[:-1]))
    assert grid[-1][-1] == expected.loc["_total", "_total"] > 0
    assert "background:#" in app.pivot_table.value  # a heat map
    assert "—" not in app.pivot_table.value  # the manager has detail rights: nothing suppressed
    assert "cim-chart-pivot" in app.chart.value and "<svg" in app.chart.value


def test_money_measure_and_filters_reach_the_service(bank: Any) -> None:
    from cimlib.segmentation import pivot

    app = SegmentApp(principal(bank, "county_mgr_101"), home=bank.home, lang="zh_CN")
    app.rows.value, app.cols.value, app.measure.value = "age", "", "deposit_adb"
    row = app.filters[0]
    row.dim.value = "customer_type"
    assert [v for _, v in row.members.options] == ["I", "C"]
    row.members.value = ("I",)
    assert app.current_filters() == {"customer_type": ["I"]}
    frame = app.run()
    assert frame is not None
    expected = pivot(app.principal, "age", None, "deposit_adb", filters={"customer_type": ["I"]},
                     home=bank.home, lang="zh_CN")  # fmt: skip
    pd.testing.assert_frame_equal(frame, expected)
    assert "万元" in app.measure.label
    grand = se.format_measure("deposit_adb", expected.loc["_total", "_total"], "zh_CN")
    assert f'<td class="num cim-subtotal">{grand}</td>' in app.pivot_table.value


def test_a_bad_request_shows_a_message_not_a_traceback(bank: Any) -> None:
    app = SegmentApp(principal(bank, "county_mgr_101"), home=bank.home, lang="en")
    app.rows.value, app.cols.value = "aum", "aum"
    assert app.run() is None
    assert "cannot be made" in app.status.value and "Traceback" not in app.status.value


# ---- drill-through -----------------------------------------------------------------------------------------


def test_drill_list_equals_the_service_and_links_to_the_360_view(manager_app: SegmentApp) -> None:
    from cimlib.segmentation import drill

    app = manager_app
    assert (app.row_member.value, app.col_member.value) != (None, None)  # pre-filled with the largest cell
    app.select_cell("I", "D1")
    app.drill_button.click()
    expected = drill(app.principal, {"customer_type": "I", "deposit_adb": "D1"}, home=app.home, limit=500)
    got = app.drill_frame
    assert got is not None and list(got["customer_id"]) == list(expected["customer_id"])
    assert list(got["cust_name"]) == list(expected["cust_name"])  # masked as returned
    assert got.attrs["total"] == expected.attrs["total"] == int(app.frame.loc["I", "D1"])
    cid = str(expected["customer_id"].iloc[0])
    assert f'href="/voila/render/customer_360.ipynb?customer={cid}" target="_blank"' in app.drill_list.value
    assert f"{expected.attrs['total']} customer(s)" in app.drill_summary.value


def test_drill_through_a_multi_member_filter_unions_its_cells(bank: Any) -> None:
    from cimlib.segmentation import drill

    app = SegmentApp(principal(bank, "county_mgr_101"), home=bank.home, lang="en")
    app.rows.value, app.cols.value = "customer_type", "deposit_adb"
    app.filters[0].dim.value = "age"
    app.filters[0].members.value = ("AGE1", "AGE2")
    app.run()
    app.select_cell("I", "_total")
    frame = app.drill()
    assert frame is not None
    ids = set()
    for age in ("AGE1", "AGE2"):
        ids |= set(drill(app.principal, {"customer_type": "I", "age": age}, home=bank.home)["customer_id"])
    assert set(frame["customer_id"]) == ids
    assert len(ids) == int(app.frame.loc["I", "_total"])


def test_drill_cells_expand_filters() -> None:
    assert se.drill_cells("a", "b", "x", "_total", {}) == [{"a": "x"}]
    assert se.drill_cells("a", "b", "x", "y", {"c": ["1", "2"]}) == [
        {"a": "x", "b": "y", "c": "1"},
        {"a": "x", "b": "y", "c": "2"},
    ]
    assert se.drill_cells("a", None, "x", "_total", {"a": ["z"]}) == []  # outside the filter
    assert se.drill_cells("a", None, "_total", "_total", {"a": ["x", "z"]}) == [{"a": "x"}, {"a": "z"}]


def test_provincial_analyst_sees_aggregates_only_with_small_cells_suppressed(bank: Any) -> None:
    from cimlib.segmentation import pivot

    app = SegmentApp(principal(bank, "prov_analyst"), home=bank.home, lang="zh_CN")
    assert t("segment.aggregates_only", "zh_CN") in app.notice.value
    assert app.drill_box.layout.display == "none"
    app.rows.value, app.cols.value, app.measure.value = "county", "aum", "customers"
    frame = app.run()
    assert frame is not None
    expected = pivot(app.principal, "county", "aum", "customers", home=bank.home, lang="zh_CN")
    n_sup = sum(v for row in expected.attrs["suppressed"].values() for v in row.values())
    assert n_sup > 0  # the test bank has small cells at this grain
    assert app.pivot_table.value.count('class="cim-suppressed"') == n_sup
    assert "cim-suppressed-note" in app.pivot_table.value and "5" in app.pivot_table.value
    assert "桐庐县农村商业银行" in app.pivot_table.value  # county banks by name, not code
    # Every shown inner value is at least k customers.
    for line in table_cells(app.pivot_table.value)[:-1]:
        for cell in line[1:-1]:
            assert cell in ("", "—") or number(cell) >= app.principal.min_cell
    assert app.drill() is None and app.drill_frame is None
    assert t("segment.no_detail", "zh_CN") in app.status.value
    assert "cim-customer-link" not in all_html(app.widget)


# ---- analyses, language, identity --------------------------------------------------------------------------


def test_analyses_tab_shows_charts_and_tables(manager_app: SegmentApp) -> None:
    app = manager_app
    app.tabs.selected_index = 1
    text = app.analyses.value
    app.tabs.selected_index = 0
    for key in ("age", "economic-nature", "loan-quality", "channels"):
        assert f"cim-chart-{key}" in text
    assert text.count("<svg") >= 4 and text.count("cim-analysis-table") == 4
    assert "NPL ratio" in text and "provision coverage" in text


def test_labels_in_both_languages(manager_app: SegmentApp) -> None:
    app = manager_app
    assert dict(app.rows.options)["Customer type"] == "customer_type"
    assert app.drill_button.description == "Customers in this cell"
    app.set_language("zh_CN")
    try:
        assert dict(app.rows.options)["客户类型"] == "customer_type"
        assert dict(app.measure.options)["客户数"] == "customers"
        assert app.drill_button.description == "查看该单元格客户"
        assert app.tabs.titles == ("透视表", "专题分析")
        assert "个人" in app.pivot_table.value and "合计" in app.pivot_table.value
        assert "CIM 客户分析工作台" in app.title.value
    finally:
        app.set_language("en")
    assert "Individual" in app.pivot_table.value and "Total" in app.pivot_table.value


def test_locales_have_the_same_segment_keys() -> None:
    import yaml

    loc = ROOT / "cimlib" / "i18n" / "locales"
    en = yaml.safe_load((loc / "en.yaml").read_text(encoding="utf-8"))["segment"]
    zh = yaml.safe_load((loc / "zh_CN.yaml").read_text(encoding="utf-8"))["segment"]
    assert set(en) == set(zh)
    for m in se.APP_MEASURES:
        assert f"measure_{m}" in en


@pytest.mark.parametrize("case", ["absent", "forged"])
def test_app_without_a_valid_identity_shows_no_data(case: str) -> None:
    env = {SECRET_ENV: SECRET}
    if case == "forged":
        env[TOKEN_ENV] = sign_identity("county_mgr_101", "not-the-secret")
    widget = segment_explorer_app(lang="en", environ=env)
    assert "cim-denied" in widget._dom_classes
    text = all_html(widget)
    assert "could not confirm who you are" in text and "Segment explorer" in text


def test_app_with_a_valid_identity_builds_for_that_user(bank: Any) -> None:
    env = {
        SECRET_ENV: SECRET,
        TOKEN_ENV: sign_identity("prov_analyst", SECRET, now=time.time()),
        "QUERY_STRING": "user=county_mgr_101",
        "SCRIPT_NAME": "/voila/render/segment_explorer.ipynb",
    }  # nothing but the token says who the user is
    widget = segment_explorer_app(lang="zh_CN", home=bank.home, environ=env)
    assert "cim-segment" in widget._dom_classes and "cim-denied" not in widget._dom_classes
    assert t("segment.aggregates_only", "zh_CN") in all_html(widget)


def test_segment_notebook_has_no_logic_and_no_outputs() -> None:
    nb = json.loads((ROOT / "notebooks" / "apps" / "segment_explorer.ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code)
    assert "segment_warm_up()" in "".join(code[0]["source"])
    assert "segment_explorer_app(lang=lang)" in "".join(code[-1]["source"])
    for cell in code:
        assert cell.get("outputs") == [] and cell.get("execution_count") is None
        tree = ast.parse("".join(cell["source"]))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda)]


def test_a_click_on_a_pivot_cell_lists_its_customers(manager_app: SegmentApp) -> None:
    """Small pivots are drawn as cell buttons; a click drills into that cell."""
    from cimlib.segmentation import drill

    app = manager_app
    assert app.pivot_grid.layout.display == "grid" and app.pivot_table.layout.display == "none"
    frame = app.frame
    assert set(app.cell_buttons) == {(str(r), str(c)) for r in frame.index for c in frame.columns}
    app.cell_buttons[("C", TOTAL)].click()
    assert (app.row_member.value, app.col_member.value) == ("C", TOTAL)
    want = drill(app.principal, {"customer_type": "C"}, home=app.home)
    assert list(app.drill_frame["customer_id"]) == list(want["customer_id"])
    assert app.drill_frame.attrs["total"] == want.attrs["total"] == frame.loc["C", TOTAL]


def test_roles_without_detail_get_no_cell_buttons(bank: Any) -> None:
    app = SegmentApp(principal(bank, "prov_analyst"), home=bank.home, lang="en")
    app.rows.value, app.cols.value = "customer_type", "deposit_adb"
    app.run_button.click()
    assert app.cell_buttons == {} and app.pivot_grid.layout.display == "none"
