"""The managers' dashboard app without a browser: its widget logic on the 13-month analysis bank.

Figures come from :mod:`cimlib.analysis` through the real access layer (scope, suppression, masking, audit),
with principals of ``parameters/access.yaml``. The key figures are checked against the analysis functions
and against a direct SQL count of the warehouse; the provincial edition must show no customer identity and
its refused drill must be in the audit log.
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

from cimlib.apps import management_dashboard as md
from cimlib.apps.management_dashboard import TABS, DashboardApp, management_dashboard_app
from cimlib.i18n import format_money, locale_keys, t
from cimlib.serve import sign_identity
from cimlib.serve._token import SECRET_ENV, TOKEN_ENV

ROOT = Path(__file__).resolve().parent.parent
SECRET = "unit-test-secret-0123456789"


def principal(bank: Any, user: str) -> Any:
    from cimlib.access import principal_for

    return principal_for(user, home=bank.home)


def all_html(widget: Any) -> str:
    """Every text of a widget tree (HTML values, descriptions, options, tab titles)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        for attr in ("value", "description", "tooltip"):
            v = getattr(node, attr, None)
            if isinstance(v, str):
                out.append(v)
        for opt in getattr(node, "options", ()) or ():
            out.append(str(opt[0] if isinstance(opt, tuple) else opt))
        for title in getattr(node, "titles", ()) or ():
            out.append(str(title))
        for child in getattr(node, "children", ()):
            walk(child)

    walk(widget)
    return "\n".join(out)


def card_texts(app: DashboardApp) -> dict[str, str]:
    """Each key-figure card's measure and its big number, as shown."""
    out = {}
    for box in app.kpi_box.children:
        card = box.children[0].value
        measure = re.search(r'data-measure="([^"]+)"', card).group(1)
        out[measure] = re.search(r'<div class="cim-kpi-value">([^<]*)', card).group(1).strip()
    return out


@pytest.fixture(scope="module")
def county_app(analysis_bank: Any) -> DashboardApp:
    """County manager 101's dashboard, in English, on the latest month."""
    app = DashboardApp(principal(analysis_bank, "county_mgr_101"), home=analysis_bank.home, lang="en")
    assert app.status.value == "", app.status.value
    return app


@pytest.fixture(scope="module")
def prov_app(analysis_bank: Any) -> DashboardApp:
    """The provincial analyst's dashboard (all orgs, aggregates only), in English."""
    app = DashboardApp(principal(analysis_bank, "prov_analyst"), home=analysis_bank.home, lang="en")
    assert app.status.value == "", app.status.value
    return app


@pytest.fixture(scope="module")
def snap(analysis_bank: Any) -> Any:
    from cimlib.customer import _data as D

    return D.snapshot(D.resolve_home(analysis_bank.home))


# ---- opening view: org, month, key figures -----------------------------------------------------------------


def test_opens_on_the_users_org_and_the_latest_month(county_app: DashboardApp, snap: Any) -> None:
    from cimlib.customer import _data as D

    latest = max(D.as_of_dates(snap))
    assert county_app.org.value == "101000"
    assert county_app.as_of.value == latest.isoformat()
    assert county_app.as_of.options[0][1] == latest.isoformat()  # newest first
    codes = [v for _, v in county_app.org.options]
    assert codes[0] == "101000" and len(codes) > 1
    assert all(c.startswith("101") for c in codes), codes  # its branches only, no other county
    assert county_app.active_tab == "macro"
    assert "org=101000" in county_app.segment_link.value and f"as_of={latest.isoformat()[:7]}" in (
        county_app.segment_link.value
    )


def test_key_figures_equal_the_macro_overview(county_app: DashboardApp) -> None:
    from cimlib.analysis._macro import overview

    app = county_app
    expected = overview(app.principal, home=app.home, lang="en")
    pd.testing.assert_frame_equal(app.kpi_frame, expected)
    shown = card_texts(app)
    assert list(shown) == list(expected["measure"])
    for rec in expected.to_dict("records"):
        kind = md.value_kind("current", rec["measure"], rec["kind"])
        assert shown[rec["measure"]] == md.format_value(rec["current"], kind, "en"), rec["measure"]
    assert shown["deposit_balance"] == format_money(
        expected.set_index("measure").at["deposit_balance", "current"], "en"
    )


def test_key_figures_match_a_direct_count_of_the_warehouse(county_app: DashboardApp, snap: Any) -> None:
    """Customers, deposits and loans of county 101 this month and last, straight from the marts."""
    day = dt_of(county_app.as_of.value)
    prev = sorted(d for d in (dt_of(v) for _, v in county_app.as_of.options) if d < day)[-1]
    _, rows = snap.query(
        "SELECT m.as_of_date, count(*), sum(m.deposit_balance), sum(m.loan_balance) "
        "FROM mart_customer_month m "
        "JOIN dim_customer d USING (customer_id) WHERE d.county_code = '101000' "
        f"AND m.as_of_date IN (DATE '{day}', DATE '{prev}') GROUP BY 1"
    )
    got = {r[0]: r for r in rows}
    k = county_app.kpi_frame.set_index("measure")
    assert k.at["customers", "current"] == got[day][1]
    assert k.at["customers", "prev_month"] == got[prev][1]
    assert k.at["deposit_balance", "current"] == pytest.approx(float(got[day][2]), abs=0.01)
    assert k.at["loan_balance", "current"] == pytest.approx(float(got[day][3]), abs=0.01)
    growth = float(got[day][2]) / float(got[prev][2]) - 1
    assert k.at["deposit_balance", "prev_month_growth"] == pytest.approx(growth, rel=1e-9)
    cards = [b.children[0].value for b in county_app.kpi_box.children]
    card = next(c for c in cards if 'data-measure="deposit_balance"' in c)
    assert f"{growth:+.1%}" in card


def dt_of(text: str) -> Any:
    import datetime as dt

    return dt.date.fromisoformat(text)


def test_changes_are_coloured_by_good_or_bad_news() -> None:
    frame = pd.DataFrame(
        {
            "measure": ["deposit_balance", "npl_ratio", "customers"],
            "kind": ["amount", "rate", "count"],
            "current": [110.0, 0.03, 10.0],
            "prev_month": [100.0, 0.02, 10.0],
            "prev_month_change": [10.0, 0.01, 0.0],
            "prev_month_growth": [0.10, 0.5, 0.0],
            "last_year": [120.0, 0.04, float("nan")],
            "last_year_change": [-10.0, -0.01, float("nan")],
            "last_year_growth": [-10 / 120, -0.25, float("nan")],
            "year_start": [float("nan")] * 3,
            "year_start_change": [float("nan")] * 3,
            "year_start_growth": [float("nan")] * 3,
        }
    )
    dep, npl, cust = md.kpi_cards_html(frame, "en")
    assert '<span class="cim-good">▲ +10.0%</span>' in dep and '<span class="cim-bad">▼ -8.3%</span>' in dep
    # a rate moves in percentage points; a rising NPL ratio is bad news
    assert (
        '<span class="cim-bad">▲ +1.00 pp</span>' in npl and '<span class="cim-good">▼ -1.00 pp</span>' in npl
    )
    assert '<span class="cim-flat"> 0.0%</span>' in cust and "—" in cust  # no change; no base month
    assert "3.00%" in npl and ">10<" in cust


def test_key_focus_list_is_the_services(county_app: DashboardApp) -> None:
    from cimlib.analysis._focus import key_focus

    expected = key_focus(county_app.principal, home=county_app.home, lang="en")
    pd.testing.assert_frame_equal(county_app.focus_frame, expected)
    for label in expected["label"].head(5):
        assert str(label) in county_app.focus.value


# ---- tabs --------------------------------------------------------------------------------------------------


def test_only_the_active_tab_is_rendered_at_first(analysis_bank: Any) -> None:
    app = DashboardApp(principal(analysis_bank, "county_mgr_101"), home=analysis_bank.home, lang="en")
    assert app.tab_content["macro"].value
    assert all(app.tab_content[tab].value == "" for tab in TABS[1:])
    assert set(app.frames) == {"macro"}


@pytest.mark.parametrize("index,tab", list(enumerate(TABS)))
def test_each_tab_renders_real_figures_a_chart_and_a_table(
    county_app: DashboardApp, index: int, tab: str
) -> None:
    app = county_app
    app.tabs.selected_index = index  # the same path as a user's click
    body = app.tab_content[tab].value
    assert app.status.value == ""
    assert "<svg" in body and "<table" in body, tab
    assert "cim-unavailable" not in body, body[:2000]
    assert app.frames[tab], tab
    for sec in md.SECTIONS[tab]:
        assert sec.key in app.frames[tab], (tab, sec.key)
        assert f"cim-section-{sec.key}" in body


def test_tab_tables_show_the_analysis_frames(county_app: DashboardApp) -> None:
    from cimlib.analysis._product import product_structure

    app = county_app
    app.tabs.selected_index = TABS.index("product")
    expected = product_structure(app.principal, home=app.home, lang="en")
    pd.testing.assert_frame_equal(app.frames["product"]["product_structure"], expected)
    top = expected.sort_values("balance", ascending=False).iloc[0]
    assert html_escape(str(top["label"])) in app.tab_content["product"].value
    assert format_money(top["balance"], "en") in app.tab_content["product"].value


def html_escape(text: str) -> str:
    import html

    return html.escape(text)


def test_tabs_are_cached_per_org_month_and_language(county_app: DashboardApp, monkeypatch: Any) -> None:
    app = county_app
    app.tabs.selected_index = TABS.index("channel")
    before = app.tab_content["channel"].value
    calls: list[str] = []
    real = md.analysis_function

    def spy(module: str, name: str | None) -> Any:
        fn = real(module, name)
        if fn is None or name is None or not name.startswith(("channel", "card", "underused")):
            return fn
        return lambda *a, **k: calls.append(name) or fn(*a, **k)

    monkeypatch.setattr(md, "analysis_function", spy)
    app.tabs.selected_index = 0
    app.tabs.selected_index = TABS.index("channel")
    assert calls == [] and app.tab_content["channel"].value == before


def test_org_selector_shows_the_chosen_branch(county_app: DashboardApp) -> None:
    from cimlib.analysis._macro import overview

    app = county_app
    branch = [v for _, v in app.org.options][1]
    app.tabs.selected_index = 0
    app.org.value = branch  # the user's choice
    try:
        expected = overview(app.principal, org=branch, home=app.home, lang="en")
        pd.testing.assert_frame_equal(app.kpi_frame, expected)
        assert app.org_names[branch] in app.kpi_title.value
        assert f"org={branch}" in app.segment_link.value
        cust = expected.set_index("measure").at["customers", "current"]
        total = (
            overview(app.principal, home=app.home, lang="en").set_index("measure").at["customers", "current"]
        )
        assert 0 < cust < total
    finally:
        app.org.value = "101000"


def test_an_earlier_month_compares_with_its_own_previous_month(county_app: DashboardApp) -> None:
    from cimlib.analysis._macro import overview

    app = county_app
    month = app.as_of.options[3][1]
    app.as_of.value = month
    try:
        expected = overview(app.principal, month, home=app.home, lang="en")
        pd.testing.assert_frame_equal(app.kpi_frame, expected)
        assert month[:7] in app.kpi_title.value and f"as_of={month[:7]}" in app.segment_link.value
    finally:
        app.as_of.value = app.as_of.options[0][1]


# ---- drills ------------------------------------------------------------------------------------------------


def test_a_key_figure_drills_to_its_customers_with_links_to_the_360_view(county_app: DashboardApp) -> None:
    from cimlib.analysis._macro import overview_customers

    app = county_app
    app.kpi_buttons["deposit_balance"].click()
    expected = overview_customers(
        app.principal, "deposit_balance", home=app.home, lang="en", limit=md.DRILL_LIMIT
    )
    got = app.drill_frame
    assert got is not None and len(got) > 0
    assert list(got["customer_id"]) == list(expected["customer_id"])
    assert app.drill_panel.layout.display == "flex"
    cid = str(got["customer_id"].iloc[0])
    assert f'href="/voila/render/customer_360.ipynb?customer={cid}"' in app.drill_list.value
    assert "segment_explorer.ipynb?org=101000&amp;as_of=" in app.drill_list.value
    # masked identities only: no full ID number in the list
    assert not re.search(r"\b\d{17}[\dX]\b", app.drill_list.value)


def test_each_tab_drill_lists_its_customers(county_app: DashboardApp) -> None:
    from cimlib.analysis._product import product_customers

    app = county_app
    for index, tab in enumerate(TABS[1:], start=1):
        app.tabs.selected_index = index
        targets = app.drill_targets(tab)
        assert targets, tab
        app.drill_button[tab].click()
        assert app.drill_frame is not None, tab
        assert "cim-drill-refused" not in app.drill_list.value
    app.tabs.selected_index = TABS.index("product")
    label, value = app.drill_targets("product")[0]
    frame = app.drill("product", value)
    code = value.split("|", 1)[1]
    expected = product_customers(app.principal, code, home=app.home, lang="en", limit=md.DRILL_LIMIT)
    assert list(frame["customer_id"]) == list(expected["customer_id"])
    assert label.split(": ", 1)[1] in app.drill_title.value


def test_provincial_edition_shows_no_customer_identity(prov_app: DashboardApp, snap: Any) -> None:
    app = prov_app
    assert app.edition == "provincial"
    assert "aggregates only" in app.notice.value
    for index in range(len(TABS)):
        app.tabs.selected_index = index
        assert "<svg" in app.tab_content[TABS[index]].value
    text = all_html(app.widget)
    _, rows = snap.query("SELECT customer_id FROM dim_customer")
    ids = {str(r[0]) for r in rows}
    shown = set(re.findall(r"\d{6,}", text))
    assert not shown & ids
    assert "cim-customer-link" not in text and "customer_360.ipynb" not in text
    codes = [v for _, v in app.org.options]
    assert codes[0] == "100000" and {"101000", "102000", "101001"} <= set(codes)


def test_provincial_drill_is_refused_audited_and_replaced_by_a_message(
    prov_app: DashboardApp, analysis_bank: Any
) -> None:
    from cimlib.access import read_audit

    app = prov_app
    app.tabs.selected_index = 0
    assert app.drill_kpi("deposit_balance") is None
    assert "cim-drill-refused" in app.drill_list.value and "audit log" in app.drill_list.value
    app.tabs.selected_index = TABS.index("product")
    assert app.drill("product") is None
    log = read_audit(analysis_bank.home, principal(analysis_bank, "auditor"), user="prov_analyst")
    refused = log[log["outcome"] == "refused"]
    assert len(refused) >= 2, log.tail()
    assert "cim-customer-link" not in all_html(app.widget)


def test_small_groups_are_blanked_for_the_provincial_analyst(prov_app: DashboardApp) -> None:
    app = prov_app
    app.org.value = "101001"  # one branch: some groups are small
    try:
        app.tabs.selected_index = TABS.index("groups")
        frames = app.frames["groups"]
        sup = [
            f
            for f in frames.values()
            if "suppressed" in f and f["suppressed"].fillna(False).astype(bool).any()
        ]
        assert sup, "expected a suppressed group on one branch"
        for f in sup:
            hidden = f[f["suppressed"].fillna(False).astype(bool)]
            assert hidden["customers"].isna().all()
        assert "fewer than 5 customers" in app.tab_content["groups"].value
    finally:
        app.org.value = "100000"


def test_county_manager_never_sees_another_county(county_app: DashboardApp, snap: Any) -> None:
    _, rows = snap.query("SELECT org_name FROM core_org WHERE org_code LIKE '102%' OR org_code LIKE '103%'")
    others = [r[0] for r in rows]
    for index in range(len(TABS)):
        county_app.tabs.selected_index = index
    text = all_html(county_app.widget)
    assert not [name for name in others if name in text]


def test_customer_manager_sees_own_customers_and_a_message_for_org_level_figures(analysis_bank: Any) -> None:
    app = DashboardApp(principal(analysis_bank, "cust_mgr_e1000005"), home=analysis_bank.home, lang="en")
    assert app.org.disabled and len(app.org.options) == 1
    assert len(app.kpi_box.children) > 0
    app.tabs.selected_index = TABS.index("channel")
    assert t("dashboard.not_for_role", "en") in app.tab_content["channel"].value


def test_auditor_sees_no_data(analysis_bank: Any) -> None:
    app = DashboardApp(principal(analysis_bank, "auditor"), home=analysis_bank.home, lang="en")
    assert app.body.layout.display == "none" and app.controls.layout.display == "none"
    assert t("dashboard.no_access", "en") in app.notice.value
    assert app.kpi_frame is None


# ---- language ----------------------------------------------------------------------------------------------


def test_language_switch_relabels_everything(analysis_bank: Any) -> None:
    app = DashboardApp(principal(analysis_bank, "county_mgr_101"), home=analysis_bank.home, lang="en")
    app.tabs.selected_index = TABS.index("channel")
    en = all_html(app.widget)
    assert "Management dashboard" in en and "vs last month" in en and "Channel volume" in en
    app.lang_toggle.value = "zh_CN"  # the user's click
    zh = all_html(app.widget)
    assert app.lang == "zh_CN"
    assert t("dashboard.title", "zh_CN") in zh and "较上月" in zh and "渠道交易量" in zh
    assert [app.tabs.get_title(i) for i in range(len(TABS))] == [
        t(f"dashboard.tab_{k}", "zh_CN") for k in TABS
    ]
    for word in ("vs last month", "Management dashboard", "Deposit balance", "Channel volume", "Customers"):
        assert word not in zh, word
    assert "万元" in zh
    app.lang_toggle.value = "en"
    assert "vs last month" in all_html(app.widget) and "较上月" not in all_html(app.widget)


def test_locales_have_the_same_dashboard_keys_and_every_used_key() -> None:
    import yaml

    loc = ROOT / "cimlib" / "i18n" / "locales"
    en = yaml.safe_load((loc / "en.yaml").read_text(encoding="utf-8"))["dashboard"]
    zh = yaml.safe_load((loc / "zh_CN.yaml").read_text(encoding="utf-8"))["dashboard"]
    assert set(en) == set(zh)
    source = (ROOT / "cimlib/apps/management_dashboard.py").read_text(encoding="utf-8")
    used = set(re.findall(r'\btr\(\s*"([a-z_]+)"\s*[,)]', source))
    used |= set(re.findall(r'"dashboard\.([a-z_]+)"', source))
    used |= {f"tab_{k}" for k in TABS} | {f"vs_{k}" for k in md.COMPARISONS}
    used |= {f"sec_{s.key}" for tab in TABS for s in md.SECTIONS[tab]}
    used |= {f"drill_{d.key}" for tab in TABS for d in md.DRILLS[tab]}
    assert not used - set(en), sorted(used - set(en))
    keys = locale_keys("en")
    assert all(f"dashboard.{k}" in keys for k in en)


# ---- sign-in, notebook, segment explorer deep link ---------------------------------------------------------


@pytest.mark.parametrize("case", ["absent", "forged"])
def test_app_without_a_valid_identity_shows_no_data(case: str) -> None:
    env = {SECRET_ENV: SECRET}
    if case == "forged":
        env[TOKEN_ENV] = sign_identity("county_mgr_101", "not-the-secret")
    widget = management_dashboard_app(lang="en", environ=env)
    assert "cim-denied" in widget._dom_classes
    text = all_html(widget)
    assert "could not confirm who you are" in text and "Management dashboard" in text


def test_app_with_a_valid_identity_builds_for_that_user(analysis_bank: Any) -> None:
    env = {
        SECRET_ENV: SECRET,
        TOKEN_ENV: sign_identity("prov_analyst", SECRET, now=time.time()),
        "QUERY_STRING": "user=county_mgr_101&org=101000",
        "SCRIPT_NAME": "/cim/voila/render/management_dashboard.ipynb",
    }  # nothing but the token says who the user is
    widget = management_dashboard_app(lang="zh_CN", home=analysis_bank.home, environ=env)
    assert "cim-dash" in widget._dom_classes and "cim-denied" not in widget._dom_classes
    text = all_html(widget)
    assert t("dashboard.edition_provincial", "zh_CN") in text
    assert 'href="/cim/voila/render/segment_explorer.ipynb?org=100000' in text


def test_dashboard_notebook_has_no_logic_and_no_outputs() -> None:
    nb = json.loads((ROOT / "notebooks" / "apps" / "management_dashboard.ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code)
    assert "warm_up()" in "".join(code[0]["source"])
    assert "management_dashboard_app(lang=lang)" in "".join(code[-1]["source"])
    for cell in code:
        assert cell.get("outputs") == [] and cell.get("execution_count") is None
        tree = ast.parse("".join(cell["source"]))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda)]


def test_segment_explorer_deep_link_preselects_org_and_month(analysis_bank: Any) -> None:
    from cimlib.apps.segment_explorer import SegmentApp, requested_view

    assert requested_view({"QUERY_STRING": "org=101002&as_of=2026-05"}) == {
        "org": "101002",
        "as_of": "2026-05",
    }
    assert requested_view({"QUERY_STRING": "org=1%27%3B--&as_of=May"}) == {}
    mgr = principal(analysis_bank, "county_mgr_101")
    months = SegmentApp(mgr, home=analysis_bank.home, lang="en").as_of.options
    month = str(months[-3])[:7]
    app = SegmentApp(mgr, home=analysis_bank.home, lang="en", org="101002", as_of=month)
    assert app.org_filter == ("branch", "101002") and str(app.as_of.value)[:7] == month
    assert app.frame is not None and app.frame.attrs["filters"] == {"branch": ["101002"]}
    assert app.org_box.layout.display == "flex" and "101002" in app.org_label.value
    drilled = app.drill()
    assert drilled is not None and set(drilled["home_org_code"]) <= {"101002"}
    # an org of another county is ignored and never shown; the month still applies
    other = SegmentApp(mgr, home=analysis_bank.home, lang="en", org="102001", as_of=month)
    assert other.org_filter is None and other.org_box.layout.display == "none"
    assert "102001" not in all_html(other.widget) and str(other.as_of.value)[:7] == month
    # the same through the app's entry point, from Voila's query string
    from cimlib.apps.segment_explorer import segment_explorer_app

    env = {
        SECRET_ENV: SECRET,
        TOKEN_ENV: sign_identity("county_mgr_101", SECRET, now=time.time()),
        "QUERY_STRING": f"org=101002&as_of={month}",
        "SCRIPT_NAME": "/voila/render/segment_explorer.ipynb",
    }
    linked = all_html(segment_explorer_app(lang="en", home=analysis_bank.home, environ=env))
    assert "(101002)" in linked and "Customers" in linked
    # without a link: nothing pre-selected, no pivot until asked (as before)
    plain = SegmentApp(mgr, home=analysis_bank.home, lang="en")
    assert plain.org_filter is None and plain.frame is None and plain.as_of.value == months[-1]
