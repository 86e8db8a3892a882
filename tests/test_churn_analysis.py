"""Churn analysis (issue 6): rates by group, retention curves, outflow destinations, charts, CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pandas as pd
import pytest

from cimlib.access import NotPermitted, principal_for
from cimlib.churn._analysis import (
    BY_CHOICES,
    annualised,
    churn_rates,
    outflow_destinations,
    retention_curves,
)
from cimlib.churn._analysis_charts import churn_rate_chart, outflow_chart, retention_chart
from cimlib.churn._labels import label_sql, labelled_months
from cimlib.churn._params import HardChurn, Names
from cimlib.customer import _data as D
from tests.conftest import run_cim

#: A 2-month hard-churn window: the 4-month test bank then has two labelled scoring months.
HARD2 = HardChurn(
    kind="hard", name=Names(en="Hard churn (2 months)", zh_CN="硬流失(2个月)"), outcome_months=2
)


@pytest.fixture(scope="module")
def prov(bank):
    return principal_for("prov_analyst", bank.home)


@pytest.fixture(scope="module")
def county(bank):
    return principal_for("county_mgr_101", bank.home)


def _direct(bank, where: str = "TRUE") -> pd.DataFrame:
    """Eligible and churned per scoring month straight from the labels SQL (the reference)."""
    snap = D.snapshot(bank.home)
    ms = labelled_months(D.as_of_dates(snap), HARD2)
    sql = (
        f"SELECT l.as_of_date, count(*) AS eligible, count(*) FILTER (WHERE l.churned) AS churned "
        f"FROM ({label_sql(HARD2)}) AS l JOIN dim_customer AS d ON d.customer_id = l.customer_id "
        f"WHERE {where} GROUP BY 1 ORDER BY 1"
    )
    with snap.all_cores() as con:
        return con.sql(sql, params={"months": ms}).df()


def test_annualised_formula():
    assert annualised(0.0, 3) == 0.0
    assert annualised(0.03, 3) == pytest.approx(1 - 0.97**4)
    assert annualised(0.12, 12) == pytest.approx(0.12)


def test_rates_add_up_by_customer_type(bank, prov):
    df = churn_rates(prov, HARD2, by="customer_type", home=bank.home)
    ref = _direct(bank)
    assert len(ref) == 2 and set(df["as_of"]) == set(pd.to_datetime(ref["as_of_date"]).dt.date)
    for r in ref.itertuples(index=False):
        part = df[df["as_of"] == pd.Timestamp(r.as_of_date).date()]
        assert part["eligible"].sum() == r.eligible
        assert part["churned"].sum() == r.churned
        overall = [
            o for o in df.attrs["overall"] if o["as_of"] == pd.Timestamp(r.as_of_date).date().isoformat()
        ]
        assert overall[0]["churned"] == r.churned
    assert ref["churned"].sum() > 0
    assert (df["rate"] == df["churned"] / df["eligible"]).all()
    assert df["annualised_rate"].to_numpy() == pytest.approx(1 - (1 - df["rate"].to_numpy()) ** 6)
    pooled = churn_rates(prov, HARD2, by="customer_type", pooled=True, home=bank.home)
    assert pooled["as_of"].isna().all() and pooled["churned"].sum() == ref["churned"].sum()
    assert df.attrs["outcome_months"] == 2


@pytest.mark.parametrize("by", [b for b in BY_CHOICES if b != "customer_type"])
def test_every_grouping(bank, county, by):
    df = churn_rates(county, HARD2, by=by, pooled=True, home=bank.home)
    assert len(df) and df["eligible"].sum() > 0
    total = df.attrs["overall"][0]
    if by == "product":  # overlapping groups: every customer is in at least one line
        assert df["eligible"].sum() >= total["eligible"]
        assert df["churned"].max() <= total["churned"]
    else:
        assert df["eligible"].sum() == total["eligible"]
        assert df["churned"].sum() == total["churned"]
    if by == "county":
        assert list(df["group"]) == ["101000"]


def test_county_manager_sees_only_their_county(bank, county):
    df = churn_rates(county, HARD2, by="branch", home=bank.home)
    assert df["group"].str.startswith("101").all()
    ref = _direct(bank, "d.county_code = '101000'")
    for r in ref.itertuples(index=False):
        part = df[df["as_of"] == pd.Timestamp(r.as_of_date).date()]
        assert (part["eligible"].sum(), part["churned"].sum()) == (r.eligible, r.churned)
    assert not df["suppressed"].any()  # the county manager has detail: nothing blanked


def test_aggregate_role_gets_small_cells_suppressed(bank, prov):
    strict = dataclasses.replace(prov, min_cell=40)
    df = churn_rates(strict, HARD2, by="branch", home=bank.home)
    small = df["suppressed"]
    assert small.any() and not small.all()
    assert df.loc[small, ["eligible", "churned", "rate"]].isna().all().all()
    assert (df.loc[~small, "eligible"] >= 40).all()
    detail = churn_rates(
        dataclasses.replace(prov, detail=True, min_cell=40), HARD2, by="branch", home=bank.home
    )
    assert not detail["suppressed"].any()


def test_no_access_role_is_refused(bank):
    nobody = principal_for("auditor", bank.home)
    with pytest.raises(NotPermitted):
        churn_rates(nobody, HARD2, home=bank.home)
    with pytest.raises(NotPermitted):
        retention_curves(nobody, home=bank.home)
    with pytest.raises(NotPermitted):
        outflow_destinations(nobody, HARD2, home=bank.home)


def test_unlabelled_month_is_an_error(bank, prov):
    last = D.as_of_dates(D.snapshot(bank.home))[-1]
    with pytest.raises(ValueError, match="no labels"):
        churn_rates(prov, HARD2, months=[f"{last:%Y-%m}"], home=bank.home)


def test_retention_all_customers_starts_at_one_and_never_rises(bank, prov):
    df = retention_curves(prov, cohort="start_month", home=bank.home)
    months = D.as_of_dates(D.snapshot(bank.home))
    assert df["cohort"].nunique() == len(months)
    for _, c in df.groupby("cohort"):
        c = c.sort_values("months_since")
        assert c["retention"].iloc[0] == 1.0
        assert (c["retention"].diff().dropna() <= 1e-12).all()
    first = df[df["cohort"] == f"{months[0]:%Y-%m}"]
    assert first["months_since"].max() == len(months) - 1 and first["retention"].min() < 1.0
    # month 0's holders = customers with a product at that month-end in the mart
    snap = D.snapshot(bank.home)
    with snap.all_cores() as con:
        n0 = con.sql(
            "SELECT count(*) FROM mart_customer_month WHERE as_of_date = $d AND n_products > 0",
            params={"d": months[0]},
        ).fetchall()[0][0]
    assert first["cohort_size"].iloc[0] == n0


@pytest.mark.parametrize("cohort", ["open_month", "open_quarter"])
def test_retention_new_customer_cohorts(bank, county, cohort):
    df = retention_curves(county, cohort=cohort, home=bank.home)
    assert len(df) and (df["retention"].between(0, 1)).all()
    assert (df["customers"] <= df["cohort_size"]).all() and (df["retained"] <= df["customers"]).all()
    months = D.as_of_dates(D.snapshot(bank.home))
    assert df["months_since"].max() <= len(months) - 1


def test_churners_send_more_money_to_other_banks(bank, prov):
    df = outflow_destinations(prov, HARD2, months=None, home=bank.home)
    assert df.attrs["source"] == "lake"
    assert df.attrs["group_sizes"]["churners"] > 0
    s = {(r["group"], r["period"]): r for r in df.attrs["summary"]}
    for period in ("before", "outcome"):
        assert s[("churners", period)]["other_bank_share"] > s[("stayers", period)]["other_bank_share"]
    # shares add up to 1 within each group and period (summary; the stayers' cells are all shown)
    for r in df.attrs["summary"]:
        assert r["other_bank_share"] + r["own_bank_share"] + r["cash_share"] == pytest.approx(1.0)
    stayers = df[df["group"] == "stayers"]
    assert not stayers["suppressed"].any()
    assert stayers.groupby("period")["share"].sum().to_numpy() == pytest.approx(1.0)
    assert set(df["destination"]) <= {"OTHER_BANK", "OWN_BANK", "CASH"}
    detail = outflow_destinations(prov, HARD2, by="detail", home=bank.home)
    assert {"txn_type", "channel"} <= set(detail.columns)
    assert not set(detail["txn_type"]) & {"INTEREST", "FEE", "JUDICIAL", "SALARY"}


def test_outflows_pooled_over_months(bank, county):
    snap = D.snapshot(bank.home)
    ms = [f"{m:%Y-%m}" for m in labelled_months(D.as_of_dates(snap), HARD2)]
    one = outflow_destinations(county, HARD2, months=ms[-1:], home=bank.home)
    both = outflow_destinations(county, HARD2, months=ms, home=bank.home)
    assert sum(both.attrs["group_sizes"].values()) > sum(one.attrs["group_sizes"].values())


def test_charts_render(bank, prov, tmp_path):
    from cimlib.charts import to_png

    rates = churn_rates(prov, HARD2, by="tenure_cohort", pooled=True, home=bank.home, lang="zh_CN")
    ch = churn_rate_chart(rates, "zh_CN")
    spec = ch.to_dict()
    assert spec["layer"][0]["encoding"]["x"]["field"] == "rate"
    assert len(spec["layer"]) == 3
    ret = retention_curves(prov, cohort="start_month", home=bank.home)
    rc = retention_chart(ret, "en")
    assert rc.to_dict()["encoding"]["y"]["field"] == "retention"
    out = outflow_destinations(prov, HARD2, home=bank.home, lang="zh_CN")
    oc = outflow_chart(out, "zh_CN")
    assert oc.to_dict()["encoding"]["x"]["stack"] == "normalize"
    assert set(oc.data["bar"].str[:4]) == {"流失客户", "留存客户"}
    for name, chart in (("rates", ch), ("retention", rc), ("outflows", oc)):
        png = to_png(chart)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name
        (tmp_path / f"{name}.png").write_bytes(png)


def test_cli_handler(bank, tmp_path):
    """``cim churn analysis`` (registered by cimlib/churn/_cli.py when present)."""
    proc = run_cim(
        "churn",
        "analysis",
        "--as",
        "county_mgr_101",
        "--definition",
        "hard",
        "--by",
        "tenure",
        "--pooled",
        "--json",
        home=bank.home,
        check=False,
    )
    if proc.returncode == 2 and "invalid choice" in proc.stderr:
        pytest.skip("cim churn analysis is not registered in this tree")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["by"] == "tenure_cohort" and out["rows"]
    png = tmp_path / "ret.png"
    proc = run_cim(
        "churn",
        "analysis",
        "--as",
        "prov_analyst",
        "--retention",
        "start_month",
        "--chart",
        str(png),
        home=bank.home,
    )
    assert png.exists() and png.stat().st_size > 5000
    proc = run_cim(
        "churn",
        "analysis",
        "--as",
        "prov_analyst",
        "--definition",
        "hard",
        "--outflows",
        "--json",
        home=bank.home,
    )
    assert json.loads(proc.stdout)["source"] == "lake"


def test_cli_handler_direct(bank, tmp_path, capsys):
    """The handler wired into a parser of its own (as ``cim churn`` will call it)."""
    import argparse

    from cimlib.churn._analysis import add_analysis_parser, cmd_analysis
    from cimlib.config import get_home

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true")
    parser = argparse.ArgumentParser(prog="cim churn")
    add_analysis_parser(parser.add_subparsers(dest="churn_command"), common)
    home = get_home(bank.home)
    args = parser.parse_args(["analysis", "--as", "county_mgr_101", "--by", "segment", "--pooled", "--json"])
    assert cmd_analysis(args, home) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["by"] == "customer_type" and out["rows"] and out["overall"][0]["eligible"] > 0
    png = tmp_path / "out.png"
    args = parser.parse_args(
        ["analysis", "--as", "prov_analyst", "--outflows", "txn_type", "--chart", str(png)]
    )
    assert cmd_analysis(args, home) == 0
    assert "other bank" in capsys.readouterr().out and png.stat().st_size > 5000
    args = parser.parse_args(
        ["analysis", "--as", "prov_analyst", "--retention", "open_month", "--lang", "zh_CN"]
    )
    assert cmd_analysis(args, home) == 0


def test_month_dates_are_dates(bank, prov):
    df = churn_rates(prov, HARD2, home=bank.home)
    assert all(isinstance(m, dt.date) for m in df["as_of"])
