"""The churn watchlist app without a browser: its widget logic on the scored churn bank.

The app goes through the real access layer and :func:`cimlib.churn.watchlist` (scope, masking, audit), with
principals of ``parameters/access.yaml``, on the session's 12-month churn bank with a saved model and the
scores of its latest month.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cimlib.apps import churn_watchlist as cw
from cimlib.apps.churn_watchlist import ChurnApp, churn_watchlist_app
from cimlib.serve import sign_identity
from cimlib.serve._token import SECRET_ENV, TOKEN_ENV

ROOT = Path(__file__).resolve().parent.parent
SECRET = "unit-test-secret-0123456789"


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


def shown_ids(app: ChurnApp) -> list[str]:
    return re.findall(r'class="cim-customer-link"[^>]*>([^<]+)</a>', app.list_table.value)


def download_bytes(app: ChurnApp) -> bytes:
    from cimlib.apps.target_search import XLSX_MIME

    match = re.search(r'href="data:([^;"]+);base64,([^"]+)"', app.download.value)
    assert match, app.download.value[:300]
    assert match.group(1) == XLSX_MIME
    return base64.b64decode(match.group(2))


@pytest.fixture(scope="module")
def scored(churn_bank: Any, churn_scored: dict) -> dict:
    """The scoring run's summary, with the model version that scored the month now (other tests of the
    session may retrain the same model on the same data, which re-scores the month under a new version)."""
    import json

    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(churn_scored["path"]).metadata[b"cim"])
    return {**churn_scored, "model_version": meta["model_version"]}


@pytest.fixture(scope="module")
def manager_app(churn_bank: Any, scored: dict) -> ChurnApp:
    """County manager 101's app in English, as it opens."""
    app = ChurnApp(principal(churn_bank, "county_mgr_101"), home=churn_bank.home, lang="en")
    assert app.status.value == "", app.status.value
    return app


@pytest.fixture(scope="module")
def service_list(churn_bank: Any, scored: dict) -> pd.DataFrame:
    """The service's top-10-per-branch list for county manager 101 (what the app must show)."""
    from cimlib.churn import watchlist

    frame = watchlist(principal(churn_bank, "county_mgr_101"), by="branch", limit=cw.DEFAULT_TOP_N,
                      home=churn_bank.home)  # fmt: skip
    assert len(frame) >= 5, "the churn bank has too few watchlist customers in county 101"
    return frame


# ---- text, scores on record, model card -----------------------------------------------------------------


def test_text_is_complete_in_both_languages() -> None:
    for key, texts in cw.TEXT.items():
        assert set(texts) == {"en", "zh_CN"}, key
        assert all(v.strip() for v in texts.values()), key
        en = set(re.findall(r"{(\w+)", texts["en"]))
        assert en == set(re.findall(r"{(\w+)", texts["zh_CN"])), key


def test_scored_months_and_the_model_card(churn_bank: Any, scored: dict, churn_backtest: dict) -> None:
    assert cw.scored_months(churn_bank.home) == [scored["as_of"]]
    assert cw.scored_months(churn_bank.home, "value") == []  # nothing scored for that definition
    info = cw.model_info(churn_bank.home, "hard", scored["model_version"])
    assert info["version"] == scored["model_version"]
    assert info["roc_auc"] == pytest.approx(churn_backtest["metrics"]["churn_model"]["roc_auc"])
    assert cw.model_info(churn_bank.home, "hard", "../../etc")["roc_auc"] is None
    assert cw.model_info(churn_bank.home, "hard", "20000101T000000Z-00000000")["roc_auc"] is None


# ---- the manager's view ---------------------------------------------------------------------------------


def test_header_names_the_month_definition_model_and_auc(
    manager_app: ChurnApp, scored: dict, churn_backtest: dict
) -> None:
    head = manager_app.model_label.value
    auc = churn_backtest["metrics"]["churn_model"]["roc_auc"]
    assert scored["as_of"][:7] in head and "Hard churn" in head
    assert scored["model_version"] in head and f"ROC AUC {auc:.3f}" in head
    assert "桐庐县行社经理" in manager_app.principal_label.value
    assert manager_app.as_of.options == ((scored["as_of"][:7], scored["as_of"]),)
    assert [v for _, v in manager_app.top_n.options] == list(cw.TOP_N_CHOICES)
    assert manager_app.top_n.value == cw.DEFAULT_TOP_N and manager_app.by.value == "branch"


def test_list_is_the_scoped_service_list_ranked_per_branch(
    manager_app: ChurnApp, service_list: pd.DataFrame
) -> None:
    shown = manager_app.shown
    assert shown is not None
    assert list(shown["customer_id"]) == list(service_list["customer_id"])
    assert shown_ids(manager_app) == list(service_list["customer_id"])
    assert shown["home_org_code"].str.startswith("101").all()
    for _, group in shown.groupby("home_org_code"):
        assert list(group["rank"]) == list(range(1, len(group) + 1))
        assert len(group) <= cw.DEFAULT_TOP_N
    table = manager_app.list_table.value
    assert table.count('class="cim-group"') == shown["home_org_code"].nunique()
    first = service_list.iloc[0]
    assert f"{first['churn_score']:.1%}" in table
    assert str(first["reasons"]).split(";")[0].replace("'", "&#x27;") in table
    assert "<th>Churn score</th>" in table and "Deposit ADB (CNY)" in table and "Reasons" in table


def test_each_row_links_to_the_360_view(churn_bank: Any, manager_app: ChurnApp) -> None:
    ids = shown_ids(manager_app)
    hrefs = re.findall(r'<a class="cim-customer-link" href="([^"]+)"', manager_app.list_table.value)
    assert hrefs == [f"/voila/render/customer_360.ipynb?customer={c}" for c in ids]
    app = ChurnApp(manager_app.principal, home=churn_bank.home, lang="en", base_url="/cim/")
    assert '<a class="cim-customer-link" href="/cim/voila/render/customer_360.ipynb?customer=' in (
        app.list_table.value
    )


def test_summary_and_chart_per_branch(manager_app: ChurnApp) -> None:
    shown = manager_app.shown
    summary = cw.branch_summary(shown)
    assert summary["customers"].sum() == len(shown)
    assert summary["value_at_risk"].sum() == pytest.approx(shown["risk_x_value"].sum())
    assert list(summary["value_at_risk"]) == sorted(summary["value_at_risk"], reverse=True)
    assert f"{len(shown)} customer(s) on the watchlist" in manager_app.summary.value
    assert "<svg" in manager_app.chart.value and "cim-chart-branches" in manager_app.chart.value


def test_summary_chart_data_and_encodings() -> None:
    summary = pd.DataFrame(
        {
            "home_org_code": ["101002", "101001"], "home_org_name": ["桐庐县X分理处", "桐庐县营业部"],
            "county_name": ["桐庐县", "桐庐县"], "label": ["X分理处", "营业部"], "customers": [3, 5],
            "value_at_risk": [25000.0, 10000.0],
        }
    )  # fmt: skip
    spec = cw.summary_chart(summary, "zh_CN").to_dict()
    left, right = spec["hconcat"]
    assert left["encoding"]["x"]["field"] == "customers"
    assert right["encoding"]["x"]["field"] == "value_at_risk"
    assert left["encoding"]["y"]["sort"] == ["X分理处", "营业部"] == right["encoding"]["y"]["sort"]
    assert right["encoding"]["x"]["title"] == "风险价值（万元）"
    data = next(iter(spec["datasets"].values()))
    assert [r["value_at_risk"] for r in data] == [2.5, 1.0]  # 万元
    en = cw.summary_chart(summary, "en").to_dict()
    assert [r["value_at_risk"] for r in next(iter(en["datasets"].values()))] == [25000.0, 10000.0]
    from cimlib import charts

    assert "<svg" in charts.to_svg(cw.summary_chart(summary, "zh_CN"))
    assert "<svg" in charts.to_svg(cw.summary_chart(cw.branch_summary(None), "en"))


def test_branch_filter_by_manager_and_top_n(churn_bank: Any, manager_app: ChurnApp) -> None:
    app = ChurnApp(manager_app.principal, home=churn_bank.home, lang="en")
    assert app.branch.layout.display is None  # a county manager may pick a branch
    codes = [v for _, v in app.branch.options]
    assert codes[0] == "" and set(codes[1:]) == set(app.frame["home_org_code"])
    app.branch.value = codes[1]
    assert set(app.shown["home_org_code"]) == {codes[1]} and app.frame["home_org_code"].nunique() > 1
    assert app.list_table.value.count('class="cim-group"') == 1
    app.branch.value = ""
    app.top_n.value = 0  # all
    whole = len(app.frame)
    assert whole >= len(manager_app.frame)
    app.by.value = "manager"
    assert app.frame.attrs["by"] == "manager" and len(app.frame) == whole
    table = app.list_table.value
    assert table.count('class="cim-group"') >= app.frame["manager_no"].nunique(dropna=False)
    key = app.frame["manager_no"].fillna("")
    for _, group in app.frame.groupby(key):
        assert sorted(group["rank"]) == list(range(1, len(group) + 1))
    app.top_n.value = 5
    assert app.frame.groupby(app.frame["manager_no"].fillna(""))["rank"].max().max() <= 5


def test_download_is_a_workbook_split_by_branch(manager_app: ChurnApp) -> None:
    import openpyxl

    data = download_bytes(manager_app)
    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    shown = manager_app.shown
    sheets = [ws for ws in wb.worksheets if ws.title != "about"]
    assert len(sheets) == shown["home_org_code"].nunique()
    assert sum(ws.max_row - 1 for ws in sheets) == len(shown)
    header = [c.value for c in next(sheets[0].iter_rows(max_row=1))]
    assert "Churn score (%)" in header and "Rank" in header and "Customer no." in header
    rows = list(sheets[0].iter_rows(min_row=2, max_row=2, values_only=True))
    assert str(rows[0][header.index("Customer no.")]) in set(shown["customer_id"])
    assert 'download="churn_watchlist_hard_' in manager_app.download.value


def test_language_switch_fetches_the_reasons_in_chinese(churn_bank: Any, manager_app: ChurnApp) -> None:
    app = ChurnApp(manager_app.principal, home=churn_bank.home, lang="en")
    english = set(app.frame["reasons"])
    app.lang_toggle.value = "zh_CN"  # what the toggle buttons do
    assert app.lang == "zh_CN" and app.frame is not None
    assert set(app.frame["reasons"]).isdisjoint(english)
    assert "预警客户" in app.summary.value and "万元" in app.summary.value
    assert "硬流失" in app.model_label.value and "日均存款（万元）" in app.list_table.value
    assert dict(app.by.options)["网点"] == "branch" and app.as_of.description == "月份"
    assert "下载 Excel" in app.download.value


def test_branch_manager_has_no_branch_filter(churn_bank: Any, scored: dict) -> None:
    app = ChurnApp(principal(churn_bank, "branch_mgr_101001"), home=churn_bank.home, lang="en")
    assert app.branch.layout.display == "none"
    assert app.frame is not None and set(app.frame["home_org_code"]) <= {"101001"}


# ---- messages ----------------------------------------------------------------------------------------------


def test_aggregate_only_role_gets_the_message_and_no_names(
    churn_bank: Any, service_list: pd.DataFrame
) -> None:
    app = ChurnApp(principal(churn_bank, "prov_analyst"), home=churn_bank.home, lang="en")
    assert "aggregates only" in app.notice.value
    assert app.frame is None and app.results.layout.display == "none"
    assert app.controls.layout.display == "none"
    assert app.refresh() is None and "aggregates only" in app.status.value
    text = all_html(app.widget)
    assert not any(cid in text for cid in service_list["customer_id"])
    assert not any(str(n) in text for n in service_list["cust_name"])


def test_auditor_has_no_access(churn_bank: Any) -> None:
    app = ChurnApp(principal(churn_bank, "auditor"), home=churn_bank.home, lang="en")
    assert "no access to customer data" in app.notice.value and app.frame is None


def test_a_month_without_scores_says_how_to_score_it(churn_bank: Any, manager_app: ChurnApp) -> None:
    app = ChurnApp(manager_app.principal, home=churn_bank.home, lang="en")
    from cimlib.customer import available_months

    earlier = available_months(app.principal, churn_bank.home)[-2]  # in the warehouse, not scored
    assert app.refresh(earlier) is None
    assert f"cim churn score --as-of {earlier}" in app.status.value
    assert app.results.layout.display == "none"
    assert app.refresh("1999-01") is None and "not in the warehouse" in app.status.value


def test_nothing_scored_yet_says_so(churn_bank: Any, manager_app: ChurnApp, monkeypatch: Any) -> None:
    monkeypatch.setattr(cw, "scored_months", lambda *_a, **_k: [])
    app = ChurnApp(manager_app.principal, home=churn_bank.home, lang="en")
    assert app.frame is None and "cim churn backtest" in app.status.value
    assert re.search(r"cim churn score --as-of \d{4}-\d{2}", app.status.value)
    assert "No month has been scored yet" in app.model_label.value


def test_an_empty_watchlist_is_a_friendly_message(
    churn_bank: Any, manager_app: ChurnApp, monkeypatch: Any
) -> None:
    import cimlib.churn

    real = cimlib.churn.watchlist

    def nobody(*args: Any, **kwargs: Any) -> pd.DataFrame:
        frame = real(*args, **kwargs)
        out = frame.head(0)
        out.attrs = dict(frame.attrs)
        return out

    monkeypatch.setattr(cimlib.churn, "watchlist", nobody)
    app = ChurnApp(manager_app.principal, home=churn_bank.home, lang="en")
    assert app.status.value == "" and app.frame is not None and not len(app.frame)
    assert "Good news" in app.list_table.value and "cim-empty" in app.list_table.value
    assert app.download.value == "" and app.chart.value == ""


def test_the_watchlist_is_audit_logged(churn_bank: Any, scored: dict) -> None:
    from cimlib.access import read_audit

    ChurnApp(principal(churn_bank, "county_mgr_102"), home=churn_bank.home, lang="en")
    log = read_audit(churn_bank.home, principal(churn_bank, "auditor"), user="county_mgr_102", limit=5)
    assert "churn_watchlist" in set(log["action"])


# ---- identity, warm-up and the notebook ----------------------------------------------------------------


@pytest.mark.parametrize("case", ["absent", "forged"])
def test_app_without_a_valid_identity_shows_no_data(case: str) -> None:
    env = {SECRET_ENV: SECRET}
    if case == "forged":
        env[TOKEN_ENV] = sign_identity("county_mgr_101", "not-the-secret")
    widget = churn_watchlist_app(lang="en", environ=env)
    assert "cim-denied" in widget._dom_classes
    text = all_html(widget)
    assert "could not confirm who you are" in text and "Churn watchlist" in text


def test_app_with_a_valid_identity_builds_for_that_user(
    churn_bank: Any, scored: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cimlib.access

    real = cimlib.access.principal_for
    seen: list[str] = []

    def fake_principal_for(user_id: str, home: Any = None) -> Any:
        seen.append(user_id)
        return real(user_id, home=churn_bank.home)

    monkeypatch.setattr(cimlib.access, "principal_for", fake_principal_for)
    env = {
        SECRET_ENV: SECRET,
        TOKEN_ENV: sign_identity("county_mgr_101", SECRET, now=time.time()),
        "QUERY_STRING": "user=prov_analyst",
        "SCRIPT_NAME": "/cim/voila/render/churn_watchlist.ipynb",
    }  # nothing but the token says who the user is
    widget = churn_watchlist_app(lang="zh_CN", home=churn_bank.home, environ=env)
    assert "cim-churn" in widget._dom_classes and "cim-denied" not in widget._dom_classes
    assert seen == ["county_mgr_101"]
    assert "/cim/voila/render/customer_360.ipynb?customer=" in all_html(widget)


def test_warm_up_reads_no_customer_data(churn_bank: Any, scored: dict) -> None:
    cw.warm_up(churn_bank.home)  # must not raise, and needs no principal


def test_churn_notebook_has_no_logic_and_no_outputs() -> None:
    nb = json.loads((ROOT / "notebooks" / "apps" / "churn_watchlist.ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code)
    assert "warm_up()" in "".join(code[0]["source"])
    assert "churn_watchlist_app(" in "".join(code[-1]["source"])
    for cell in code:
        assert cell.get("outputs") == [] and cell.get("execution_count") is None
        tree = ast.parse("".join(cell["source"]))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda)]
