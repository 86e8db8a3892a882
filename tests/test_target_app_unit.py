"""The target-customer search app without a browser: its widget logic on the shared test bank.

The app goes through the real access layer and ``cimlib.targeting`` (scope, masking, audit), with principals
of ``parameters/access.yaml``.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import io
import json
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cimlib.apps import TargetApp, adhoc_ruleset, target_search_app
from cimlib.apps import target_search as ts
from cimlib.i18n import t
from cimlib.serve import sign_identity
from cimlib.serve._token import SECRET_ENV, TOKEN_ENV

ROOT = Path(__file__).resolve().parent.parent
SECRET = "unit-test-secret-0123456789"
RULESET = "events"  # the shipped rule set with the most hits in county 101 of the test bank


def principal(bank: Any, user: str) -> Any:
    from cimlib.access import principal_for

    return principal_for(user, home=bank.home)


def all_html(widget: Any) -> str:
    """Every HTML string a widget tree shows."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if hasattr(node, "value") and isinstance(node.value, str):
            out.append(node.value)
        for child in getattr(node, "children", ()):
            walk(child)

    walk(widget)
    return "\n".join(out)


def body_rows(table_html: str) -> int:
    body = table_html.split("<tbody>", 1)[1] if "<tbody>" in table_html else ""
    return body.count("<tr>")


def download_bytes(app: TargetApp) -> bytes:
    match = re.search(r'href="data:([^;"]+);base64,([^"]+)"', app.download.value)
    assert match, app.download.value[:300]
    assert match.group(1) == ts.XLSX_MIME
    return base64.b64decode(match.group(2))


@pytest.fixture(scope="module")
def manager_app(bank: Any) -> TargetApp:
    """County manager 101 after running the events rule set (English)."""
    app = TargetApp(principal(bank, "county_mgr_101"), home=bank.home, lang="en")
    app.mode.value = "ruleset"
    app.ruleset.value = RULESET
    app.run_button.click()  # the same path as a user's click
    assert app.status.value == "", app.status.value
    return app


# ---- the ad-hoc condition: one rule, the same language ---------------------------------------------------


def test_adhoc_ruleset_compiles_through_the_rule_language() -> None:
    rs = adhoc_ruleset("deposit_balance >= 100000 and age > 60", "I")
    assert rs.name == "adhoc" and [r.id for r in rs.rules] == ["adhoc"]
    rule = rs.rules[0]
    assert rule.customer_type == "I" and rule.name["zh"] == "临时条件"
    assert rule.output == ["deposit_balance", "age"]  # the list shows what the condition reads
    assert "100000" not in rule.compiled.sql and 100000 in rule.compiled.params.values()  # bound, not inlined


@pytest.mark.parametrize(
    ("text", "message", "position", "suggestion"),
    [
        ("ag > 60", "unknown indicator 'ag'", 0, "age"),
        ("aum >= abc", "unknown indicator 'abc'", 7, None),
        ("age > ", "syntax error", 4, None),
        ("sex = 'X'", "'X' is not a code of sex", 6, None),
        ("age > 1; drop table dim_customer", "one expression only", 7, None),
    ],
)
def test_adhoc_condition_errors_name_the_position(
    text: str, message: str, position: int, suggestion: str | None
) -> None:
    from cimlib.targeting import RuleError

    with pytest.raises(RuleError) as info:
        adhoc_ruleset(text, "I")
    err = info.value
    assert message in err.message and err.position == position and err.suggestion == suggestion
    assert "rule adhoc" not in str(err)  # reported as the user's condition, not a rule file's
    assert str(err).startswith(f"condition at line 1, column {position + 1}")


def test_builder_rows_become_a_condition_of_the_language() -> None:
    parts = [
        ("deposit_balance", ">=", " 100,000 "),
        ("sex", "=", "F"),
        ("birthday", "<", "1970-01-01"),
        ("manager_no", "<>", "O'Brien"),
    ]
    text = ts.condition_text(parts, "I")
    assert text == (
        "deposit_balance >= 100000 and sex = 'F' and birthday < date '1970-01-01'"
        " and manager_no <> 'O''Brien'"
    )
    assert adhoc_ruleset(text, "I").rules[0].compiled.sql
    options = dict((v, k) for k, v in ts.builder_indicators("C", "zh_CN"))
    assert "industry" in options and "sex" not in options and "customer_type" not in options
    assert options["registered_capital"] == "注册资本 (元)"
    assert ("男 (M)", "M") in ts.code_options("code:sex", "zh_CN")


# ---- charts ------------------------------------------------------------------------------------------------

COUNTS = pd.DataFrame(
    {
        "county_name": ["县A", "县A", "县B"],
        "home_org_code": ["101001", "101002", "102001"],
        "home_org_name": ["县A营业部", "县A城东支行", "县B营业部"],
        "r1": [3, 1, 5],
        "r2": [0, 2, 1],
        "n_customers": [3, 3, 6],
    }
)


def test_branch_chart_data_and_encodings() -> None:
    chart = ts.branch_chart(COUNTS[COUNTS["county_name"] == "县A"], "zh_CN")
    spec = chart.to_dict()
    assert spec["mark"]["type"] == "bar"
    enc = spec["encoding"]
    assert (enc["y"]["field"], enc["y"]["type"], enc["y"]["sort"]) == ("label", "nominal", "-x")
    assert (enc["x"]["field"], enc["x"]["type"]) == ("customers", "quantitative")
    assert spec["title"] == "各网点客户数"
    assert list(chart.data["label"]) == ["城东支行", "营业部"]  # the county's name is not repeated
    assert list(chart.data["customers"]) == [3, 3]
    # More than one county bank: one bar per county.
    by_county = ts.branch_chart(COUNTS, "en")
    assert list(by_county.data["label"]) == ["县A", "县B"] and list(by_county.data["customers"]) == [6, 6]
    assert by_county.to_dict()["title"] == "Customers per county bank"
    assert len(ts.branch_chart(pd.DataFrame(), "en").data) == 0


def test_rule_chart_is_coloured_by_severity() -> None:
    from cimlib.targeting import load_ruleset

    rs = load_ruleset("risk")
    counts = pd.DataFrame({r.id: [i] for i, r in enumerate(rs.rules)} | {"n_customers": [1]})
    hits = ts.rule_hits(rs, counts, "en")
    assert list(hits["rule"]) == [r.id for r in rs.rules]
    assert list(hits["customers"]) == list(range(len(rs.rules)))
    chart = ts.rule_chart(ts.rule_hits(rs, counts, "zh_CN"), "zh_CN")
    spec = chart.to_dict()
    enc = spec["encoding"]
    assert enc["y"]["field"] == "name" and enc["x"]["field"] == "customers"
    assert enc["color"]["field"] == "severity"
    assert enc["color"]["scale"]["domain"] == ["高", "中", "低"]
    assert set(chart.data["name"]) == {r.name["zh"] for r in rs.rules}


def test_chart_svgs_render_offline() -> None:
    from cimlib import charts

    svg = charts.to_svg(ts.branch_chart(COUNTS, "zh_CN"))
    assert svg.startswith("<svg") and "各县行社客户数" in svg
    assert "http" not in svg.replace("http://www.w3.org", "")


# ---- the app on the test bank ------------------------------------------------------------------------------


def test_controls_offer_the_rule_sets_and_the_months(bank: Any, manager_app: TargetApp) -> None:
    from cimlib.customer import available_months
    from cimlib.targeting import list_rulesets, load_ruleset

    names = list_rulesets(bank.home)
    assert [v for _, v in manager_app.ruleset.options] == names
    labels = dict((v, k) for k, v in manager_app.ruleset.options)
    assert labels["risk"] == load_ruleset("risk", bank.home).title["en"]
    months = available_months(manager_app.principal, bank.home)
    assert list(manager_app.as_of.options) == months and manager_app.as_of.value == months[-1]
    assert manager_app.rule.options[0][1] == ""  # all rules of the set
    assert len(manager_app.rule.options) == len(load_ruleset(RULESET, bank.home).rules) + 1


def test_manager_gets_the_scoped_list_with_counts(bank: Any, manager_app: TargetApp) -> None:
    from cimlib.targeting import counts, run

    p = manager_app.principal
    frame = manager_app.frame
    assert frame is not None and len(frame) > 5
    expected = run(RULESET, p, home=bank.home)
    assert list(frame["customer_id"]) == list(expected["customer_id"])
    assert set(frame["county_name"]) == {"桐庐县农村商业银行"}
    assert str(len(frame)) in manager_app.summary.value
    # Counts from the list are the service's counts.
    service = counts(RULESET, p, home=bank.home).set_index("home_org_code")
    mine = manager_app.counts.set_index("home_org_code")
    assert mine["n_customers"].to_dict() == service["n_customers"].to_dict()
    for rid in frame.attrs["rules"]:
        assert mine[rid].to_dict() == service[rid].to_dict(), rid
    assert (
        dict(zip(manager_app.hits["rule"], manager_app.hits["customers"], strict=True)) == frame.attrs["hits"]
    )
    # The charts: rendered in the kernel, the per-branch one from these counts.
    assert manager_app.charts.value.count("<svg") == 2
    assert "cim-chart-branches" in manager_app.charts.value and "cim-chart-rules" in manager_app.charts.value
    chart = ts.branch_chart(manager_app.counts, "en")
    assert chart.data["customers"].sum() == len(frame)
    assert manager_app.results.layout.display == "flex"


def test_each_row_links_to_the_360_view(manager_app: TargetApp) -> None:
    frame = manager_app.frame
    links = re.findall(
        r'<a class="cim-customer-link" href="([^"]+)"[^>]*>([^<]+)</a>', manager_app.list_table.value
    )
    assert len(links) == min(len(frame), ts.MAX_LIST_ROWS)
    for href, cid in links:
        assert href == f"/voila/render/customer_360.ipynb?customer={cid}"
    assert [cid for _, cid in links] == list(frame["customer_id"].head(len(links)))
    assert 'target="_blank"' in manager_app.list_table.value
    # Under a reverse proxy's base path the link stays relative to the server.
    assert ts.customer_href("voila/render/customer_360.ipynb?customer=1", "/cim/") == (
        "/cim/voila/render/customer_360.ipynb?customer=1"
    )
    env = {"SCRIPT_NAME": "/cim/voila/render/target_search.ipynb"}
    assert ts.base_url_from(env) == "/cim/" and ts.base_url_from({}) == "/"


def test_personal_data_is_shown_as_the_service_masked_it(bank: Any, manager_app: TargetApp) -> None:
    frame = manager_app.frame
    people = frame[frame["customer_type"] == "I"]
    assert len(people)
    shown = manager_app.list_table.value
    for rec in people.head(20).to_dict("records"):
        assert "*" in rec["id_no"] and "*" in rec["phone"]  # county managers see names, not IDs or phones
        assert f"<td>{rec['id_no']}</td>" in shown and f"<td>{rec['phone']}</td>" in shown
        assert f"<td>{rec['cust_name']}</td>" in shown
    # A role that may not see names gets them masked, in the list and the download.
    masked = dataclasses.replace(manager_app.principal, unmasked=frozenset())
    app = TargetApp(masked, home=bank.home, lang="en")
    app.ruleset.value = RULESET
    app.run()
    names = app.frame[app.frame["customer_type"] == "I"]["cust_name"]
    clear = set(people["cust_name"])
    assert len(names) and all("*" in n for n in names) and not clear & set(names)
    assert not any(name in app.list_table.value for name in clear)
    import openpyxl

    sheet = openpyxl.load_workbook(io.BytesIO(download_bytes(app)), read_only=True).worksheets[0]
    cells = {str(c) for row in sheet.iter_rows(values_only=True) for c in row if c is not None}
    assert not clear & cells


def test_download_is_a_valid_workbook_with_every_row(manager_app: TargetApp) -> None:
    import openpyxl

    data = download_bytes(manager_app)
    assert data[:2] == b"PK" and zipfile.is_zipfile(io.BytesIO(data))
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    sheet = book.worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    ids = {str(c) for row in rows[1:] for c in row if c is not None}
    assert set(manager_app.frame["customer_id"].astype(str)) <= ids
    assert len(rows) - 1 == len(manager_app.frame)
    assert re.search(r'download="targets_events_\d{4}-\d{2}\.xlsx"', manager_app.download.value)
    assert f"Download Excel · {len(manager_app.frame)} customer(s)" in manager_app.download.value


def test_a_large_list_is_capped_on_screen_but_not_in_the_download(
    bank: Any, manager_app: TargetApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openpyxl

    monkeypatch.setattr(ts, "MAX_LIST_ROWS", 3)
    app = TargetApp(manager_app.principal, home=bank.home, lang="en")
    app.ruleset.value = RULESET
    frame = app.run()
    assert frame is not None and len(frame) > 3
    assert body_rows(app.list_table.value) == 3
    assert f"first 3 of {len(frame)} customers" in app.list_table.value
    sheet = openpyxl.load_workbook(io.BytesIO(download_bytes(app)), read_only=True).worksheets[0]
    assert sum(1 for _ in sheet.iter_rows()) - 1 == len(frame)


def test_a_long_list_writes_its_workbook_on_request(
    bank: Any, manager_app: TargetApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openpyxl

    import cimlib.targeting as T

    written: list[int] = []
    real = T.list_bytes

    def spy(frame: pd.DataFrame, **kwargs: Any) -> bytes:
        written.append(len(frame))
        return real(frame, **kwargs)

    monkeypatch.setattr(T, "list_bytes", spy)
    monkeypatch.setattr(ts, "EAGER_EXCEL_ROWS", 3)
    app = TargetApp(manager_app.principal, home=bank.home, lang="en")
    app.ruleset.value = RULESET
    frame = app.run()
    assert frame is not None and len(frame) > 3
    assert written == [] and app.download.value == ""  # nothing written until asked
    assert app.prepare_button.layout.display is None and not app.prepare_button.disabled
    assert f"{len(frame)} customer(s)" in app.prepare_button.description
    app.prepare_button.click()
    assert written == [len(frame)] and app.prepare_button.layout.display == "none"
    sheet = openpyxl.load_workbook(io.BytesIO(download_bytes(app)), read_only=True).worksheets[0]
    assert sum(1 for _ in sheet.iter_rows()) - 1 == len(frame)
    assert not app.run_button.disabled and app.run_button.description == "Run"


def test_a_failed_export_keeps_the_list(
    bank: Any, manager_app: TargetApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cimlib.targeting as T

    def broken(frame: pd.DataFrame, **kwargs: Any) -> bytes:
        raise OSError("disk full /var/secret")

    monkeypatch.setattr(T, "list_bytes", broken)
    app = TargetApp(manager_app.principal, home=bank.home, lang="en")
    app.ruleset.value = RULESET
    assert app.run() is not None
    assert t("target.download_failed", "en") in app.download.value and "secret" not in all_html(app.widget)
    assert "cim-customer-link" in app.list_table.value and app.status.value == ""


def test_one_rule_of_a_set_and_an_earlier_month(bank: Any, manager_app: TargetApp) -> None:
    app = TargetApp(manager_app.principal, home=bank.home, lang="en")
    app.ruleset.value = RULESET
    app.rule.value = "birthday"
    app.as_of.value = app.as_of.options[-2]
    frame = app.run()
    assert frame is not None and set(frame["rules"]) <= {"birthday"}
    assert frame.attrs["as_of"].startswith(app.as_of.options[-2])
    assert list(app.hits["rule"]) == ["birthday"]


def test_an_unknown_month_says_so(bank: Any, manager_app: TargetApp) -> None:
    from cimlib.targeting import load_ruleset

    app = TargetApp(manager_app.principal, home=bank.home, lang="en")
    assert app.run(ts.Request(load_ruleset(RULESET, bank.home), None, "2019-01")) is None
    assert t("target.bad_month", "en") in app.status.value
    assert app.results.layout.display == "none"


def test_provincial_analyst_sees_counts_only(bank: Any, manager_app: TargetApp) -> None:
    from cimlib.access import NotPermitted
    from cimlib.targeting import run

    analyst = principal(bank, "prov_analyst")
    with pytest.raises(NotPermitted):
        run(RULESET, analyst, home=bank.home)
    app = TargetApp(analyst, home=bank.home, lang="zh_CN")
    assert t("target.counts_only", "zh_CN") in app.notice.value
    assert not app.run_button.disabled
    app.ruleset.value = RULESET
    assert app.run() is None and app.frame is None
    assert app.status.value == ""
    counts = app.counts
    assert counts is not None and counts["county_name"].nunique() > 1  # the whole province
    assert counts["n_customers"].sum() > len(manager_app.frame)
    assert "仅汇总数" in app.summary.value
    assert app.list_table.value == "" and app.download.value == ""
    assert "cim-chart-branches" in app.charts.value and "各县行社客户数" in app.charts.value
    shown = all_html(app.widget)
    assert "cim-customer-link" not in shown and "data:" not in shown
    assert not any(cid in shown for cid in manager_app.frame["customer_id"])


def test_adhoc_compile_error_is_shown_with_its_position(bank: Any, manager_app: TargetApp) -> None:
    app = TargetApp(manager_app.principal, home=bank.home, lang="en")
    app.mode.value = "adhoc"
    assert app.adhoc_box.layout.display == "flex" and app.ruleset_box.layout.display == "none"
    row = app.rows[0]
    row.indicator.value = "deposit_balance"
    row.operator.value = ">="
    row.value.value = "abc"
    assert app.condition.value == "deposit_balance >= abc"
    app.run_button.click()
    assert t("target.rule_error", "en") in app.status.value
    assert "column 20: unknown indicator &#x27;abc&#x27;" in app.status.value
    assert "deposit_balance &gt;= abc\n" in app.status.value and "^</pre>" in app.status.value
    assert app.frame is None and app.results.layout.display == "none"
    # The condition text may be edited directly; a misspelt name gets a suggestion.
    app.condition.value = "ag > 60"
    app.run_button.click()
    assert "did you mean &#x27;age&#x27;?" in app.status.value
    app.set_language("zh_CN")  # the message stays, relabelled
    assert "条件无法编译" in app.status.value and "did you mean" in app.status.value


def test_adhoc_condition_runs_for_a_manager_and_counts_for_the_analyst(
    bank: Any, manager_app: TargetApp
) -> None:
    app = TargetApp(manager_app.principal, home=bank.home, lang="en")
    app.mode.value = "adhoc"
    app.rows[0].indicator.value = "age"
    app.rows[0].operator.value = ">="
    app.rows[0].value.value = "60"
    row = app.add_condition("sex")
    assert row is not None and row.box.children[2] is row.code  # a coded indicator gets a dropdown
    row.code.value = "F"
    assert app.condition.value == "age >= 60 and sex = 'F'"
    frame = app.run()
    assert frame is not None and len(frame) > 0
    assert set(frame["customer_type"]) == {"I"} and (frame["age"] >= 60).all()
    assert set(frame["rules"]) == {"adhoc"} and "age" in frame.columns
    assert "Ad-hoc condition" in app.summary.value and "Age" in app.list_table.value
    app.remove_condition(row)
    assert app.condition.value == "age >= 60" and len(app.rows) == 1
    app.remove_condition(app.rows[0])  # the last row stays
    assert len(app.rows) == 1
    # Corporate customers: the indicators change with the type.
    app.customer_type.value = "C"
    assert "industry" in [v for _, v in app.rows[0].indicator.options]
    assert "sex" not in [v for _, v in app.rows[0].indicator.options]
    analyst = TargetApp(principal(bank, "prov_analyst"), home=bank.home, lang="en")
    analyst.mode.value = "adhoc"
    analyst.condition.value = "age >= 60 and sex = 'F'"
    assert analyst.run() is None
    assert analyst.counts["n_customers"].sum() >= len(frame)


def test_language_switch_runs_the_list_again_in_that_language(bank: Any, manager_app: TargetApp) -> None:
    app = TargetApp(manager_app.principal, home=bank.home, lang="en")
    app.ruleset.value = "risk"
    app.run()
    assert app.frame is not None and len(app.frame)
    english = set(app.frame["rule_names"])
    app.lang_toggle.value = "zh_CN"  # what the toggle buttons do
    assert app.lang == "zh_CN" and app.run_button.description == "查找"
    assert set(app.frame["rule_names"]).isdisjoint(english)
    assert "风险客户" in app.summary.value and "下载 Excel" in app.download.value
    assert dict(app.ruleset.options)["风险客户"] == "risk" and app.ruleset.value == "risk"


def test_auditor_has_no_access_and_nothing_runs(bank: Any) -> None:
    app = TargetApp(principal(bank, "auditor"), home=bank.home, lang="en")
    assert t("target.no_access", "en") in app.notice.value
    assert app.run_button.disabled
    assert app.run() is None and app.counts is None
    assert t("target.no_access", "en") in app.status.value


def test_runs_are_audit_logged(bank: Any) -> None:
    from cimlib.access import read_audit

    app = TargetApp(principal(bank, "county_mgr_102"), home=bank.home, lang="en")
    app.ruleset.value = "key_customers"
    app.run()
    log = read_audit(bank.home, principal(bank, "auditor"), user="county_mgr_102", limit=5)
    assert "target_list" in set(log["action"]) and "key_customers" in set(log["target"])


# ---- identity and the notebook -------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["absent", "forged"])
def test_app_without_a_valid_identity_shows_no_data(case: str) -> None:
    env = {SECRET_ENV: SECRET}
    if case == "forged":
        env[TOKEN_ENV] = sign_identity("county_mgr_101", "not-the-secret")
    widget = target_search_app(lang="en", environ=env)
    assert "cim-denied" in widget._dom_classes
    text = all_html(widget)
    assert "could not confirm who you are" in text and "Target customers" in text


def test_app_with_a_valid_identity_builds_for_that_user(bank: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import cimlib.access

    real = cimlib.access.principal_for
    seen: list[str] = []

    def fake_principal_for(user_id: str, home: Any = None) -> Any:
        seen.append(user_id)
        return real(user_id, home=bank.home)

    monkeypatch.setattr(cimlib.access, "principal_for", fake_principal_for)
    env = {
        SECRET_ENV: SECRET,
        TOKEN_ENV: sign_identity("prov_analyst", SECRET, now=time.time()),
        "QUERY_STRING": "user=county_mgr_101",
        "SCRIPT_NAME": "/voila/render/target_search.ipynb",
    }  # nothing but the token says who the user is
    widget = target_search_app(lang="zh_CN", home=bank.home, environ=env)
    assert "cim-target" in widget._dom_classes and "cim-denied" not in widget._dom_classes
    assert seen == ["prov_analyst"]
    assert t("target.counts_only", "zh_CN") in all_html(widget)


def test_target_notebook_has_no_logic_and_no_outputs() -> None:
    nb = json.loads((ROOT / "notebooks" / "apps" / "target_search.ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code)
    assert "target_warm_up()" in "".join(code[0]["source"])
    for cell in code:
        assert cell.get("outputs") == [] and cell.get("execution_count") is None
        tree = ast.parse("".join(cell["source"]))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda)]
