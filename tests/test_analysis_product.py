"""Product analysis (cimlib.analysis._product): identities against the marts, golden numbers recomputed
directly from the fixture warehouse, the lifecycle stage rule, cross-holding on a hand-built frame, scope,
suppression, the audited drill and the charts' data and encodings."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from cimlib.access import NotFoundOrNotPermitted, NotPermitted, principal_for, read_audit
from cimlib.analysis import _product as P
from cimlib.analysis import _product_charts as C
from cimlib.analysis import load_provincial_params
from cimlib.analysis._params import ProductParams
from cimlib.customer import _data as D

COUNTY = "101000"


@pytest.fixture(scope="module")
def home(analysis_bank):
    return analysis_bank.home


@pytest.fixture(scope="module")
def who(home):
    names = ("prov_analyst", "county_mgr_101", "branch_mgr_101001", "cust_mgr_e1000005", "auditor")
    return {n: principal_for(n, home) for n in names}


@pytest.fixture(scope="module")
def sql(home):
    snap = D.snapshot(home)

    def run(q: str, params: dict | None = None) -> pd.DataFrame:
        with snap.all_cores() as con:
            return con.sql(q, params=params or {}).df()

    return run


@pytest.fixture(scope="module")
def day(home):
    return D.as_of_dates(D.snapshot(home))[-1]


@pytest.fixture(scope="module")
def structure(who, home):
    return P.product_structure(who["county_mgr_101"], home=home)


# ---------------------------------------------------------------------------------------------- identities
def test_category_balances_tie_to_the_customer_mart(structure, sql, day):
    m = sql(
        "SELECT sum(m.deposit_balance) dep, sum(m.loan_balance) loan, sum(m.wealth_aum) wealth, "
        "sum(m.credit_card_balance) card FROM mart_customer_month m JOIN dim_customer d USING (customer_id) "
        "WHERE m.as_of_date = $d AND d.county_code = $c",
        {"d": day, "c": COUNTY},
    ).iloc[0]
    by_cat = structure.groupby("category")["balance"].sum()
    assert by_cat["DEPOSIT"] == pytest.approx(float(m["dep"]), abs=0.01)
    assert by_cat["LOAN"] == pytest.approx(float(m["loan"]), abs=0.01)  # written-off loans excluded
    assert by_cat["WEALTH"] == pytest.approx(float(m["wealth"]), abs=0.01)
    assert by_cat["CARD"] == pytest.approx(float(m["card"]), abs=0.01)
    assert by_cat["DEPOSIT"] > 0 and by_cat["LOAN"] > 0
    # comparisons read the same way: last month's deposits are last month's mart deposits
    prev = sql(
        "SELECT sum(m.deposit_balance) FROM mart_customer_month m JOIN dim_customer d USING (customer_id) "
        "WHERE m.as_of_date = $d AND d.county_code = $c",
        {"d": P._months_back(day, 1), "c": COUNTY},
    ).iloc[0, 0]
    dep = structure[structure["category"] == "DEPOSIT"]
    assert dep["balance_prev_month"].sum() == pytest.approx(float(prev), abs=0.01)
    assert structure.attrs["edition"] == "county" and structure.attrs["as_of"] == day.isoformat()


def test_shares_add_up_within_each_category(structure):
    for _, g in structure.groupby("category"):
        for col in ("balance_share", "account_share", "holder_share"):
            if g[col].notna().any():
                assert g[col].sum() == pytest.approx(1.0)
    assert (structure["penetration"].dropna() <= 1.0).all()
    # penetration: holders / customers holding any product of the category
    dp = structure[structure["product_code"] == "DP1001"].iloc[0]
    assert dp["penetration"] == pytest.approx(dp["holders"] / dp["category_holders"])


def test_category_holders_recomputed_from_the_account_facts(structure, sql, day):
    got = structure.groupby("category")["category_holders"].first()
    want = sql(
        f"SELECT f.category, count(DISTINCT f.customer_id) n FROM ({P.facts_sql()}) f "
        "JOIN dim_customer d ON d.customer_id = f.customer_id AND d.county_code = $c WHERE f.held GROUP BY 1",
        {"dates": [day], "c": COUNTY},
    ).set_index("category")["n"]
    for c in P.CATEGORIES:
        assert got[c] == want.get(c, 0), c


def test_product_figures_recomputed_from_the_account_facts(structure, sql, day):
    got = structure.set_index("product_code")
    d = sql(
        "SELECT x.product_code, count(*) FILTER (WHERE x.status <> 'CLOSED') n, "
        "count(DISTINCT x.customer_id) FILTER (WHERE x.status <> 'CLOSED') h, sum(x.balance) b "
        "FROM core_deposit_month x JOIN dim_customer d USING (customer_id) "
        "WHERE x.as_of_date = $d AND d.county_code = $c GROUP BY 1",
        {"d": day, "c": COUNTY},
    ).set_index("product_code")
    for code, r in d.iterrows():
        assert got.at[code, "active_accounts"] == r["n"]
        assert got.at[code, "holders"] == r["h"]
        assert got.at[code, "balance"] == pytest.approx(float(r["b"]), abs=0.01)
    # intermediate business has no product code: its biz_type is the product's subtype
    ib = sql(
        "SELECT p.product_code, coalesce(sum(x.amount) FILTER (WHERE x.status = 'OPEN'), 0) b "
        "FROM core_corp_business_month x JOIN dim_customer d USING (customer_id) "
        "JOIN core_product p ON p.category = 'INTERMEDIATE' AND p.subtype = x.biz_type "
        "WHERE x.as_of_date = $d AND d.county_code = $c GROUP BY 1",
        {"d": day, "c": COUNTY},
    ).set_index("product_code")["b"]
    assert len(ib) >= 2
    for code, b in ib.items():
        assert got.at[code, "balance"] == pytest.approx(float(b), abs=0.01)


def test_npl_ratio_recomputed_independently(who, home, sql, day):
    # the whole province (county 101 has no NPL at the fixture's last month); no product is thinly held
    risk = P.loan_risk(who["prov_analyst"], home=home).set_index("product_code")
    assert not risk["suppressed"].any()
    raw = sql(
        "SELECT product_code, balance, five_class, status FROM core_loan_month WHERE as_of_date = $d",
        {"d": day},
    )
    raw["balance"] = raw["balance"].astype(float)
    live = raw[raw["status"] != "WRITTEN_OFF"]
    for code, g in live.groupby("product_code"):
        npl = g.loc[g["five_class"].isin(["SUBSTANDARD", "DOUBTFUL", "LOSS"]), "balance"].sum()
        assert risk.at[code, "npl_balance"] == pytest.approx(npl, abs=0.01)
        assert risk.at[code, "loan_balance"] == pytest.approx(g["balance"].sum(), abs=0.01)
        assert risk.at[code, "npl_ratio"] == pytest.approx(npl / g["balance"].sum())
        assert risk.at[code, "loans"] == (g["status"] == "ACTIVE").sum()
    # the classes add up to the balance; the products' NPL adds up to the mart's
    classes = [f"{c.lower()}_balance" for c in P.FIVE_CLASSES]
    assert (risk[classes].sum(axis=1) - risk["loan_balance"]).abs().max() < 0.01
    mart = sql("SELECT sum(npl_balance) FROM mart_customer_month WHERE as_of_date = $d", {"d": day}).iloc[
        0, 0
    ]
    assert risk["npl_balance"].sum() == pytest.approx(float(mart), abs=0.01)
    assert risk["npl_balance"].sum() > 0, "the fixture should carry some NPL"
    prev = sql(
        "SELECT sum(balance) FILTER (WHERE five_class IN ('SUBSTANDARD', 'DOUBTFUL', 'LOSS')) / sum(balance) "
        "FROM core_loan_month WHERE as_of_date = $d AND status <> 'WRITTEN_OFF' AND product_code = 'LN2005'",
        {"d": P._months_back(day, 1)},
    ).iloc[0, 0]
    assert risk.at["LN2005", "npl_ratio_prev_month"] == pytest.approx(float(prev))
    mix = P.five_class_mix(who["prov_analyst"], home=home)
    for code, g in mix.groupby("product_code"):
        assert g["share"].sum() == pytest.approx(1.0)
        assert g.loc[g["is_npl"], "balance"].sum() == pytest.approx(risk.at[code, "npl_balance"], abs=0.01)


def test_lifecycle_flows_and_stage(who, home, structure, day):
    lc = P.product_lifecycle(who["county_mgr_101"], home=home, months=12)
    assert lc["as_of_date"].nunique() == 12 and lc["as_of_date"].max() == day
    dep = lc[lc["category"] == "DEPOSIT"].sort_values(["product_code", "as_of_date"])
    prev = dep.groupby("product_code")["active_accounts"].shift()
    ok = prev.notna()
    # deposits record their closing date: active = last month's active + new - closed, exactly
    assert (
        prev[ok] + dep["new_accounts"][ok] - dep["closed_accounts"][ok] == dep["active_accounts"][ok]
    ).all()
    assert dep["new_accounts"].sum() > 0 and dep["closed_accounts"].sum() > 0
    now = lc[lc["as_of_date"] == day].set_index("product_code")
    s = structure.set_index("product_code")
    assert (now["balance"] - s["balance"]).abs().max() < 0.01
    assert (now["active_accounts"] == s["active_accounts"]).all()
    # the stage follows the rule on the basis measure window_months back
    params = load_provincial_params(home).product
    full = lc.set_index(["product_code", "as_of_date"])
    for code, r in now.iterrows():
        basis = r["stage_basis"]
        base_day = P._months_back(day, params.window_months)
        if (code, base_day) in full.index:
            base = full.at[(code, base_day), basis]
            if base > 0:
                assert r["window_growth"] == pytest.approx(r[basis] / base - 1)
        expect = P.lifecycle_stage(None, day, r["window_growth"], params)
        assert r["stage"] == expect or (expect is None and pd.isna(r["stage"])) or r["stage"] == "LAUNCH"
    assert set(lc["stage"].dropna()) <= set(P.STAGES)
    assert lc.attrs["stages"]["DP1001"] in P.STAGES


def test_lifecycle_stage_rule():
    p = ProductParams(launch_months=12, window_months=6, growth_rate=0.10, decline_rate=-0.10,
                      min_pair_customers=10)  # fmt: skip
    d = dt.date(2026, 10, 31)
    assert P.lifecycle_stage(dt.date(2026, 1, 15), d, -0.5, p) == "LAUNCH"  # 9 months since launch
    assert P.lifecycle_stage(dt.date(2025, 10, 1), d, 0.5, p) == "GROWTH"  # 12 months: no longer launch
    assert P.lifecycle_stage(None, d, 0.10, p) == "GROWTH"
    assert P.lifecycle_stage(None, d, 0.0999, p) == "MATURE"
    assert P.lifecycle_stage(None, d, -0.10, p) == "DECLINE"
    assert P.lifecycle_stage(None, d, math.inf, p) == "GROWTH"
    assert P.lifecycle_stage(None, d, math.nan, p) is None
    assert P.months_between(dt.date(2026, 1, 15), dt.date(2026, 3, 31)) == 2


def test_income_reuses_the_ftp_contribution(who, home, sql, day):
    from cimlib.value import contribution

    county = who["county_mgr_101"]
    inc = P.product_income(county, home=home)
    ftp = contribution(county, home=home)
    ib = inc[inc["category"] == "INTERMEDIATE"]
    ib_fees = sql(
        "SELECT coalesce(sum(x.fee), 0) FROM core_corp_business_month x "
        "JOIN dim_customer d USING (customer_id) WHERE x.as_of_date = $d AND d.county_code = $c "
        "AND x.issue_date >= date_trunc('month', x.as_of_date)",
        {"d": day, "c": COUNTY},
    ).iloc[0, 0]
    assert ib["fee_income"].sum() == pytest.approx(float(ib_fees), abs=0.01) and ib_fees > 0
    # without the intermediate fees the products and the unallocated row add up to the FTP contribution
    assert inc["contribution"].sum() - ib["fee_income"].sum() == pytest.approx(
        ftp["contribution"].sum(), abs=0.05
    )
    un = inc.set_index("product_code").loc[P.UNALLOCATED]
    assert un["fee_income"] == pytest.approx(ftp["fee_income"].sum(), abs=0.01)
    dep = inc[inc["category"] == "DEPOSIT"]
    assert dep["deposit_nii"].sum() == pytest.approx(ftp["deposit_nii"].sum(), abs=0.05)
    r = inc[inc["active_accounts"] > 0].iloc[0]
    assert r["contribution_per_account"] == pytest.approx(r["contribution"] / r["active_accounts"])
    assert inc["contribution_share"].sum() == pytest.approx(1.0)


# --------------------------------------------------------------------------------------- cross-holding
def test_cross_holding_on_a_hand_built_frame():
    cat = pd.DataFrame({"product_code": ["A", "B", "C"], "label": ["a", "b", "c"],
                        "category": ["DEPOSIT", "LOAN", "CARD"]})  # fmt: skip
    # 100 customers; A held by 50, B by 20, C by 40; 15 hold A and B, 8 hold A and C, 3 hold B and C
    raw = pd.DataFrame({"product_a": ["A", "A", "B"], "product_b": ["B", "C", "C"], "customers": [15, 8, 3],
                        "holders_a": [50, 50, 20], "holders_b": [20, 40, 40]})  # fmt: skip
    pairs = P.pairs_frame(raw, 100, cat, floor=5).set_index(["product_a", "product_b"])
    assert ("B", "C") not in pairs.index  # under the floor
    assert pairs.at[("A", "B"), "lift"] == pytest.approx(0.15 / (0.5 * 0.2))
    assert pairs.at[("A", "C"), "lift"] == pytest.approx(0.08 / (0.5 * 0.4))
    assert pairs.at[("A", "B"), "confidence_ab"] == pytest.approx(15 / 50)
    nxt = P.next_product_frame(P.pairs_frame(raw, 100, cat, floor=1), cat, top=2, min_lift=0.0)
    b = nxt[nxt["product_code"] == "B"].set_index("rank")
    assert list(b["next_product"]) == ["A", "C"]  # P(A|B) = 0.75 before P(C|B) = 0.15
    assert b.at[1, "prospects"] == 5 and b.at[1, "confidence"] == pytest.approx(0.75)
    assert P.next_product_frame(P.pairs_frame(raw, 100, cat, floor=1), cat, top=3)["lift"].min() > 1.0


def test_cross_holding_on_the_bank(who, home, sql, day):
    county = who["county_mgr_101"]
    ppc = P.products_per_customer(county, home=home)
    h = sql(
        f"SELECT m.customer_id, count(DISTINCT f.product_code) k FROM mart_customer_month m "
        f"JOIN dim_customer d ON d.customer_id = m.customer_id AND d.county_code = $c "
        f"LEFT JOIN ({P.facts_sql()}) f ON f.customer_id = m.customer_id AND f.held "
        f"WHERE m.as_of_date = $d GROUP BY 1",
        {"d": day, "c": COUNTY, "dates": [day]},
    )
    expect = h["k"].value_counts()
    got = ppc.set_index("n_products")["customers"]
    assert ppc["customers"].sum() == len(h) and ppc["customer_share"].sum() == pytest.approx(1.0)
    for k, n in expect.items():
        assert got[k] == n
    pairs = P.product_pairs(county, home=home, min_customers=3)
    assert (pairs["customers"] >= 3).all() and len(pairs) > 5
    top = pairs.iloc[0]
    held = sql(
        f"SELECT DISTINCT f.customer_id, f.product_code FROM ({P.facts_sql()}) f "
        f"JOIN dim_customer d ON d.customer_id = f.customer_id AND d.county_code = $c WHERE f.held",
        {"c": COUNTY, "dates": [day]},
    )
    a = set(held.loc[held["product_code"] == top["product_a"], "customer_id"])
    b = set(held.loc[held["product_code"] == top["product_b"], "customer_id"])
    n = pairs.attrs["customers"]
    assert top["customers"] == len(a & b)
    assert top["lift"] == pytest.approx(len(a & b) / n / (len(a) / n * len(b) / n))
    nxt = P.next_product(county, home=home, min_customers=3)
    assert (nxt["rank"] <= 3).all() and (nxt["prospects"] > 0).all()
    assert ((nxt["holders"] - nxt["customers"]) == nxt["prospects"]).all()


def test_composition_by_segment(who, home, structure, sql, day):
    comp = P.product_composition(who["county_mgr_101"], home=home, by="customer_type")
    per = comp.groupby("product_code")
    held = per["holders"].sum()
    assert (held == structure.set_index("product_code")["holders"].reindex(held.index)).all()
    for _, g in per:
        if g["holders"].sum():
            assert g["holder_share"].sum() == pytest.approx(1.0)
    n = sql(
        "SELECT m.customer_type, count(*) n FROM mart_customer_month m "
        "JOIN dim_customer d USING (customer_id) WHERE m.as_of_date = $d AND d.county_code = $c GROUP BY 1",
        {"d": day, "c": COUNTY},
    ).set_index("customer_type")["n"]
    first = comp[comp["product_code"] == "DP1001"].set_index("member")
    assert first.at["I", "member_customers"] == n["I"] and first.at["C", "member_customers"] == n["C"]
    corp = comp[comp["product_code"] == "LN2005"].set_index("member")
    assert corp.at["C", "holders"] > 0 and corp.at["I", "holders"] == 0  # a corporate product
    age = P.product_composition(who["county_mgr_101"], home=home, by="age", lang="zh_CN")
    assert age.attrs["dimension"] == "age" and set(age["member"]) >= {"AGE0", "AGE5"}
    assert age["member_label"].str.contains("岁").any()


# ------------------------------------------------------------------------------------- scope and editions
def test_county_manager_sees_only_its_county(who, home, structure):
    with pytest.raises(NotFoundOrNotPermitted):
        P.product_structure(who["county_mgr_101"], home=home, org="102000")
    prov = P.product_structure(who["prov_analyst"], home=home)
    focus = P.product_structure(who["prov_analyst"], home=home, org=COUNTY)
    assert prov.attrs["edition"] == "provincial" and focus.attrs["org"] == COUNTY
    shown = ~focus["suppressed"]
    a = focus[shown].set_index("product_code")["balance"]
    b = structure.set_index("product_code").loc[a.index, "balance"]
    assert (a - b).abs().max() < 0.01
    assert prov["balance"].sum() > structure["balance"].sum()
    with pytest.raises(NotPermitted):
        P.product_structure(who["auditor"], home=home)


def test_small_groups_suppressed_for_the_provincial_analyst(who, home):
    branch = "101001"
    agg = P.product_structure(who["prov_analyst"], home=home, org=branch)
    det = P.product_structure(who["branch_mgr_101001"], home=home).set_index("product_code")
    k = who["prov_analyst"].min_cell
    small = det[(det["holders"] > 0) & (det["holders"] < k)].index
    assert len(small) > 0, "the branch should have some thinly held product"
    hid = agg.set_index("product_code")
    assert hid.loc[small, "suppressed"].all() and hid.loc[small, "balance"].isna().all()
    assert not det["balance"].isna().any()
    lc = P.product_lifecycle(who["prov_analyst"], home=home, org=COUNTY, category="WEALTH")
    hidden = lc[lc["suppressed"]]
    assert len(hidden) and hidden["balance"].isna().all() and hidden["stage"].isna().all()
    # pairs never show fewer than min_cell customers to an aggregate role
    pairs = P.product_pairs(who["prov_analyst"], home=home, org=branch, min_customers=1)
    assert pairs.attrs["min_customers"] >= k and (pairs["customers"] >= k).all()


def test_customer_manager_sees_its_own_customers(who, home, sql, day):
    cm = who["cust_mgr_e1000005"]
    s = P.product_structure(cm, home=home)
    dep = sql(
        "SELECT sum(m.deposit_balance) FROM mart_customer_month m JOIN dim_customer d USING (customer_id) "
        "WHERE m.as_of_date = $d AND d.manager_no = 'E1000005'",
        {"d": day},
    ).iloc[0, 0]
    dep = 0.0 if pd.isna(dep) else float(dep)  # a manager with no customers in this bank sees nothing
    assert s.loc[s["category"] == "DEPOSIT", "balance"].sum() == pytest.approx(dep, abs=0.01)
    assert s.attrs["edition"] == "county"
    with pytest.raises(NotFoundOrNotPermitted):
        P.product_structure(cm, home=home, org=COUNTY)


def test_drill_is_refused_for_the_provincial_edition_and_audited(who, home):
    with pytest.raises(NotPermitted):
        P.product_customers(who["prov_analyst"], "LN2005", home=home)
    county = who["county_mgr_101"]
    lst = P.product_customers(county, "LN2005", home=home, limit=5, app_url="http://x")
    risk = P.loan_risk(county, home=home).set_index("product_code")
    assert lst.attrs["total"] == risk.at["LN2005", "borrowers"] and len(lst) == min(5, lst.attrs["total"])
    assert lst["balance"].is_monotonic_decreasing and lst["link"].str.startswith("http://x/").all()
    people = P.product_customers(county, "DP1001", home=home, limit=20)
    s = P.product_structure(county, home=home).set_index("product_code")
    assert people.attrs["total"] == s.at["DP1001", "holders"]
    assert all("*" in x for x in people.loc[people["customer_type"] == "I", "id_no"])
    prospects = P.next_product_customers(county, "DP1001", "CD3002", home=home, limit=3)
    nxt = P.next_product(county, home=home, top=50, min_customers=1, min_lift=0.0)
    row = nxt[(nxt["product_code"] == "DP1001") & (nxt["next_product"] == "CD3002")].iloc[0]
    assert prospects.attrs["total"] == row["prospects"]
    aud = read_audit(home, who["auditor"], limit=50)
    acts = aud[aud["action"] == "analysis_drill_product"]
    assert {"refused", "ok"} <= set(acts["outcome"])
    with pytest.raises(ValueError):
        P.product_customers(county, "DP1001'; DROP TABLE x; --", home=home)


# ------------------------------------------------------------------------------------------------- charts
def test_charts_data_and_encodings(who, home):
    county = who["county_mgr_101"]
    lc = P.product_lifecycle(county, home=home, category="LOAN", lang="zh_CN")
    spec = C.lifecycle_chart(lc, "zh_CN").to_dict()
    assert spec["facet"]["field"] == "panel" and spec["resolve"]["scale"]["y"] == "independent"
    layer = spec["spec"]["layer"]
    assert layer[1]["encoding"]["color"]["field"] == "stage_label"
    assert layer[0]["encoding"]["x"]["field"] == "month"
    data = next(iter(spec["datasets"].values()))
    assert len(data) == len(lc) and "万元" in layer[0]["encoding"]["y"]["title"]
    top = lc.loc[lc["balance"].idxmax()]
    assert max(r["value"] for r in data) == pytest.approx(round(top["balance"] / 10000, 2))

    st = P.product_structure(county, home=home)
    sd = C.structure_chart(st).to_dict()
    rows = next(iter(sd["datasets"].values()))
    assert sd["facet"]["row"]["field"] == "category"
    dep = [r["share"] for r in rows if r["category"] == "Deposit"]
    assert sum(dep) == pytest.approx(1.0)

    risk = P.loan_risk(county, home=home)
    nd = C.npl_chart(risk).to_dict()
    bars = next(x for x in nd["layer"] if x["mark"]["type"] == "bar")
    assert bars["encoding"]["x"]["field"] == "npl_ratio"
    got = {r["product"]: r["npl_ratio"] for r in nd["datasets"][bars["data"]["name"]]}
    for r in risk.itertuples():
        if not math.isnan(r.npl_ratio):
            assert got[r.label] == pytest.approx(r.npl_ratio)

    pairs = P.product_pairs(county, home=home, min_customers=3)
    hd = C.cross_holding_chart(pairs).to_dict()
    cells = next(iter(hd["datasets"].values()))
    assert len(cells) == 2 * len(pairs) and hd["layer"][0]["encoding"]["color"]["field"] == "lift"
    assert hd["layer"][0]["encoding"]["color"]["scale"]["type"] == "log"

    ppc = P.products_per_customer(county, home=home)
    pd_ = C.products_per_customer_chart(ppc).to_dict()
    assert sum(r["customers"] for r in next(iter(pd_["datasets"].values()))) == ppc["customers"].sum()

    five = C.five_class_chart(P.five_class_mix(county, home=home, lang="zh_CN"), "zh_CN").to_dict()
    assert five["encoding"]["color"]["scale"]["domain"][0] == "正常"


def test_chinese_chart_renders_to_png(who, home):
    import vl_convert as vlc

    risk = P.loan_risk(who["county_mgr_101"], home=home, lang="zh_CN")
    png = vlc.vegalite_to_png(C.npl_chart(risk, "zh_CN").to_json(), scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
