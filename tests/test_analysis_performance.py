"""Staff and branch performance (cimlib.analysis._performance): golden figures recomputed independently on
the analysis bank, the managers + unassigned = branch identity, league-table ranks, scope and charts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pandas as pd
import pytest

from cimlib.access import NotFoundOrNotPermitted, NotPermitted, principal_for, read_audit
from cimlib.analysis import _performance as P
from cimlib.analysis import _performance_charts as C
from cimlib.customer import _data as D

COUNTY, BRANCH = "101000", "101001"
CENT = 0.01


@pytest.fixture(scope="module")
def home(analysis_bank):
    return analysis_bank.home


@pytest.fixture(scope="module")
def who(home):
    return {u: principal_for(u, home) for u in ("prov_analyst", "county_mgr_101", "branch_mgr_101001")}


@pytest.fixture(scope="module")
def snap(home):
    return D.snapshot(home)


def _q(snap, sql: str, params=()) -> pd.DataFrame:
    cols, rows = snap.query(sql, list(params))
    return pd.DataFrame(rows, columns=cols)


@pytest.fixture(scope="module")
def months(snap) -> list[dt.date]:
    return sorted(_q(snap, "SELECT DISTINCT as_of_date FROM mart_customer_month")["as_of_date"])


# ------------------------------------------------------------------------------------ golden and identity
def _golden_managers(snap, day: dt.date) -> pd.DataFrame:
    """Σ days / month days x deposit ADB per manager over the county's customers, in plain pandas."""
    cust = _q(snap, "SELECT m.customer_id, CAST(m.deposit_adb AS DOUBLE) AS adb, "
                    "CAST(m.loan_balance AS DOUBLE) AS loan FROM mart_customer_month m "
                    "JOIN dim_customer d USING (customer_id) WHERE m.as_of_date = ? AND d.county_code = ?",
              [day, COUNTY])  # fmt: skip
    sh = _q(
        snap, "SELECT customer_id, staff_no, days FROM mart_manager_share_month WHERE as_of_date = ?", [day]
    )
    j = cust.merge(sh, on="customer_id")
    j["w"] = j["days"] / day.day
    j["adb_w"], j["loan_w"] = j["w"] * j["adb"], j["w"] * j["loan"]
    return j.groupby("staff_no").agg(customers=("w", "sum"), deposit_adb=("adb_w", "sum"),
                                     loan_balance=("loan_w", "sum"), touched=("w", "size"))  # fmt: skip


def test_manager_figures_match_an_independent_computation(home, who, snap, months):
    for day in (months[-1], months[-4]):
        got = P.manager_performance(who["county_mgr_101"], day, home=home)
        staff = got[(got["member_type"] == "STAFF") & (got["customers_touched"] > 0)].set_index("staff_no")
        gold = _golden_managers(snap, day)
        assert len(gold) > 10 and set(staff.index) == set(gold.index)
        for c in ("customers", "deposit_adb", "loan_balance"):
            assert (staff[c] - gold[c].reindex(staff.index)).abs().max() < CENT, c
        assert (staff["customers_touched"] == gold["touched"].reindex(staff.index)).all()
        # the mart's share is days / month days rounded down to 6 decimals
        sh = _q(snap, "SELECT staff_no, sum(CAST(share AS DOUBLE)) AS s FROM mart_manager_share_month "
                      "WHERE as_of_date = ? GROUP BY 1", [day]).set_index("staff_no")["s"]  # fmt: skip
        assert (staff["customers"] - sh.reindex(staff.index)).abs().max() < 1e-4
        assert got.attrs["as_of"] == day.isoformat() and got.attrs["edition"] == "county"


def test_managers_plus_unassigned_add_up_to_each_branch(home, who, snap, months):
    measures = ["customers", "headcount", "deposit_adb", "deposit_balance", "loan_adb", "loan_balance",
                "npl_balance", "contribution", "quality_customers"]  # fmt: skip
    for day in (months[-1], months[0]):
        parts = P.manager_performance(who["county_mgr_101"], day, home=home, by_branch=True)
        assert {"STAFF", "UNASSIGNED"} <= set(parts["member_type"])
        summed = parts.groupby("org_code")[measures].sum()
        branches = P.branch_performance(who["county_mgr_101"], day, home=home).set_index("org_code")
        gold = _q(snap, "SELECT d.home_org_code AS org_code, count(*) AS customers, "
                        "sum(CAST(m.deposit_adb AS DOUBLE)) AS deposit_adb, "
                        "sum(CAST(m.loan_balance AS DOUBLE)) AS loan_balance, "
                        "sum(CAST(m.npl_balance AS DOUBLE)) AS npl_balance "
                        "FROM mart_customer_month m JOIN dim_customer d USING (customer_id) "
                        "WHERE m.as_of_date = ? AND d.county_code = ? GROUP BY 1", [day, COUNTY]
                  ).set_index("org_code")  # fmt: skip
        assert set(branches.index) >= set(gold.index) and len(gold) >= 8
        for b in gold.index:  # every branch, every measure: managers + unassigned == branch
            for c in measures:  # each customer has one main holder: headcounts add up to the customers
                bc = "customers" if c == "headcount" else c
                assert abs(summed.loc[b, c] - branches.loc[b, bc]) < CENT, (day, b, c)
            for c in ("customers", "deposit_adb", "loan_balance", "npl_balance"):
                assert abs(branches.loc[b, c] - gold.loc[b, c]) < CENT, (day, b, c)
        # unassigned rows exist where the branch has customers with unmanaged days
        assert (parts.loc[parts["member_type"] == "UNASSIGNED", "customers"] > 0).all()


def test_contribution_and_quality_come_from_the_value_frame(home, who, months):
    from cimlib.value import customer_value

    day = months[-1]
    v = customer_value(who["county_mgr_101"], day, home=home)
    b = P.branch_performance(who["county_mgr_101"], day, home=home).set_index("org_code")
    gold = v.groupby("home_org_code").agg(contribution=("contribution", "sum"), q=("is_quality", "sum"))
    for o in gold.index:
        assert abs(b.loc[o, "contribution"] - gold.loc[o, "contribution"]) < CENT
        assert abs(b.loc[o, "quality_customers"] - gold.loc[o, "q"]) < 1e-9
        assert b.loc[o, "quality_share"] == pytest.approx(gold.loc[o, "q"] / b.loc[o, "customers"])


def test_tellers_branch_counter_work_and_cross_bank(home, who, snap, months):
    day = months[-1]
    t = P.teller_performance(who["county_mgr_101"], day, home=home).set_index("staff_no")
    gold = _q(snap, "SELECT c.teller_no, sum(c.txn_count) AS n, "
                    "sum(c.txn_count) FILTER (WHERE c.counterparty = 'OTHER') AS other "
                    "FROM mart_channel_month c JOIN core_staff s ON s.staff_no = c.teller_no "
                    "WHERE c.as_of_date = ? AND c.channel = 'COUNTER' AND s.county_code = ? GROUP BY 1",
              [day, COUNTY]).set_index("teller_no")  # fmt: skip
    assert set(t.index) == set(gold.index) and len(t) > 10
    assert (t["counter_txn_count"] == gold["n"].reindex(t.index)).all()
    assert (t["other_bank_txn_count"] == gold["other"].reindex(t.index).fillna(0)).all()
    assert set(t["role"]) == {"TELLER"} and all(o.startswith("101") for o in t["org_code"])
    # a branch's counter work = its tellers' (every counter transaction of the bank carries a teller)
    b = P.branch_performance(who["county_mgr_101"], day, home=home).set_index("org_code")
    by_b = t.groupby("org_code")[["counter_txn_count", "other_bank_txn_count"]].sum()
    for o in by_b.index:
        assert b.loc[o, "counter_txn_count"] == by_b.loc[o, "counter_txn_count"]
        assert b.loc[o, "other_bank_txn_count"] == by_b.loc[o, "other_bank_txn_count"]
    # cross-bank by type adds up to the branch's cross-bank total
    x = P.cross_bank_business(who["county_mgr_101"], day, home=home)
    xs = x.groupby("member")["other_bank_txn_count"].sum()
    assert (xs == b.loc[xs.index, "other_bank_txn_count"]).all() and xs.sum() > 0
    by_type = P.teller_performance(who["county_mgr_101"], day, home=home, by_type=True)
    assert by_type.groupby("staff_no")["counter_txn_count"].sum().equals(t["counter_txn_count"].sort_index())


def test_channel_mix_shares_and_totals(home, who, snap, months):
    day = months[-1]
    mix = P.channel_mix(who["county_mgr_101"], day, home=home)
    shares = mix.groupby("member")["txn_share"].sum()
    assert ((shares - 1).abs() < 1e-9).all() and len(shares) >= 8
    gold = _q(snap, "SELECT org_code, channel, sum(txn_count) AS n FROM mart_channel_month "
                    "WHERE as_of_date = ? AND channel <> 'SYSTEM' AND org_code LIKE '101%' GROUP BY 1, 2",
              [day]).set_index(["org_code", "channel"])["n"]  # fmt: skip
    got = mix.set_index(["org_code", "channel"])["txn_count"]
    assert (got.reindex(gold.index) == gold).all()
    # managers' mix: time-weighted counts; managers + unassigned = the county's customers' counter count
    mm = P.channel_mix(who["county_mgr_101"], day, home=home, level="manager")
    counter = _q(snap, "SELECT sum(m.txn_count_counter) AS n FROM mart_customer_month m "
                       "JOIN dim_customer d USING (customer_id) WHERE m.as_of_date = ? AND d.county_code = ?",
                 [day, COUNTY])["n"].iloc[0]  # fmt: skip
    assert abs(mm.loc[mm["channel"] == "COUNTER", "txn_count"].sum() - float(counter)) < 1e-6


# ------------------------------------------------------------------------------------------------ league
def test_rank_peers_on_a_hand_built_frame():
    d = dt.date(2026, 10, 31)
    df = pd.DataFrame({
        "as_of_date": [d] * 6, "peer_group": ["A"] * 4 + ["B"] * 2,
        "deposit_adb": [10.0, 30.0, 20.0, 30.0, 5.0, 1.0], "npl_ratio": [0.1, 0.0, 0.3, 0.2, 0.5, 0.0],
        "customers": [9, 9, 9, 2, 9, 9],
    })  # fmt: skip
    r = P.rank_peers(df, "deposit_adb", min_customers=5)
    assert r["ranked"].tolist() == [True, True, True, False, True, True]
    assert r["rank"].tolist()[:3] == [3.0, 1.0, 2.0] and math.isnan(r["rank"].iloc[3])
    assert r["peer_size"].tolist()[:3] == [3.0] * 3 and r["peer_median"].iloc[0] == 20.0
    assert r["percentile"].tolist()[:3] == pytest.approx([1 / 3, 1.0, 2 / 3])
    sd = pd.Series([10.0, 30.0, 20.0]).std(ddof=0)
    assert r["zscore"].iloc[1] == pytest.approx((30 - 20) / sd)
    assert r["rank"].tolist()[4:] == [1.0, 2.0]
    n = P.rank_peers(df, "npl_ratio", min_customers=None)  # lower is better; ties share the best rank
    assert n["rank"].tolist() == [2.0, 1.0, 4.0, 3.0, 2.0, 1.0]


def test_league_table_on_the_bank(home, who, months):
    lt = P.league_table(who["county_mgr_101"], months[-1], home=home, measure="contribution", trend_months=4)
    k = lt.attrs["min_customers_ranked"]
    assert k == 5 and set(lt["county_code"]) == {COUNTY}
    assert (lt["ranked"] == (lt["count"] >= k)).all() and lt["ranked"].sum() >= 5
    for _, g in lt[lt["ranked"]].groupby("peer_group"):
        g = g.sort_values("rank")
        assert g["rank"].iloc[0] == 1 and g["value"].is_monotonic_decreasing
        assert g["peer_median"].iloc[0] == pytest.approx(g["value"].median())
        assert abs(g["zscore"].mean()) < 1e-9 and g["percentile"].max() == 1.0
    assert lt.loc[~lt["ranked"], "rank"].isna().all()
    tr = P.league_trend(who["county_mgr_101"], months[-1], home=home, measure="contribution", months=4)
    assert sorted(tr["month"].unique()) == [m.strftime("%Y-%m") for m in months[-4:]]
    first = tr[tr["ranked"] & (tr["as_of_date"] == months[-4])].set_index("member")["rank"]
    cur = lt[lt["ranked"]].set_index("member")
    both = cur.index.intersection(first.index)
    assert len(both) and (cur.loc[both, "rank_change"] == first[both] - cur.loc[both, "rank"]).all()
    b = P.league_table(who["county_mgr_101"], home=home, member="branch", measure="npl_ratio")
    g = b[b["ranked"]].sort_values("rank")
    assert g["value"].is_monotonic_increasing  # NPL: lower is better
    with pytest.raises(ValueError, match="cannot rank"):
        P.league_table(who["county_mgr_101"], home=home, member="teller", measure="contribution")


# ------------------------------------------------------------------------------------------------- scope
def test_scope_of_each_role(home, who, months):
    cm, bm = who["county_mgr_101"], who["branch_mgr_101001"]
    m = P.manager_performance(cm, home=home)
    assert set(m["county_code"].dropna()) == {COUNTY}
    t = P.teller_performance(cm, home=home)
    assert all(o.startswith("101") for o in t["org_code"])
    b = P.manager_performance(bm, home=home, by_branch=True)
    assert set(b["org_code"]) == {BRANCH}
    assert set(P.branch_performance(bm, home=home)["org_code"]) == {BRANCH}
    with pytest.raises(NotFoundOrNotPermitted):
        P.manager_performance(cm, home=home, org="102000")
    # a customer-manager role: its own row only, no league tables, no org-level figures
    staff = m.loc[(m["member_type"] == "STAFF") & (m["customers_touched"] > 0), "staff_no"].iloc[0]
    own = dataclasses.replace(principal_for("cust_mgr_e1000005", home), staff_no=staff)
    mine = P.manager_performance(own, home=home)
    assert set(mine["staff_no"]) == {staff} and (mine["member_type"] == "STAFF").all()
    for f in (P.league_table, P.branch_performance, P.teller_performance, P.channel_mix):
        with pytest.raises(NotPermitted):
            f(own, home=home)
    with pytest.raises(NotFoundOrNotPermitted):
        P.performance_customers(own, BRANCH, home=home)


def test_provincial_analyst_aggregates_only(home, who):
    pa = who["prov_analyst"]
    m = P.manager_performance(pa, home=home)
    assert m.attrs["edition"] == "provincial" and m["county_code"].nunique() == 10
    staff = m[m["member_type"] == "STAFF"]
    assert staff["staff_name"].dropna().str.contains(r"\*").all()
    small = m["customers_touched"].isna()  # blanked rows lose their counts
    assert m["suppressed"].any() and m.loc[m["suppressed"], "deposit_adb"].isna().all() and small.any()
    shown = m.loc[~m["suppressed"], "customers_touched"]
    assert ((shown >= 5) | (shown == 0)).all()  # zero rows: active managers holding nobody
    lt = P.league_table(pa, home=home)
    assert not lt.loc[lt["suppressed"], "ranked"].any()
    with pytest.raises(NotPermitted):
        P.performance_customers(pa, staff["staff_no"].iloc[0], home=home)
    aud = read_audit(home, principal_for("auditor", home), limit=200)
    mine = aud[(aud["action"] == "analysis_drill_performance") & (aud["user_id"] == "prov_analyst")]
    assert (mine["outcome"] == "refused").any()


def test_drill_adds_up_to_the_figure(home, who):
    cm = who["county_mgr_101"]
    m = P.manager_performance(cm, home=home, by_branch=True)
    row = m[m["member_type"] == "STAFF"].sort_values("customers_touched").iloc[-1]
    d = P.performance_customers(cm, row["staff_no"], "deposit_adb", home=home)
    assert len(d) == row["customers_touched"] and {"share", "weight", "days", "link"} <= set(d.columns)
    assert abs(d["attributed"].sum() - row["deposit_adb"]) < CENT
    assert (d["share"] <= d["weight"] + 1e-12).all() and (d["weight"] - d["share"] < 1e-6).all()
    br = P.branch_performance(cm, home=home).set_index("org_code").loc[BRANCH]
    db = P.performance_customers(cm, BRANCH, "contribution", home=home)
    assert abs(db["attributed"].sum() - br["contribution"]) < CENT and len(db) == br["customers"]
    un = m[(m["member_type"] == "UNASSIGNED") & (m["org_code"] == BRANCH)].iloc[0]
    du = P.performance_customers(cm, "UNASSIGNED", "loan_balance", home=home, org=BRANCH)
    assert abs(du["attributed"].sum() - un["loan_balance"]) < CENT and set(du["org_code"]) == {BRANCH}
    aud = read_audit(home, principal_for("auditor", home), limit=50)
    ok = aud[(aud["action"] == "analysis_drill_performance") & (aud["outcome"] == "ok")]
    assert len(ok) >= 3


# ------------------------------------------------------------------------------------------------ charts
def test_charts_data_and_encodings(home, who):
    cm = who["county_mgr_101"]
    lt = P.league_table(cm, home=home, lang="zh_CN")
    spec = C.league_table_chart(lt, "zh_CN").to_dict()
    bars, rule = spec["layer"][0], spec["layer"][1]
    assert bars["mark"]["type"] == "bar" and bars["encoding"]["x"]["field"] == "value"
    assert "万元" in bars["encoding"]["x"]["title"] and rule["mark"]["type"] == "rule"
    data = spec["datasets"]
    pg = lt["peer_group"].iloc[0]
    med = lt.loc[lt["peer_group"] == pg, "peer_median"].iloc[0] / 10000
    assert any(r.get("peer_median") == pytest.approx(med, abs=0.01) for v in data.values() for r in v)
    tr = P.league_trend(cm, home=home, lang="en", member="branch", months=4)
    t = C.league_trend_chart(tr, "en").to_dict()
    enc = t["layer"][0]["encoding"]
    assert enc["y"]["field"] == "rank" and enc["y"]["scale"]["reverse"] is True
    mp = P.manager_performance(cm, home=home, lang="en")
    s = C.manager_performance_chart(mp, "en").to_dict()
    assert s["encoding"]["x"]["field"] == "customers" and s["encoding"]["y"]["field"] == "contribution"
    mix = P.channel_mix(cm, home=home, lang="zh_CN")
    c = C.channel_mix_chart(mix, "zh_CN").to_dict()
    assert c["encoding"]["x"]["stack"] == "normalize" and "柜面" in c["encoding"]["color"]["scale"]["domain"]
