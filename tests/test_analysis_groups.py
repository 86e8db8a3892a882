"""Customer-group analysis (cimlib.analysis._groups) on the 13-month analysis bank.

Golden numbers are recomputed independently with plain SQL or pandas on the fixture warehouse; identities
(shares add to 1, parts add to the whole), scope, suppression, the audited drill, and the charts' data and
encodings are checked too.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cimlib.access import NotFoundOrNotPermitted, NotPermitted, principal_for, read_audit
from cimlib.analysis import _groups as G
from cimlib.analysis import _groups_charts as C
from cimlib.customer import _data as D

AS_OF = "2026-06"
DAY = dt.date(2026, 6, 30)
COUNTY = "101000"
AUM_EDGES = [50000, 200000, 500000, 1000000, 3000000, 6000000]  # parameters/dimensions.yaml, dim aum


def _who(home: Path, user: str) -> Any:
    return principal_for(user, home)


def _sql(home: Path, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    snap = D.snapshot(home)
    with snap.all_cores() as con:
        return con.sql(sql, params=params or {}).to_arrow_table().to_pandas()


_COUNT = (
    "SELECT count(*) AS n FROM mart_customer_month AS m JOIN dim_customer AS d USING (customer_id) "
    "WHERE m.as_of_date = $d AND "
)


def _count(home: Path, cond: str, params: dict[str, Any]) -> int:
    return int(_sql(home, _COUNT + cond, {"d": DAY, **params})["n"].iloc[0])


def _aum_band(v: float) -> str:
    return f"A{int(np.searchsorted(AUM_EDGES, v, side='right'))}"


@pytest.fixture(scope="module")
def county_month(analysis_bank: Any) -> pd.DataFrame:
    """County 101's customer-months of AS_OF with the columns the goldens need (plain SQL)."""
    return _sql(
        analysis_bank.home,
        "SELECT m.customer_id, m.customer_type, CAST(m.aum AS DOUBLE) AS aum, "
        "CAST(m.deposit_adb AS DOUBLE) AS deposit_adb, CAST(m.inflow_amount AS DOUBLE) AS inflow, "
        "CAST(m.inflow_other_bank_amount AS DOUBLE) AS inflow_other, "
        "CAST(m.outflow_amount AS DOUBLE) AS outflow, "
        "CAST(m.customer_txn_count AS BIGINT) AS ctx, CAST(m.txn_count_mobile AS BIGINT) AS mobile, "
        "CAST(m.txn_count_counter AS BIGINT) AS counter, CAST(m.loan_balance AS DOUBLE) AS loan, "
        "CAST(m.npl_balance AS DOUBLE) AS npl, m.worst_five_class, "
        "CAST(m.n_products AS BIGINT) AS n_products "
        "FROM mart_customer_month AS m JOIN dim_customer AS d ON d.customer_id = m.customer_id "
        "WHERE m.as_of_date = $d AND d.county_code = $c",
        {"d": DAY, "c": COUNTY},
    ).assign(band=lambda f: f["aum"].map(_aum_band))


# ------------------------------------------------------------------------------------------- naming
@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ("aum", "must be 'dim:<dimension id>'"),
        ("dim:aumm", "did you mean 'dim:aum'"),
        ("dim:period", "use months="),
        ("list:event", "did you mean 'list:events'"),
        ("list:events/birthdayy", "did you mean 'birthday'"),
        ("list:../../etc/passwd", "must be 'dim:<dimension id>'"),
    ],
)
def test_grouping_names_are_validated(analysis_bank: Any, groups: str, message: str) -> None:
    with pytest.raises(G.GroupsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        G.parse_groups(groups, analysis_bank.home)


# --------------------------------------------------------------------------------------------- value
def test_value_by_aum_band_matches_plain_sql(analysis_bank: Any, county_month: pd.DataFrame) -> None:
    from cimlib.value import customer_value

    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    df = G.group_value(cm, AS_OF, groups="dim:aum", home=home).set_index("group")
    want = county_month.groupby("band").agg(customers=("customer_id", "size"), aum=("aum", "sum"),
                                            deposit_adb=("deposit_adb", "sum"))  # fmt: skip
    for band, row in want.iterrows():
        assert df.loc[band, "customers"] == row["customers"]
        assert df.loc[band, "aum"] == pytest.approx(row["aum"], abs=0.01)
        assert df.loc[band, "deposit_adb"] == pytest.approx(row["deposit_adb"], abs=0.01)
    assert df["customers"].sum() == len(county_month)
    for c in ("customer_share", "aum_adb_share", "deposit_adb_share", "contribution_share"):
        assert df[c].sum() == pytest.approx(1.0)
    # contribution from the value issue's own frame, grouped in pandas
    cv = customer_value(cm, AS_OF, home=home).merge(county_month[["customer_id", "band"]], on="customer_id")
    got = cv.groupby("band")["contribution"].sum()
    for band, v in got.items():
        assert df.loc[band, "contribution"] == pytest.approx(v, abs=0.01)
        assert df.loc[band, "contribution_per_customer"] == pytest.approx(v / want.loc[band, "customers"])
    assert not df["suppressed"].any()  # a county manager has detail: nothing is blanked
    assert (
        df.attrs["edition"] == "county" and df.attrs["org"] == COUNTY and df.attrs["as_of"] == DAY.isoformat()
    )


def test_scope_and_focus_org(analysis_bank: Any) -> None:
    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    with pytest.raises(NotFoundOrNotPermitted):
        G.group_value(cm, AS_OF, groups="dim:customer_type", org="102000", home=home)
    # a county grouping seen by a county manager has their county only
    df = G.group_value(cm, AS_OF, groups="dim:county", home=home)
    assert set(df.loc[df["customers"] > 0, "group"]) == {COUNTY}
    # the branch manager's figures are the branch's
    bm = _who(home, "branch_mgr_101001")
    b = G.group_value(bm, AS_OF, groups="dim:customer_type", home=home)
    n = _count(home, "d.home_org_code = $b", {"b": "101001"})
    assert b["customers"].sum() == n


def test_provincial_edition_suppresses_small_groups(analysis_bank: Any) -> None:
    home = analysis_bank.home
    pa_ = _who(home, "prov_analyst")
    df = G.group_value(pa_, AS_OF, groups="dim:five_class", home=home).set_index("group")
    assert df.attrs["edition"] == "provincial"
    raw = _sql(home, "SELECT coalesce(worst_five_class, 'NO_LOAN') AS g, count(*) AS n "
                     "FROM mart_customer_month WHERE as_of_date = $d GROUP BY 1", {"d": DAY})  # fmt: skip
    n = raw.set_index("g")["n"].reindex(df.index).fillna(0)
    small = (n > 0) & (n < pa_.min_cell)
    assert small.any(), "the fixture has no small five-class group: pick another grouping"
    hidden = df["suppressed"]
    assert hidden[small].all() and hidden.sum() >= max(2, int(small.sum()))  # one small cell never alone
    assert df.loc[hidden, ["customers", "aum_adb", "customer_share"]].isna().all().all()
    shown = df[~hidden]
    assert (shown["customers"] == n[~hidden]).all()
    ch = G.group_channels(pa_, AS_OF, groups="dim:five_class", home=home)
    gone = ch["group"].isin(set(df.index[hidden]))
    assert ch.loc[gone, "txn_count"].isna().all() and ch.loc[gone, "suppressed"].all()
    assert not ch.loc[~gone, "suppressed"].any()


# ------------------------------------------------------------------------------------------- behaviour
def test_activity_and_channels(analysis_bank: Any, county_month: pd.DataFrame) -> None:
    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    act = G.group_activity(cm, AS_OF, groups="dim:customer_type", home=home, dormant_months=3).set_index(
        "group"
    )
    hist = _sql(
        home,
        "SELECT m.customer_id, sum(m.customer_txn_count) AS n FROM mart_customer_month m "
        "WHERE m.as_of_date > DATE '2026-03-31' AND m.as_of_date <= $d GROUP BY 1",
        {"d": DAY},
    )
    moved = set(hist.loc[hist["n"] > 0, "customer_id"])
    for t, g in county_month.groupby("customer_type"):
        assert act.loc[t, "active"] == int((g["ctx"] > 0).sum())
        assert act.loc[t, "dormant"] == int((~g["customer_id"].isin(moved)).sum())
        assert act.loc[t, "active_share"] == pytest.approx((g["ctx"] > 0).mean())
    ch = G.group_channels(cm, AS_OF, groups="dim:customer_type", home=home)
    sums = ch.groupby("group")["share"].sum()
    assert np.allclose(sums.to_numpy(), 1.0)
    i = ch[(ch["group"] == "I") & (ch["channel"] == "MOBILE")].iloc[0]
    assert i["txn_count"] == county_month.loc[county_month["customer_type"] == "I", "mobile"].sum()
    assert i["channel_label"] and i["label"] == "Individual"


def test_rfm_by_group_matches_the_value_scores(analysis_bank: Any) -> None:
    from cimlib.value import rfm_scores

    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    df = G.group_rfm(cm, AS_OF, groups="dim:customer_type", home=home)
    s = rfm_scores(cm, AS_OF, home=home)
    want = s.groupby(["customer_type", "segment"]).size()
    got = df.set_index(["group", "segment"])["customers"]
    for k, v in want.items():
        assert got.loc[k] == v
    assert np.allclose(df.groupby("group")["share"].sum().to_numpy(), 1.0)


# ------------------------------------------------------------------------------------------- structure
def test_structure_mix_adds_up(analysis_bank: Any, county_month: pd.DataFrame) -> None:
    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    df = G.group_structure(cm, AS_OF, groups="dim:aum", home=home)
    assert set(df["facet"]) == {"customer_type", "aum_tier", "age_band", "industry"}
    tot = df.groupby(["group", "facet"])["share"].sum()
    assert np.allclose(tot.to_numpy(), 1.0)
    ct = df[df["facet"] == "customer_type"].groupby("group")["customers"].sum()
    assert ct.to_dict() == county_month.groupby("band").size().to_dict()
    # age bands cover individuals only, industries corporates only
    ind = df[df["facet"] == "age_band"].groupby("group")["customers"].sum()
    want = county_month[county_month["customer_type"] == "I"].groupby("band").size()
    assert ind.to_dict() == want.to_dict()


# ------------------------------------------------------------------------------------------- fund flow
def test_fund_flow_parts_add_up(analysis_bank: Any, county_month: pd.DataFrame) -> None:
    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    df = G.group_fund_flow(cm, AS_OF, groups="dim:customer_type", home=home).set_index("group")
    for t, g in county_month.groupby("customer_type"):
        assert df.loc[t, "inflow"] == pytest.approx(g["inflow"].sum(), abs=0.01)
        assert df.loc[t, "inflow_other_bank"] == pytest.approx(g["inflow_other"].sum(), abs=0.01)
        assert df.loc[t, "outflow"] == pytest.approx(g["outflow"].sum(), abs=0.01)
    assert np.allclose(df["inflow_own_bank"] + df["inflow_other_bank"], df["inflow"])
    assert np.allclose(df["outflow_own_bank"] + df["outflow_other_bank"], df["outflow"])
    assert (df["large_outflow_amount"] <= df["outflow"] + 0.01).all()
    assert np.allclose(df["net_flow"], df["inflow"] - df["outflow"])


# ------------------------------------------------------------------------------------------ churn, risk
def test_risk_npl_and_hard_churn(analysis_bank: Any, county_month: pd.DataFrame) -> None:
    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    df = G.group_risk(cm, AS_OF, groups="dim:customer_type", home=home).set_index("group")
    # hard churn, independently: held a product at S, and fewer than 3 of the next 3 month-ends with one
    nxt = _sql(
        home,
        "SELECT customer_id, count(*) FILTER (WHERE n_products > 0) AS held FROM mart_customer_month "
        "WHERE as_of_date > $d AND as_of_date <= DATE '2026-09-30' GROUP BY 1",
        {"d": DAY},
    )
    held = dict(zip(nxt["customer_id"], nxt["held"], strict=True))
    for t, g in county_month.groupby("customer_type"):
        elig = g[g["n_products"] > 0]
        churned = sum(held.get(c, 0) < 3 for c in elig["customer_id"])
        assert df.loc[t, "churn_eligible"] == len(elig)
        assert df.loc[t, "churned"] == churned
        loans = g[g["loan"] > 0]
        assert df.loc[t, "borrowers"] == len(loans)
        assert df.loc[t, "below_normal"] == int((loans["worst_five_class"] != "NORMAL").sum())
        want = g["npl"].sum() / g["loan"].sum() if g["loan"].sum() else math.nan
        assert df.loc[t, "npl_ratio"] == pytest.approx(want, nan_ok=True)
    assert df["scored"].sum() == 0 and df["mean_churn_score"].isna().all()
    assert df.attrs["unscored_months"] == [DAY.isoformat()] and "cim churn score" in df.attrs["note"]
    latest = G.group_risk(cm, groups="dim:customer_type", home=home)
    assert latest["hard_churn_rate"].isna().all() and latest.attrs["unlabelled_months"]


def test_risk_reads_churn_scores(analysis_bank: Any, county_month: pd.DataFrame, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    home = analysis_bank.home
    ids = county_month["customer_id"].tolist()
    rng = np.random.default_rng(3)
    score = rng.random(len(ids))
    decile = (np.arange(len(ids)) % 10 + 1).astype(np.int8)
    path = tmp_path / "scores.parquet"
    table = {
        "customer_id": ids,
        "as_of_date": pa.array([DAY] * len(ids), pa.date32()),
        "churn_score": score,
        "risk_decile": pa.array(decile, pa.int8()),
    }
    pq.write_table(pa.table(table), path)
    monkeypatch.setattr(G, "scores_path", lambda *a: path)
    df = G.group_risk(_who(home, "county_mgr_101"), AS_OF, groups="dim:customer_type", home=home)
    df = df.set_index("group")
    f = county_month.assign(score=score, decile=decile)
    for t, g in f.groupby("customer_type"):
        assert df.loc[t, "scored"] == len(g)
        assert df.loc[t, "mean_churn_score"] == pytest.approx(g["score"].mean())
        assert df.loc[t, "top_risk_share"] == pytest.approx((g["decile"] >= 8).mean())
    assert df.attrs["unscored_months"] == []


# ------------------------------------------------------------------------------------------------ 80/20
def test_concentration_per_group(analysis_bank: Any, county_month: pd.DataFrame) -> None:
    from cimlib.value import customer_value

    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    df = G.group_concentration(cm, AS_OF, groups="dim:customer_type", home=home)
    cv = customer_value(cm, AS_OF, home=home)
    for t, g in cv.groupby("customer_type"):
        v = np.sort(g["aum_adb"].to_numpy())[::-1]
        k = math.ceil(0.2 * len(v))
        row = df[(df["group"] == t) & (df["measure"] == "aum_adb")].iloc[0]
        assert row["top_share"] == pytest.approx(v[:k].sum() / v.sum(), rel=1e-9)
        x = np.sort(v)
        n = len(x)
        gini = ((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * x.sum())
        assert row["gini"] == pytest.approx(gini, rel=1e-6)


# ------------------------------------------------------------------------------------ lists and trends
def test_target_list_is_one_group_against_the_rest(analysis_bank: Any) -> None:
    from cimlib.targeting import run

    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    df = G.group_value(cm, AS_OF, groups="list:events/birthday", home=home).set_index("group")
    hits = run("events", cm, AS_OF, rules=["birthday"], home=home)
    assert df.loc["IN", "customers"] == len(hits) > 0
    total = _count(home, "d.county_code = $c", {"c": COUNTY})
    assert df["customers"].sum() == total
    assert df.loc["IN", "label"].startswith("In list: ")


def test_trend_is_one_frame_of_months(analysis_bank: Any) -> None:
    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    tr = G.group_value(cm, AS_OF, groups="dim:customer_type", home=home, months=3)
    assert sorted(set(tr["as_of_date"])) == [dt.date(2026, 4, 30), dt.date(2026, 5, 31), DAY]
    one = G.group_value(cm, "2026-05", groups="dim:customer_type", home=home).set_index("group")
    may = tr[tr["as_of_date"] == dt.date(2026, 5, 31)].set_index("group")
    assert may["customers"].to_dict() == one["customers"].to_dict()
    assert np.allclose(may["contribution"], one.loc[may.index, "contribution"])
    assert np.allclose(tr.groupby("as_of_date")["customer_share"].sum().to_numpy(), 1.0)


# ------------------------------------------------------------------------------------------------ drill
def test_drill_is_refused_for_the_provincial_analyst_and_audited(analysis_bank: Any) -> None:
    home = analysis_bank.home
    with pytest.raises(NotPermitted):
        G.group_customers(_who(home, "prov_analyst"), AS_OF, groups="dim:aum", group="A1", home=home)
    log = read_audit(home, _who(home, "auditor"), user="prov_analyst")
    rec = log[log["action"] == "analysis_drill_groups"]
    assert len(rec) and rec["outcome"].iloc[-1] == "refused"


def test_drill_lists_the_group_in_scope(analysis_bank: Any, county_month: pd.DataFrame) -> None:
    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    out = G.group_customers(cm, AS_OF, groups="dim:aum", group="A1", home=home, limit=1000)
    want = set(county_month.loc[county_month["band"] == "A1", "customer_id"])
    assert set(out["customer_id"]) == want and out.attrs["total"] == len(want)
    assert out["link"].str.contains("customer_360").all()
    with pytest.raises(G.GroupsError):
        G.group_customers(cm, AS_OF, groups="dim:aum", group="A9", home=home)
    log = read_audit(home, _who(home, "auditor"), user="county_mgr_101")
    rec = log[log["action"] == "analysis_drill_groups"].iloc[-1]
    assert rec["outcome"] != "refused" and "A1" in str(rec["target"])


# ----------------------------------------------------------------------------------------------- charts
def test_charts_carry_the_frames(analysis_bank: Any) -> None:
    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    v = G.group_value(cm, AS_OF, groups="dim:customer_type", home=home, lang="zh_CN")
    spec = C.group_value_chart(v, "zh_CN").to_dict()
    data = pd.DataFrame(next(iter(spec["datasets"].values())))
    assert set(data["group"]) == {"个人", "对公"}
    assert data["value"].sum() == pytest.approx(v["aum_adb"].sum() / 10000, abs=0.1)  # 万元
    assert any(s.endswith("%") for s in data["share_text"])
    assert "万元" in json.dumps(spec, ensure_ascii=False)

    ff = G.group_fund_flow(cm, AS_OF, groups="dim:customer_type", home=home)
    spec = C.group_fund_flow_chart(ff).to_dict()
    sets = [pd.DataFrame(d) for d in spec["datasets"].values()]
    bars = next(d for d in sets if "counterparty" in d.columns)
    out = bars[bars["direction"] == "Outflow"]["amount"]
    assert (out <= 0).all() and out.sum() == pytest.approx(-ff["outflow"].sum(), abs=1)
    assert spec["layer"][0]["encoding"]["x"]["aggregate"] == "sum"

    ch = G.group_channels(cm, AS_OF, groups="dim:customer_type", home=home)
    spec = C.group_channel_chart(ch).to_dict()
    assert spec["encoding"]["x"]["stack"] == "normalize" and spec["encoding"]["color"]["field"] == "part"

    st = G.group_structure(cm, AS_OF, groups="dim:customer_type", home=home)
    spec = C.group_structure_chart(st).to_dict()
    assert len(spec["vconcat"]) == 4 and spec["resolve"]["scale"]["color"] == "independent"

    rk = G.group_risk(cm, AS_OF, groups="dim:customer_type", home=home)
    spec = C.group_risk_chart(rk).to_dict()
    titles = [p["title"] for p in spec["hconcat"]]
    assert "NPL ratio" in titles and "Mean churn score" not in titles  # not scored: left out

    tr = G.group_activity(cm, AS_OF, groups="dim:customer_type", home=home, months=4)
    spec = C.group_trend_chart(tr, measure="active_share").to_dict()
    assert spec["encoding"]["x"]["field"] == "month" and spec["encoding"]["color"]["field"] == "group"
    assert len(next(iter(spec["datasets"].values()))) == 8
