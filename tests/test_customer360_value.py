"""The value section of the 360 view: contribution by product, tiers, quality, RFM and churn, per customer;
scope and audit unchanged; the app's value tab."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, Bank

from cimlib.access import NotFoundOrNotPermitted, Principal, principal_for, read_audit, warehouse
from cimlib.config import Home
from cimlib.customer import customer_360, precompute_value
from cimlib.customer._value import COMPONENTS
from cimlib.value import contribution_by_product, customer_value, load_value_params


def _home(warehouse_dir: Path, root: Path) -> Home:
    """A scratch home on a bank's warehouse, with a head-office user who sees every org."""
    (root / "data").mkdir(parents=True)
    os.symlink(warehouse_dir, root / "data" / "warehouse")
    shutil.copytree(ROOT / "parameters", root / "parameters")
    policy = yaml.safe_load((ROOT / "parameters" / "access.yaml").read_text(encoding="utf-8"))
    policy["roles"]["head_office"] = {"scope": "all", "detail": True, "unmasked_classes": ["C1"]}
    policy["users"].append({"user_id": "ho", "display_name": "Head office", "role": "head_office"})
    (root / "parameters" / "access.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True), "utf-8")
    return Home(root=root, parameters=root / "parameters")


@pytest.fixture(scope="module")
def home(bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> Home:
    return _home(bank.home / "data" / "warehouse", tmp_path_factory.mktemp("v360"))


def q(home: Home, sql: str, params: list | None = None) -> list[tuple]:
    return warehouse(home).snapshot().query(sql, params or [])[1]


def _sample(home: Home, n: int = 12) -> list[str]:
    """Customers of county 101000 with loans, wealth, deposits only and corporates (a mix)."""
    last = q(home, "SELECT max(as_of_date) FROM mart_customer_month")[0][0]
    rows = q(
        home,
        "SELECT m.customer_id FROM mart_customer_month m JOIN dim_customer d USING (customer_id) "
        "WHERE m.as_of_date = ? AND d.county_code = '101000' ORDER BY (m.loan_balance > 0) DESC, "
        "(m.wealth_aum > 0) DESC, m.customer_type, hash(m.customer_id) LIMIT 400",
        [last],
    )
    ids = [r[0] for r in rows]
    return ids[:4] + ids[150:154] + ids[-4:]


def test_value_section_matches_contribution_by_product_and_the_value_frame(home: Home) -> None:
    me = principal_for("county_mgr_101", home)
    frame = customer_value(me, home=home, cache=False).set_index("customer_id")
    params = load_value_params(home)
    types = set()
    for cid in _sample(home):
        v = customer_360(me, cid, home=home)
        want = contribution_by_product(me, cid, home=home)
        assert len(v.contribution_by_product) == len(want), cid
        for col in COMPONENTS:
            assert round(float(want[col].sum()), 2) == round(v.value[col], 2), (cid, col)
            assert round(float(v.contribution_by_product[col].sum()), 2) == round(v.value[col], 2), (cid, col)
        assert v.contribution_trend["month"].iloc[-1] == f"{v.as_of:%Y-%m}"
        assert v.contribution_trend["contribution"].iloc[-1] == v.value["contribution"]
        row = frame.loc[cid]  # tiers and quality from the customer's own figures = the bank-wide frame's
        assert v.value["aum_tier"]["id"] == row["aum_tier"], cid
        assert v.value["contribution_tier"]["id"] == row["contribution_tier"], cid
        assert v.value["is_quality"] == bool(row["is_quality"]), cid
        want_rule = row["quality_rule"] if isinstance(row["quality_rule"], str) else None
        assert (v.value["quality_rule"] or {}).get("id") == want_rule, cid
        assert round(v.value["aum_basis"], 2) == round(float(row["aum_adb"]), 2)
        # and the tier is the one the edges of value.yaml give
        edges = params.tiers.aum.edges
        rank = sum(1 for e in edges if v.value["aum_basis"] >= e)
        assert v.value["aum_tier"]["rank"] == rank
        cedges = params.tiers.contribution.edges(v.customer_type)
        assert v.value["contribution_tier"]["rank"] == sum(1 for e in cedges if v.value["contribution"] >= e)
        types.add(v.customer_type)
        json.dumps(v.to_dict(), ensure_ascii=False)
    assert types == {"I", "C"}


def test_trend_is_the_same_with_and_without_the_value_cache(home: Home) -> None:
    me = principal_for("county_mgr_101", home)
    cid = _sample(home)[0]
    months = q(home, "SELECT DISTINCT as_of_date FROM mart_customer_month ORDER BY 1")
    before = customer_360(me, cid, home=home)
    for (d,) in months:
        precompute_value(home, d)
    after = customer_360(me, cid, home=home)
    pd.testing.assert_frame_equal(before.contribution_trend, after.contribution_trend)
    assert after.value["rfm"] is not None and after.value["potential"] is not None
    assert after.value["rfm"]["segment"] in {s.id for s in load_value_params(home).rfm.segments}


def test_one_audit_record_per_view_and_scope_still_holds(home: Home) -> None:
    me = principal_for("county_mgr_101", home)
    other = principal_for("county_mgr_102", home)
    cid = _sample(home)[1]
    auditor = principal_for("auditor", home)

    def views() -> pd.DataFrame:
        recs = read_audit(home, auditor, limit=100000)
        return recs[recs["target"] == cid]

    n0 = len(views())
    customer_360(me, cid, home=home)
    recs = views()
    assert len(recs) == n0 + 1 and list(recs["action"])[-1] == "view_360"  # one record, the view's
    with pytest.raises(NotFoundOrNotPermitted):
        customer_360(other, cid, home=home)


# ------------------------------------------------------------------------------------------------ churn
@pytest.fixture(scope="module")
def churn_home(churn_bank: Bank, churn_scored: dict, tmp_path_factory: pytest.TempPathFactory) -> Home:
    return _home(churn_bank.home / "data" / "warehouse", tmp_path_factory.mktemp("v360_churn"))


def test_churn_score_and_reasons_come_from_the_scores_file(churn_home: Home, churn_scored: dict) -> None:
    ho = principal_for("ho", churn_home)
    scores = pd.read_parquet(churn_scored["path"])
    with_reasons = scores[scores["reasons_en"].notna()].sort_values("customer_id")
    assert len(with_reasons)
    row = with_reasons.iloc[0]
    v = customer_360(ho, row["customer_id"], home=churn_home)
    churn = v.value["churn"]
    assert churn is not None and churn["risk_decile"] == int(row["risk_decile"])
    assert churn["churn_score"] == pytest.approx(float(row["churn_score"]))
    assert "; ".join(churn["reasons_en"]) == row["reasons_en"]
    assert "；".join(churn["reasons_zh_CN"]) == row["reasons_zh_CN"]  # one reason per item, in Chinese too
    # an earlier month has no scores: no churn part, and no error
    first = q(churn_home, "SELECT min(as_of_date) FROM mart_customer_month")[0][0]
    assert customer_360(ho, row["customer_id"], as_of=first, home=churn_home).value["churn"] is None


def test_no_churn_part_without_scores(home: Home) -> None:
    me = principal_for("county_mgr_101", home)
    assert customer_360(me, _sample(home)[0], home=home).value["churn"] is None


# -------------------------------------------------------------------------------------------------- app
def _principal(home: Home, user: str) -> Principal:
    return principal_for(user, home)


def test_app_renders_the_value_tab(churn_home: Home, churn_scored: dict, tmp_path: Path) -> None:
    from cimlib import charts
    from cimlib.apps import CustomerApp
    from cimlib.apps.customer_360 import VALUE_TAB, contribution_steps, contribution_waterfall, value_text

    scores = pd.read_parquet(churn_scored["path"])
    cid = scores[scores["reasons_en"].notna()].sort_values("customer_id")["customer_id"].iloc[0]
    app = CustomerApp(_principal(churn_home, "ho"), home=churn_home, lang="zh_CN")
    v = app.open(cid)
    assert v is not None
    titles = list(app.tabs.titles)
    assert value_text("tab", "zh_CN") in titles
    i = titles.index(value_text("tab", "zh_CN"))
    assert app._value_page == i
    page = app.tabs.children[i]
    assert "cim-pending" in page.value and "<svg" not in page.value  # not rendered until shown
    app.tabs.selected_index = i
    page = app.tabs.children[i]
    assert page.value.count("<svg") == 1 and "cim-pending" not in page.value
    assert "cim-badge" in page.value and v.value["churn"]["reasons_zh_CN"][0] in page.value
    for code in v.contribution_by_product["product_code"].dropna():
        assert code in page.value
    app.set_language("en")
    assert value_text("tab", "en") in app.tabs.titles
    assert v.value["churn"]["reasons_en"][0].replace("'", "&#x27;") in app.tabs.children[i].value
    # the waterfall: income up, costs down, ending at the contribution
    steps = contribution_steps(v.value, "en")
    assert steps["end"].iloc[-2] == pytest.approx(v.value["contribution"])
    assert steps["end"].iloc[-1] == pytest.approx(v.value["contribution"])
    assert steps["kind"].iloc[-1] == "total"
    spec = contribution_waterfall(v.value, "zh_CN").to_dict()
    layer = spec["layer"][0]
    assert layer["encoding"]["y"]["field"] == "start" and layer["encoding"]["y2"]["field"] == "end"
    png = tmp_path / "waterfall.png"
    png.write_bytes(charts.to_png(contribution_waterfall(v.value, "zh_CN")))
    assert png.stat().st_size > 5000
    assert VALUE_TAB == "value360.tab"
