"""Macro analysis, general ledger, tie-out and key focus (cimlib.analysis._macro/_gl/_focus) on the 13-month
analysis bank, plus a tiny bank with one planted GL difference.

Golden numbers are recomputed independently with plain SQL on the fixture warehouse; identities (shares add
to 1, children add to the total), scope, suppression, the audited drill, the planted swings and the planted
GL difference, and the charts' data and encodings are checked.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import run_cim

from cimlib.access import NotFoundOrNotPermitted, NotPermitted, principal_for, read_audit
from cimlib.analysis import _focus as F
from cimlib.analysis import _gl as G
from cimlib.analysis import _macro as M
from cimlib.analysis import _macro_charts as C
from cimlib.customer import _data as D

AS_OF = "2026-06"
DAY = dt.date(2026, 6, 30)
PREV = dt.date(2026, 5, 31)
COUNTY = "101000"
RATES = {"NORMAL": 0.0, "SPECIAL_MENTION": 0.02, "SUBSTANDARD": 0.25, "DOUBTFUL": 0.5, "LOSS": 1.0}


def _who(home: Path, user: str) -> Any:
    return principal_for(user, home)


def _sql(home: Path, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    snap = D.snapshot(home)
    with snap.all_cores() as con:
        return con.sql(sql, params=params or {}).to_arrow_table().to_pandas()


def _county_totals(home: Path, day: dt.date) -> dict[str, float]:
    """County 101's overview figures of ``day``, by plain SQL (provisions from the loans and the rates)."""
    case = " ".join(f"WHEN '{k}' THEN {v}" for k, v in RATES.items())
    df = _sql(
        home,
        f"""SELECT
        (SELECT count(*) FROM mart_customer_month m JOIN dim_customer d USING (customer_id)
            WHERE m.as_of_date = $d AND d.county_code = $c) AS customers,
        (SELECT CAST(sum(m.deposit_balance) AS DOUBLE) FROM mart_customer_month m JOIN dim_customer d
            USING (customer_id) WHERE m.as_of_date = $d AND d.county_code = $c) AS deposit_balance,
        (SELECT CAST(sum(m.loan_adb) AS DOUBLE) FROM mart_customer_month m JOIN dim_customer d
            USING (customer_id) WHERE m.as_of_date = $d AND d.county_code = $c) AS loan_adb,
        (SELECT CAST(sum(l.balance) AS DOUBLE) FROM core_loan_month l JOIN dim_customer d USING (customer_id)
            WHERE l.as_of_date = $d AND d.county_code = $c AND l.status <> 'WRITTEN_OFF') AS loan_balance,
        (SELECT CAST(sum(l.balance) AS DOUBLE) FROM core_loan_month l JOIN dim_customer d USING (customer_id)
            WHERE l.as_of_date = $d AND d.county_code = $c AND l.status <> 'WRITTEN_OFF'
            AND l.five_class IN ('SUBSTANDARD', 'DOUBTFUL', 'LOSS')) AS npl_balance,
        (SELECT sum(CAST(l.balance AS DOUBLE) * CASE l.five_class {case} END) FROM core_loan_month l
            JOIN dim_customer d USING (customer_id)
            WHERE l.as_of_date = $d AND d.county_code = $c AND l.status <> 'WRITTEN_OFF') AS provisions,
        (SELECT CAST(sum(f.fee_amount) AS DOUBLE) FROM mart_fee_month f
            JOIN dim_customer d USING (customer_id)
            WHERE f.as_of_date = $d AND d.county_code = $c) AS fee_income""",
        {"d": day, "c": COUNTY},
    )
    return {k: 0.0 if v is None or v != v else float(v) for k, v in df.iloc[0].items()}


# --------------------------------------------------------------------------------------------- overview
@pytest.fixture(scope="module")
def county_overview(analysis_bank: Any) -> pd.DataFrame:
    home = analysis_bank.home
    return M.overview(_who(home, "county_mgr_101"), AS_OF, home=home)


def test_overview_golden_numbers(analysis_bank: Any, county_overview: pd.DataFrame) -> None:
    home = analysis_bank.home
    ov = county_overview.set_index("measure")
    for col, day in (("current", DAY), ("prev_month", PREV), ("last_year", dt.date(2025, 6, 30))):
        if col == "last_year":
            continue  # the bank starts 2025-10: no same month last year for June
        want = _county_totals(home, day)
        for m, v in want.items():
            assert ov.loc[m, col] == pytest.approx(v, rel=1e-9, abs=0.01), (m, col)
        assert ov.loc["npl_ratio", col] == pytest.approx(want["npl_balance"] / want["loan_balance"])
        if want["npl_balance"]:
            assert ov.loc["provision_coverage", col] == pytest.approx(
                want["provisions"] / want["npl_balance"]
            )
    assert math.isnan(ov.loc["deposit_balance", "last_year"])  # 2025-06 is not in the warehouse
    ys = _county_totals(home, dt.date(2025, 12, 31))
    assert ov.loc["deposit_balance", "year_start"] == pytest.approx(ys["deposit_balance"])
    cur, prev = ov.loc["deposit_balance", "current"], ov.loc["deposit_balance", "prev_month"]
    assert ov.loc["deposit_balance", "prev_month_change"] == pytest.approx(cur - prev)
    assert ov.loc["deposit_balance", "prev_month_growth"] == pytest.approx(cur / prev - 1)
    assert list(county_overview["measure"]) == list(M.MEASURES)
    assert county_overview.attrs["edition"] == "county" and county_overview.attrs["org"] == COUNTY


def test_overview_contribution_matches_the_value_service(
    analysis_bank: Any, county_overview: pd.DataFrame
) -> None:
    from cimlib.value import contribution

    home = analysis_bank.home
    c = contribution(_who(home, "county_mgr_101"), AS_OF, home=home)  # computed on the fly, not the cache
    got = county_overview.set_index("measure").loc["contribution", "current"]
    assert got == pytest.approx(float(c["contribution"].sum()), abs=0.05)


def test_overview_scope_and_provincial_identity(analysis_bank: Any, county_overview: pd.DataFrame) -> None:
    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    with pytest.raises(NotFoundOrNotPermitted):
        M.overview(cm, AS_OF, org="102000", home=home)
    prov = M.overview(_who(home, "prov_analyst"), AS_OF, org=COUNTY, home=home, contribution=False)
    a, b = prov.set_index("measure"), county_overview.set_index("measure")
    for m in ("customers", "deposit_balance", "deposit_adb", "loan_balance", "fee_income"):
        assert a.loc[m, "current"] == pytest.approx(b.loc[m, "current"])
    assert prov.attrs["edition"] == "provincial"
    assert math.isnan(a.loc["contribution", "current"])
    whole = M.overview(_who(home, "prov_analyst"), AS_OF, home=home, contribution=False).set_index("measure")
    counties = [
        M.overview(_who(home, "prov_analyst"), AS_OF, org=c, home=home, contribution=False)
        .set_index("measure")
        .loc["deposit_balance", "current"]
        for c in (
            "101000",
            "102000",
            "103000",
            "104000",
            "105000",
            "106000",
            "107000",
            "108000",
            "109000",
            "110000",
        )
    ]
    assert sum(counties) == pytest.approx(whole.loc["deposit_balance", "current"])


def test_trend_has_thirteen_months_and_marks_the_current(analysis_bank: Any) -> None:
    home = analysis_bank.home
    tr = M.overview_trend(_who(home, "county_mgr_101"), "2026-10", home=home, lang="zh_CN")
    assert tr["month"].nunique() == 13 and tr.loc[tr["is_current"], "month"].unique().tolist() == ["2026-10"]
    dep = tr[tr["measure"] == "deposit_balance"].set_index("month")["value"]
    assert dep["2026-06"] == pytest.approx(_county_totals(home, DAY)["deposit_balance"])
    assert set(tr["label"]) >= {"存款余额", "客户数"}
    ch = C.kpi_trend_chart(tr, "zh_CN")
    spec = ch.to_dict()
    panels = spec["concat"]
    assert len(panels) == len(M.TREND_MEASURES)
    first = panels[0]["layer"][0]
    assert first["encoding"]["x"]["field"] == "month" and first["encoding"]["y"]["field"] == "display"
    assert panels[1]["layer"][1]["mark"]["color"] == "#c0392b"  # the as-of month's marker


def test_drill_refused_for_provincial_and_lists_county_customers(analysis_bank: Any) -> None:
    home = analysis_bank.home
    with pytest.raises(NotPermitted):
        M.overview_customers(_who(home, "prov_analyst"), "loan_balance", AS_OF, home=home)
    log = read_audit(home, _who(home, "auditor"), user="prov_analyst")
    rec = log[log["action"] == "analysis_drill_overview"]
    assert len(rec) and rec["outcome"].iloc[-1] == "refused"
    cm = _who(home, "county_mgr_101")
    out = M.overview_customers(cm, "loan_balance", AS_OF, home=home, limit=5000)
    want = _county_totals(home, DAY)["loan_balance"]
    assert out["loan_balance"].sum() == pytest.approx(want) and out.attrs["total"] == len(out)
    assert out["loan_balance"].is_monotonic_decreasing and (out["loan_balance"] > 0).all()
    assert set(out["customer_id"]) <= set(
        _sql(home, "SELECT customer_id FROM dim_customer WHERE county_code = $c", {"c": COUNTY})[
            "customer_id"
        ]
    )
    with pytest.raises(ValueError):
        M.overview_customers(cm, "aum; DROP TABLE x", AS_OF, home=home)


# --------------------------------------------------------------------------------------------------- GL
def test_gl_balances_roll_up_to_children(analysis_bank: Any) -> None:
    home = analysis_bank.home
    prov = _who(home, "prov_analyst")
    gl = G.gl_balances(prov, AS_OF, home=home, months=3)
    assert sorted(gl["org_code"].unique()) == [f"1{k:02d}000" for k in range(1, 11)]
    assert gl["month"].nunique() == 3
    want = _sql(
        home,
        "SELECT subject_code, CAST(sum(gl_balance) AS DOUBLE) AS v FROM mart_gl_tieout "
        "WHERE as_of_date = $d GROUP BY 1",
        {"d": DAY},
    ).set_index("subject_code")["v"]
    got = gl[gl["as_of_date"] == DAY].groupby("subject_code")["gl_balance"].sum()
    assert np.allclose(got.loc[want.index], want)
    county = G.gl_balances(_who(home, "county_mgr_101"), AS_OF, home=home, months=1)
    assert county["org_code"].str.startswith("101").all() and county["org_code"].nunique() >= 8
    assert county["gl_balance"].sum() == pytest.approx(
        gl[(gl["org_code"] == COUNTY) & gl["is_current"]]["gl_balance"].sum()
    )
    with pytest.raises(NotPermitted):
        G.gl_balances(_who(home, "cust_mgr_e1000005"), AS_OF, home=home)


def test_gl_structure_shares(analysis_bank: Any) -> None:
    home = analysis_bank.home
    st = G.gl_structure(_who(home, "county_mgr_101"), AS_OF, home=home, lang="zh_CN")
    sums = st.groupby(["org_code", "side"])["side_share"].sum()
    assert np.allclose(sums[sums > 0], 1.0)
    tot = st[st["is_total"]].set_index("subject_code")["gl_balance"]
    kids = st[~st["is_total"]].groupby("subject_code")["gl_balance"].sum()
    assert np.allclose(kids.loc[tot.index], tot)
    assert set(st.loc[st["subject_code"] == "2011", "label"]) == {"个人活期存款"}
    ch = C.gl_structure_chart(st, "zh_CN").to_dict()
    enc = ch["hconcat"][0]["encoding"]
    assert enc["color"]["field"] == "label" and enc["y"]["field"] == "org_label"


def test_tieout_is_clean_on_the_analysis_bank(analysis_bank: Any) -> None:
    home = analysis_bank.home
    prov = _who(home, "prov_analyst")
    t = G.gl_tieout(prov, AS_OF, home=home)
    n = _sql(home, "SELECT count(*) AS n FROM mart_gl_tieout WHERE as_of_date = $d", {"d": DAY})["n"].iloc[0]
    assert len(t) == n and t.attrs["n_failed"] == 0 and (t["status"] == "ok").all()
    s = G.check_gl_tieout(prov, AS_OF, home=home, raise_on_failure=True)
    assert s.ok and s.exit_code == 0 and s.n_checked == n


def test_tieout_rule_needs_both_tolerances() -> None:
    f = pd.DataFrame(
        {
            "gl_balance": [1e6, 1e6, 50.0, 1e9],
            "customer_balance": [1e6 - 150, 1e6 - 99, 0.0, 1e9 - 150],
            "difference": [150.0, 99.0, 50.0, 150.0],
        }
    )
    out = G.tieout_core(f, 100.0, 0.0001)
    # 150 > 100 and > 100 (1e-4 of 1e6): fail; 99 < 100: ok; 50 < 100 abs: ok; 150 < 1e5 (1e-4 of 1e9): ok
    assert list(out["status"]) == ["fail", "ok", "ok", "ok"]
    assert out["tolerance"].tolist() == pytest.approx([100.0, 100.0, 100.0, 100000.0])


# ------------------------------------------------------------------------------- planted GL difference
PLANT = 12345.67


@pytest.fixture(scope="module")
def planted_bank(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny bank whose last GL extract has one balance raised by PLANT, ingested and built."""
    home = tmp_path_factory.mktemp("macro_planted")
    raw = home / "data" / "raw"
    run_cim(
        "synth", "--customers", "400", "--months", "2", "--seed", "7", "--out", str(raw), "--json", home=home
    )
    last = sorted(p for p in raw.iterdir() if re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.name))[-1]
    path = last / "CORE_gl_balance.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    target = next(r for r in rows if float(r["balance"]) > 100000)
    target["balance"] = f"{float(target['balance']) + PLANT:.2f}"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    run_cim("ingest", str(raw), "--json", home=home)
    build = json.loads(run_cim("build", "--json", home=home).stdout)
    return {
        "home": home,
        "build": build,
        "org": target["org_code"],
        "subject": target["subject_code"],
        "day": dt.date.fromisoformat(last.name),
    }


def test_planted_difference_publishes_with_a_warning(planted_bank: dict[str, Any]) -> None:
    b = planted_bank["build"]
    assert b["contracts"]["failed"] == 0  # published
    warned = [r for r in b["contracts"]["results"] if r.get("warned")]
    assert [(r["model"], r["test"], r["failing_rows"]) for r in warned] == [
        ("mart_gl_tieout", "gl_ties_out", 1)
    ]
    assert D.snapshot(planted_bank["home"]).snapshot_id == b["snapshot_id"]


def test_planted_difference_fails_loudly(planted_bank: dict[str, Any]) -> None:
    home = planted_bank["home"]
    prov = _who(home, "prov_analyst")
    t = G.gl_tieout(prov, home=home)
    fails = t[t["status"] == "fail"]
    assert t.attrs["n_failed"] == 1 and len(fails) == 1
    r = fails.iloc[0]
    assert (r["org_code"], r["subject_code"]) == (planted_bank["org"], planted_bank["subject"])
    assert r["difference"] == pytest.approx(PLANT, abs=0.005)
    assert t.index[t["status"] == "fail"].tolist() == [0]  # failures first
    with pytest.raises(G.GLTieoutError) as exc:
        G.check_gl_tieout(prov, home=home, raise_on_failure=True)
    s = exc.value.summary
    assert s.exit_code == 1 and s.n_failed == 1 and planted_bank["org"] in s.message and "FAILED" in s.message
    # the month before is untouched
    first = G.check_gl_tieout(prov, planted_bank["day"].replace(day=1) - dt.timedelta(days=1), home=home)
    assert first.ok
    spec = C.tieout_chart(t, "zh_CN").to_dict()
    data = spec["datasets"][spec["layer"][0]["data"]["name"]]
    assert [d["status"] for d in data] == ["fail"] and data[0]["difference"] == pytest.approx(
        PLANT, abs=0.005
    )
    assert spec["layer"][0]["encoding"]["color"]["scale"]["range"][0] == "#c0392b"


# ------------------------------------------------------------------------------------------- key focus
def _planted_swings(home: Path, raw: Path) -> pd.DataFrame:
    sw = pd.read_csv(raw / "_answers" / "swings.csv", dtype=str)
    ids = _sql(
        home,
        "SELECT x.cust_no, x.customer_id, d.county_code FROM core_cust_no_map x "
        "JOIN dim_customer d USING (customer_id)",
    )
    return sw.merge(ids, on="cust_no")


def _movers(
    home: Path, day: dt.date, prev: dt.date, cmin: float, crate: float, county: str = COUNTY
) -> set[str]:
    """A county's customers whose deposit balance or ADB moved beyond the thresholds (plain SQL)."""
    df = _sql(
        home,
        "SELECT m.customer_id, "
        "coalesce(sum(m.deposit_balance) FILTER (WHERE m.as_of_date = $p), 0) AS bp, "
        "coalesce(sum(m.deposit_balance) FILTER (WHERE m.as_of_date = $d), 0) AS bc, "
        "coalesce(sum(m.deposit_adb) FILTER (WHERE m.as_of_date = $p), 0) AS ap, "
        "coalesce(sum(m.deposit_adb) FILTER (WHERE m.as_of_date = $d), 0) AS ac "
        "FROM mart_customer_month m JOIN dim_customer d USING (customer_id) "
        "WHERE m.as_of_date IN ($p, $d) AND d.county_code = $c GROUP BY 1",
        {"p": prev, "d": day, "c": county},
    ).astype({c: float for c in ("bp", "bc", "ap", "ac")})

    def hit(a: pd.Series, b: pd.Series) -> pd.Series:
        ch = (b - a).abs()
        return (ch >= cmin) & (ch >= crate * np.maximum(a.abs(), b.abs()))

    return set(df.loc[hit(df["bp"], df["bc"]) | hit(df["ap"], df["ac"]), "customer_id"])


def _movers_any(home: Path, county: str) -> set[str]:
    return _movers(home, DAY, PREV, 5000.0, 0.5, county)


def test_key_focus_finds_the_planted_swings(analysis_bank: Any) -> None:
    """Each county's manager (county_mgr_101's role, scoped to the county) finds the planted swings."""
    home = analysis_bank.home
    base = _who(home, "county_mgr_101")
    sw = _planted_swings(home, analysis_bank.raw)
    th = {"customer_min_change": 5000.0}  # the synthetic swings are 1万-50万: below the default 100万
    found = want = 0
    dates = D.as_of_dates(D.snapshot(home))
    for (county, day_s), grp in sw.groupby(["county_code", "as_of_date"]):
        cm = dataclasses.replace(base, org_code=county, user_id=f"county_mgr_{county[1:3]}")
        day = dt.date.fromisoformat(day_s)
        prev = dates[dates.index(day) - 1]
        movers = _movers(home, day, prev, 5000.0, 0.5, county)
        planted = set(grp["customer_id"]) & movers  # in scope and above the thresholds
        kf = F.key_focus(cm, day, home=home, kinds=("customer",), thresholds=th, limit=200)
        listed = set(kf.loc[kf["kind"] == "customer", "code"])
        assert listed == movers, (county, day)  # exactly the customers beyond the thresholds
        assert set(kf["code"]) <= set(
            _sql(home, "SELECT customer_id FROM dim_customer WHERE county_code = $c", {"c": county})[
                "customer_id"
            ]
        )
        found += len(planted & listed)
        want += len(planted)
    assert want >= 20 and found / want >= 0.9


def test_key_focus_provincial_edition_shows_no_identities(analysis_bank: Any) -> None:
    home = analysis_bank.home
    prov = _who(home, "prov_analyst")
    th = {"customer_min_change": 5000.0, "org_change_rate": 0.03, "org_min_change": 100000.0}
    kf = F.key_focus(prov, AS_OF, home=home, thresholds=th)
    assert "customer" not in set(kf["kind"]) and (kf["kind"] == "customer_count").sum() == 1
    every = set()
    for c in range(1, 11):
        every |= {cid for cid in _movers_any(home, f"1{c:02d}000")}
    n = int(kf.loc[kf["kind"] == "customer_count", "current"].iloc[0])
    assert n == len(every) == kf.attrs["n_customer_movements"]
    drv = kf.attrs["drivers"]
    assert "customer" not in set(drv["driver_kind"])
    ids = set(_sql(home, "SELECT customer_id FROM dim_customer")["customer_id"])
    text = " ".join(kf["drivers"].fillna("")) + " " + " ".join(drv["driver_code"].dropna().astype(str))
    assert not any(i in text for i in ids)
    assert (kf["kind"] == "org").any() and kf.loc[kf["kind"] == "org", "code"].isin(
        [f"1{c:02d}000" for c in range(1, 11)]
    ).all()


def test_key_focus_org_rows_and_drivers(analysis_bank: Any) -> None:
    home = analysis_bank.home
    cm = _who(home, "county_mgr_101")
    th = {
        "org_change_rate": 0.02,
        "org_min_change": 50000.0,
        "product_change_rate": 0.05,
        "product_min_change": 50000.0,
    }
    kf = F.key_focus(cm, AS_OF, home=home, thresholds=th, lang="zh_CN")
    orgs = kf[(kf["kind"] == "org") & (kf["measure"] == "deposit_balance")]
    assert len(orgs)
    by_branch = _sql(
        home,
        "SELECT d.home_org_code AS org, "
        "CAST(sum(m.deposit_balance) FILTER (WHERE m.as_of_date = $d) AS DOUBLE) AS cur, "
        "CAST(sum(m.deposit_balance) FILTER (WHERE m.as_of_date = $p) AS DOUBLE) AS prev "
        "FROM mart_customer_month m JOIN dim_customer d USING (customer_id) "
        "WHERE m.as_of_date IN ($p, $d) AND d.county_code = $c GROUP BY 1",
        {"d": DAY, "p": PREV, "c": COUNTY},
    ).set_index("org")
    drv = kf.attrs["drivers"]
    for r in orgs.itertuples():
        assert r.change == pytest.approx(by_branch.loc[r.code, "cur"] - by_branch.loc[r.code, "prev"])
        assert abs(r.change_rate) >= 0.02 and abs(r.change) >= 50000.0
        prods = drv[(drv["kind"] == "org") & (drv["code"] == r.code) & (drv["driver_kind"] == "product")]
        assert len(prods) and "万元" in r.drivers
    rates = kf.loc[kf["kind"] == "org", "change_rate"].abs().tolist()
    assert rates == sorted(rates, reverse=True)
    prods = kf[kf["kind"] == "product"]
    for r in prods.itertuples():  # the product's org drivers add up to (at most) its change
        d = drv[(drv["kind"] == "product") & (drv["code"] == r.code)]
        assert len(d) and abs(d["change"].sum()) <= abs(r.change) * 1.5 + 1
    spec = C.key_focus_chart(kf, "zh_CN").to_dict()
    data = spec["datasets"][spec["layer"][0]["data"]["name"]]
    assert len(data) == (kf["kind"] != "customer_count").sum()
    enc = spec["layer"][0]["encoding"]
    assert enc["x"]["field"] == "display" and enc["color"]["field"] == "direction"
    assert all(abs(d["display"]) <= 3.0 for d in data)


def test_key_focus_suppression_rule() -> None:
    class P:
        can_view_detail = False
        min_cell = 5

    df = pd.DataFrame(
        {"measure": ["a"] * 4, "customers": [3.0, 8.0, 20.0, 0.0], "current": [1.0, 2.0, 3.0, 0.0]}
    )
    out = F._suppress(df, P(), ["measure"])
    assert out["suppressed"].tolist() == [
        True,
        True,
        False,
        False,
    ]  # the only small one, and the next smallest
    assert out.loc[0, "current"] != out.loc[0, "current"]  # NaN
    P.can_view_detail = True
    assert not F._suppress(df, P(), ["measure"])["suppressed"].any()


def test_cli_tieout_exits_3_on_the_planted_difference(planted_bank: dict[str, Any]) -> None:
    home = planted_bank["home"]
    bad = run_cim("analysis", "tieout", "--as", "prov_analyst", "--json", home=home, check=False)
    assert bad.returncode == 3, bad.stderr
    out = json.loads(bad.stdout)
    fails = [r for r in out["rows"] if r["status"] == "fail"]
    planted = (planted_bank["org"], planted_bank["subject"])
    assert [(r["org_code"], r["subject_code"]) for r in fails] == [planted]
    assert out["attrs"]["n_failed"] == 1
    day = planted_bank["day"]
    prev = (day.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    ok = run_cim("analysis", "tieout", "--as", "prov_analyst", "--as-of", prev, home=home, check=False)
    assert ok.returncode == 0 and "ties out within tolerance" in ok.stdout
