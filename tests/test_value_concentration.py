"""80/20 concentration (cimlib.value._concentration): golden numbers by hand, known Gini values, the
warehouse functions on the shared bank (scope, groups, trend) and the charts."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from cimlib.access import NotPermitted, principal_for
from cimlib.customer import _data as D
from cimlib.value._concentration import (
    concentration,
    concentration_stats,
    concentration_trend,
    gini,
    lorenz,
    lorenz_points,
    pareto,
    pareto_bins,
)


def _row(values, **kw) -> dict:
    return concentration_stats(values, **kw).iloc[0].to_dict()


# ------------------------------------------------------------------------------------- golden numbers
def test_golden_with_ties_zero_and_a_negative() -> None:
    # ranked: 5, 3, 3, 0, -1; running sums 5, 8, 11, 11, 10 (net total 10)
    r = _row([3, -1, 5, 0, 3], top_k=(1, 2, 10), top_p=(0.2, 0.4, 0.5))
    assert (r["n"], r["n_positive"], r["n_zero"], r["n_negative"]) == (5, 3, 1, 1)
    assert (r["total"], r["positive_total"], r["negative_total"]) == (10, 11, -1)
    assert r["top_1_share"] == 0.5 and r["top_2_share"] == 0.8 and r["top_10_share"] == 1.0
    assert r["top_20pct_share"] == 0.5  # k = ceil(0.2 * 5) = 1
    assert r["top_40pct_share"] == 0.8  # k = 2
    assert r["top_50pct_share"] == pytest.approx(1.1)  # k = ceil(2.5) = 3: the whale rises above 100%
    assert r["customers_for_80"] == 2 and r["share_for_80"] == 0.4  # 8 >= 0.8 x 10
    assert r["peak_share"] == pytest.approx(1.1)  # T+ / T
    # ascending -1, 0, 3, 3, 5 with weights -4, -2, 0, 2, 4: 30 / (5 x (11 + 1)) = 0.5
    assert r["gini"] == pytest.approx(0.5)
    assert r["note"] == ""


def test_golden_ties_at_the_cut() -> None:
    # 4, 2, 2, 2, 0: which of the tied 2s is "in the top 2" does not matter, the share is a sum
    r = _row([2, 0, 2, 4, 2], top_k=(2,), top_p=(0.4,))
    assert r["top_2_share"] == 0.6 and r["top_40pct_share"] == 0.6
    assert r["customers_for_80"] == 3 and r["share_for_80"] == 0.6  # 4, 6, 8 >= 8
    # sum_ij |x_i - x_j| = 32 (ordered pairs), / (2 n^2 mean) = 32 / (2 x 25 x 2)
    assert r["gini"] == pytest.approx(0.32)


def test_top_p_uses_exact_ceil_and_exact_80_cut() -> None:
    v = np.arange(100, 0, -1)  # 100 .. 1, total 5050
    r = _row(v, top_p=(0.07,), top_k=())
    assert r["top_7pct_share"] == pytest.approx(sum(range(94, 101)) / 5050)  # k = 7, not ceil(7.0000001)
    # exactly 80%: 1 + 4 -> 4 reaches 0.8 x 5 only at the second customer, in integers
    r = _row([4, 1], top_k=(), top_p=())
    assert r["customers_for_80"] == 1  # 4 >= 0.8 x 5 = 4 exactly (no float fuzz)


def test_integer_and_float_inputs_agree() -> None:
    rng = np.random.default_rng(7)
    fen = rng.integers(-5_000, 1_000_000, 2_000)
    a = concentration_stats(fen)
    b = concentration_stats(fen / 100.0)
    cols = [c for c in a.columns if c.endswith("_share") or c in ("gini", "customers_for_80")]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=False, rtol=1e-12)


def test_groups_match_separate_calls() -> None:
    rng = np.random.default_rng(3)
    v = rng.integers(0, 1000, 500)
    g = rng.choice(["x", "y", "z"], 500)
    grouped = concentration_stats(v, g).set_index("group")
    for key in ("x", "y", "z"):
        alone = concentration_stats(v[g == key]).iloc[0]
        for col in ("n", "total", "top_10_share", "top_20pct_share", "customers_for_80", "gini"):
            assert grouped.loc[key, col] == pytest.approx(alone[col])


def test_empty_all_zero_and_non_positive_totals_are_clear() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division warnings
        empty = _row([])
        zeros = _row([0, 0, 0])
        neg = _row([-1, -2, 0])
    assert empty["n"] == 0 and math.isnan(empty["gini"]) and math.isnan(empty["top_20pct_share"])
    assert empty["note"] == "no customers"
    assert zeros["n"] == 3 and math.isnan(zeros["gini"]) and math.isnan(zeros["share_for_80"])
    assert zeros["note"] == "every value is zero"
    assert math.isnan(neg["top_20pct_share"]) and "not positive" in neg["note"]
    # shares are undefined on a negative net total, the Gini is not: 4 / (3 x 3)
    assert neg["gini"] == pytest.approx(4 / 9)
    with pytest.raises(ValueError, match="NaN"):
        concentration_stats([1.0, float("nan")])


# ------------------------------------------------------------------------------------------ the Gini
def test_gini_of_known_distributions() -> None:
    assert gini([7] * 10) == 0.0
    assert gini([0] * 9 + [5]) == pytest.approx(9 / 10)  # (n - 1) / n
    assert gini([0, 0, 1, 1]) == pytest.approx(0.5)  # two-point: half hold nothing, half hold 1
    assert gini([1, 1, 1, 3]) == pytest.approx(1 / 4)  # (-3 - 1 + 1 + 9) / (4 x 6)
    rng = np.random.default_rng(20261031)
    assert gini(rng.uniform(0, 1, 400_000)) == pytest.approx(1 / 3, abs=0.003)
    assert gini(rng.exponential(1.0, 400_000)) == pytest.approx(1 / 2, abs=0.004)
    # negative values: the Raffinetti-Siletti-Vernizzi normalisation keeps it in [0, 1]
    assert 0 <= gini([-100, 1, 1, 1]) <= 1
    # sum_ij |x_i - x_j| = 60 (ordered pairs); / (2 n (T+ + T-)) = 60 / (2 x 4 x 10)
    assert gini([-5, 0, 0, 5]) == pytest.approx(0.75)


def test_gini_invariant_to_order_and_scale() -> None:
    v = [5, 3, 3, 0, 1, 9]
    assert gini(v) == pytest.approx(gini(v[::-1])) == pytest.approx(gini([x * 100 for x in v]))


# ------------------------------------------------------------------------------------ curves and bins
def test_lorenz_points_are_exact_at_the_key_quantiles() -> None:
    v = np.array([3, -1, 5, 0, 3])
    pts = lorenz_points(v, points=4)
    row = _row(v)
    at = pts.set_index("customer_share")
    assert at.loc[0.0, "top_share"] == 0 and at.loc[1.0, "top_share"] == pytest.approx(1.0)
    assert at.loc[0.2, "top_share"] == pytest.approx(row["top_20pct_share"])
    assert at.loc[row["share_for_80"], "top_share"] == pytest.approx(0.8)
    assert at.loc[0.6, "top_share"] == pytest.approx(1.1)  # the whale's peak
    assert at.loc[0.2, "lorenz"] == pytest.approx(-0.1)  # the bottom customer loses 10% of the total
    # lorenz(p) = 1 - top_share(1 - p)
    assert at.loc[0.4, "lorenz"] == pytest.approx(1 - at.loc[0.6, "top_share"])


def test_pareto_bins_add_up() -> None:
    v = np.arange(1, 38)
    b = pareto_bins(v, bins=10)
    assert b["customers"].sum() == 37 and b["share"].sum() == pytest.approx(1.0)
    assert b["cumulative_share"].iloc[-1] == pytest.approx(1.0)
    r = _row(v, top_p=(0.2,))
    assert b.loc[b["bin"] == 2, "cumulative_share"].iloc[0] == pytest.approx(r["top_20pct_share"])


# ------------------------------------------------------------------------------------------ warehouse
def _sql_sum(home, cond: str = "TRUE") -> dict:
    snap = D.snapshot(home)
    day = D.as_of_dates(snap)[-1]
    _, rows = snap.query(
        "SELECT count(*), sum(m.deposit_adb), sum(m.deposit_adb + m.wealth_aum), sum(m.loan_adb) "
        "FROM mart_customer_month m JOIN dim_customer d ON d.customer_id = m.customer_id "
        f"WHERE m.as_of_date = ? AND {cond}",
        [day],
    )
    n, dep, aum, loans = rows[0]
    return {"n": n, "deposits": float(dep), "aum": float(aum), "loans": float(loans)}


def test_scope_and_totals_match_sql(bank) -> None:
    p = principal_for("county_mgr_101", bank.home)
    df = concentration(p, home=bank.home).set_index("measure")
    want = _sql_sum(bank.home, "d.county_code = '101000'")
    for m in ("deposits", "aum", "loans"):
        assert df.loc[m, "n"] == want["n"]
        assert df.loc[m, "total"] == pytest.approx(want[m], abs=0.005)
    from cimlib.value import contribution

    c = contribution(p, home=bank.home)
    assert df.loc["contribution", "total"] == pytest.approx(float(c["contribution"].sum()), abs=0.01)
    everyone = concentration(principal_for("prov_analyst", bank.home), home=bank.home, measures=["deposits"])
    assert everyone["n"].iloc[0] == _sql_sum(bank.home)["n"] > want["n"]


def test_no_access_role_is_refused(bank) -> None:
    with pytest.raises(NotPermitted):
        concentration(principal_for("auditor", bank.home), home=bank.home)


def test_groups_by_org_type_and_product(bank) -> None:
    p = principal_for("prov_analyst", bank.home)
    df = concentration(p, home=bank.home, by=[None, "org", "customer_type", "product"])
    allrow = df[(df["by"] == "all") & (df["measure"] == "deposits")].iloc[0]
    counties = df[(df["by"] == "county") & (df["measure"] == "deposits")]
    assert counties["n"].sum() == allrow["n"] and counties["total"].sum() == pytest.approx(allrow["total"])
    assert counties["label"].str.contains("农村商业银行").all()
    types = df[(df["by"] == "customer_type") & (df["measure"] == "loans")]
    assert set(types["group"]) == {"I", "C"}
    prod = df[df["by"] == "product"]
    assert {"DEMAND", "TIME"} <= set(prod.loc[prod["measure"] == "deposits", "group"])
    assert (prod["population"] == "holders").all() and (prod["n_zero"] == 0).all()
    dep = prod[prod["measure"] == "deposits"]["total"].sum()
    assert dep == pytest.approx(allrow["total"], abs=0.01 * len(prod))  # demand + time = deposit ADB
    for col in ("gini", "share_for_80"):
        ok = df[col].dropna()
        assert ((ok >= 0) & (ok <= 1)).all()
    # shares of a non-negative measure stay within [0, 1]; contribution's whale curve may rise above 1
    # (a group of mostly loss-making holders has a small net total) but never above its peak
    plain = df[df["measure"] != "contribution"].dropna(subset=["top_20pct_share"])
    assert plain["top_20pct_share"].between(0, 1 + 1e-12).all()
    whale = df[df["measure"] == "contribution"].dropna(subset=["top_20pct_share", "peak_share"])
    assert (whale["top_20pct_share"] <= whale["peak_share"] + 1e-9).all()


def test_small_groups_are_suppressed_for_aggregate_roles(bank) -> None:
    p = dataclasses.replace(principal_for("prov_analyst", bank.home), min_cell=400)
    df = concentration(p, home=bank.home, by="county", measures=["deposits"])
    small = df["suppressed"]
    assert small.any() and df.loc[small, "gini"].isna().all() and df.loc[small, "n"].isna().all()
    assert df["top_10_share"].isna().all() and df["top_100_share"].isna().all()  # k < min_cell
    detail = concentration(principal_for("county_mgr_101", bank.home), home=bank.home, by="branch")
    assert not detail["suppressed"].any()
    pts = lorenz(p, home=bank.home, by="county", measures=["deposits"])
    assert set(pts["group"]) == set(df.loc[~small, "group"])


def test_trend_over_the_four_months(bank) -> None:
    p = principal_for("prov_analyst", bank.home)
    tr = concentration_trend(p, home=bank.home, measures=["deposits", "contribution"])
    assert tr["as_of"].nunique() == 4 and list(tr["as_of"]) == sorted(tr["as_of"])
    last2 = concentration_trend(p, 2, home=bank.home, measures=["aum"])
    assert last2["as_of"].nunique() == 2


def test_charts_render(bank) -> None:
    from cimlib.charts import to_png
    from cimlib.value._concentration_charts import concentration_trend_chart, lorenz_chart, pareto_chart

    p = principal_for("prov_analyst", bank.home)
    par = pareto_chart(pareto(p, home=bank.home, measures=["deposits"]))
    assert par.to_dict()["title"].startswith("Pareto chart · Deposits")
    lor = lorenz_chart(lorenz(p, home=bank.home, measures=["aum"]))
    assert lor.to_dict()["title"].startswith("Lorenz curve · AUM · Gini 0.")
    whale = lorenz_chart(lorenz(p, home=bank.home, measures=["contribution"], lang="zh_CN"), "zh_CN")
    assert whale.to_dict()["title"].startswith("鲸鱼曲线 · 贡献度 · 基尼系数")
    tr = concentration_trend_chart(concentration_trend(p, home=bank.home, measures=["deposits", "loans"]))
    for chart in (par, lor, whale, tr):
        assert to_png(chart, scale=1).startswith(b"\x89PNG")
