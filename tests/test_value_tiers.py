"""Customer value tiers, quality and potential quality (cimlib.value): golden numbers on a hand-built
warehouse; scope, suppression, masking and audit on the shared bank."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from cimlib.access import NotPermitted, principal_for, read_audit
from cimlib.value import (
    ValueParamsError,
    customer_value,
    customer_value_sql,
    load_value_params,
    migration_chart,
    migration_customers,
    migration_matrix,
    potential_customers,
    potential_summary,
    quality_customers,
    quality_summary,
    tier_chart,
    tier_distribution,
)
from tests.test_value_contribution import PARAMS as BASE_PARAMS

REPO = Path(__file__).resolve().parent.parent
AS_OF = dt.date(2026, 6, 30)
CHANNELS = ("counter", "atm", "pos", "phone", "online", "mobile", "system")

SECTIONS = """\
tiers:
  aum:
    measure: aum_adb
    edges: [50000, 200000]
    tiers:
      - {id: A0, en: "Under 50k", zh: "5万以下"}
      - {id: A1, en: "50k-200k", zh: "5万-20万"}
      - {id: A2, en: "200k and over", zh: "20万及以上"}
  contribution:
    edges_individual: [0, 100]
    edges_corporate: [0, 1000]
    tiers:
      - {id: V0, en: "Negative", zh: "负贡献"}
      - {id: V1, en: "Low", zh: "低贡献"}
      - {id: V2, en: "High", zh: "高贡献"}
quality:
  rules:
    - {id: Q_RICH, en: Rich, zh: 高资产, customer_type: I, min_aum_tier: A2}
    - {id: Q_LOYAL, en: Loyal, zh: 忠诚, customer_type: I, min_aum_tier: A1, min_contribution_tier: V2,
       min_products: 2, min_tenure_months: 12, worst_loan_class: NORMAL}
    - {id: Q_CORP, en: Corp, zh: 对公, customer_type: C, min_contribution_tier: V2}
potential:
  measure: aum_adb
  individual: {age_edges: [40], income_edges: [5000], by_occupation: true}
  corporate: {capital_edges: [1000000], by_industry: true}
  min_group_size: 10
  benchmark_percentile: 0.75
  max_share_of_wallet: 0.3
  min_benchmark_tier: {I: A1, C: A1}
  fallback_to_coarser: true
"""


def _params(tmp_path: Path, text: str | None = None):
    p = tmp_path / "value.yaml"
    p.write_text(text if text is not None else BASE_PARAMS + SECTIONS, encoding="utf-8")
    return load_value_params(path=p)


@pytest.fixture()
def tiny() -> duckdb.DuckDBPyConnection:
    """Individuals P01..P12 (same peer group, ADB 10k..120k), P13 (no occupation), X1, X2 and two corporates.

    No accounts, loans or transactions: each customer's contribution is its fee income of the month.
    """
    con = duckdb.connect()
    con.execute("""
        CREATE TABLE core_deposit_month (customer_id VARCHAR, as_of_date DATE, account_no VARCHAR,
            product_code VARCHAR, account_type VARCHAR, term_months INTEGER, rate DECIMAL(9, 6),
            status VARCHAR, accum_balance DECIMAL(18, 2));
        CREATE TABLE core_loan_month (customer_id VARCHAR, as_of_date DATE, loan_no VARCHAR,
            product_code VARCHAR, rate DECIMAL(9, 6), start_date DATE, maturity_date DATE,
            accum_balance DECIMAL(18, 2), five_class VARCHAR, status VARCHAR);
        CREATE TABLE core_product (product_code VARCHAR, subtype VARCHAR);
        CREATE TABLE mart_fee_month (customer_id VARCHAR, as_of_date DATE, fee_count BIGINT,
            fee_amount DECIMAL(18, 2));
        CREATE TABLE dim_customer (customer_id VARCHAR, customer_type VARCHAR, county_code VARCHAR,
            home_org_code VARCHAR, manager_no VARCHAR, first_open_date DATE, age INTEGER,
            monthly_income DECIMAL(18, 2), occupation VARCHAR, industry VARCHAR,
            registered_capital DECIMAL(18, 2));
    """)
    cols = ", ".join(f"txn_count_{c} BIGINT" for c in CHANNELS)
    con.execute(f"""CREATE TABLE mart_customer_month (customer_id VARCHAR, as_of_date DATE,
        customer_type VARCHAR, deposit_adb DECIMAL(18, 2), wealth_aum DECIMAL(18, 2), aum DECIMAL(18, 2),
        n_products BIGINT, worst_five_class VARCHAR, {cols})""")
    #   id, type, deposit_adb, wealth, n_products, worst class, fee (= contribution), first open, age,
    #   income, occupation, industry, capital
    rows = [(f"P{i:02d}", "I", i * 10000, 0, 1, None, 10, "2020-01-01", 45, 8000, "FARMER", None, None)
            for i in range(1, 10)]
    rows += [
        ("P10", "I", 100000, 0, 3, "NORMAL", 150, "2026-01-01", 45, 8000, "FARMER", None, None),  # tenure 5
        ("P11", "I", 110000, 0, 3, "SPECIAL_MENTION", 150, "2020-01-01", 45, 8000, "FARMER", None, None),
        ("P12", "I", 120000, 0, 3, "NORMAL", 150, "2024-06-30", 45, 8000, "FARMER", None, None),  # tenure 24
        ("P13", "I", 5000, 0, 1, None, 0, "2020-01-01", 45, 8000, None, None, None),
        ("X1", "I", 200000, 50000, 1, "DOUBTFUL", -20, "2020-01-01", 70, None, "RETIRED", None, None),
        ("X2", "I", 50000, 0, 1, None, 100, "2020-01-01", 30, 8000, "FARMER", None, None),
        ("C1", "C", 10000, 0, 2, None, 1000, "2020-01-01", None, None, None, "A", 500000),
        ("C2", "C", 0, 0, 0, None, -5, "2020-01-01", None, None, None, "A", 500000),
    ]
    for cid, typ, adb, w, npr, wc, fee, open_, age, inc, occ, ind, cap in rows:
        con.execute("INSERT INTO mart_customer_month VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, 0, 0)",
                    [cid, AS_OF, typ, adb, w, adb + w, npr, wc])
        con.execute("INSERT INTO dim_customer VALUES (?, ?, '101000', '101001', 'E1', ?, ?, ?, ?, ?, ?)",
                    [cid, typ, dt.date.fromisoformat(open_), age, inc, occ, ind, cap])
        if fee:
            con.execute("INSERT INTO mart_fee_month VALUES (?, ?, 1, ?)", [cid, AS_OF, fee])
    return con


def _frame(con: duckdb.DuckDBPyConnection, params) -> pd.DataFrame:
    return con.sql(customer_value_sql(params), params={"as_of": AS_OF}).df().set_index("customer_id")


def test_golden_tiers_and_quality(tiny, tmp_path):
    v = _frame(tiny, _params(tmp_path))
    assert len(v) == 17
    # AUM for tiering = deposit ADB + wealth: X1 200,000 + 50,000 = 250,000 -> A2; edges are inclusive
    # below: X2 exactly 50,000 -> A1, P05 50,000 -> A1, P04 40,000 -> A0.
    assert v.loc["X1", "aum_adb"] == 250000 and v.loc["X1", "aum_tier"] == "A2"
    assert v.loc["X2", "aum_tier"] == "A1" and v.loc["P05", "aum_tier"] == "A1"
    assert v.loc["P04", "aum_tier"] == "A0" and v.loc["P04", "aum_tier_rank"] == 0
    # Contribution tiers by type: individual edges [0, 100], corporate [0, 1000].
    assert v.loc["X2", "contribution"] == 100 and v.loc["X2", "contribution_tier"] == "V2"
    assert v.loc["P01", "contribution_tier"] == "V1" and v.loc["X1", "contribution_tier"] == "V0"
    assert v.loc["C1", "contribution"] == 1000 and v.loc["C1", "contribution_tier"] == "V2"
    assert v.loc["C2", "contribution_tier"] == "V0"
    # Quality: X1 by Q_RICH (no loan condition, so DOUBTFUL passes); P12 by Q_LOYAL (A1, V2, 3 products,
    # tenure 24, NORMAL); P11 fails Q_LOYAL on the loan class, P10 on tenure (5 months); C1 by Q_CORP.
    rules = v["quality_rule"].dropna().to_dict()
    assert rules == {"X1": "Q_RICH", "P12": "Q_LOYAL", "C1": "Q_CORP"}
    assert v.loc["P10", "tenure_months"] == 5 and v.loc["P12", "tenure_months"] == 24
    assert v["is_quality"].sum() == 3


def test_golden_potential(tiny, tmp_path):
    v = _frame(tiny, _params(tmp_path))
    # Peer group of P01..P12: age >= 40, income >= 5000, FARMER; 12 members >= min_group_size 10.
    # 75th percentile (continuous) of 10k..120k: position 0.75 x 11 = 8.25 -> 90k + 0.25 x 10k = 92,500.
    grp = "I|age >=40|income >=5000|FARMER"
    assert (v.loc[[f"P{i:02d}" for i in range(1, 13)], "peer_group"] == grp).all()
    assert v.loc["P01", "peer_size"] == 12
    assert v.loc["P01", "benchmark"] == pytest.approx(92500.0)
    # Potential: benchmark 92,500 >= A1's edge 50,000 and ADB < 0.3 x 92,500 = 27,750: P01 and P02.
    assert v.loc["P01", "share_of_wallet"] == pytest.approx(10000 / 92500, abs=1e-6)
    assert v.loc["P03", "share_of_wallet"] == pytest.approx(30000 / 92500, abs=1e-6)
    # P13 has no occupation: the coarser group (age x income, P01..P13, 13 members):
    # position 0.75 x 12 = 9 -> the 10th smallest of 5k, 10k, ..., 120k = 90,000; 5,000 / 90,000.
    assert v.loc["P13", "peer_group"] == "I|age >=40|income >=5000"
    assert v.loc["P13", "peer_size"] == 13 and v.loc["P13", "benchmark"] == pytest.approx(90000.0)
    assert set(v.index[v["is_potential"]]) == {"P01", "P02", "P13"}
    # X1 (no income), X2 (a group of one) and the corporates (a group of two) get no benchmark.
    assert v.loc[["X1", "X2", "C1", "C2"], "benchmark"].isna().all()
    assert not v.loc[["X1", "X2", "C1", "C2"], "is_potential"].any()


def test_potential_without_fallback_and_with_a_higher_floor(tiny, tmp_path):
    text = (BASE_PARAMS + SECTIONS).replace("fallback_to_coarser: true", "fallback_to_coarser: false")
    v = _frame(tiny, _params(tmp_path, text))
    assert pd.isna(v.loc["P13", "peer_group"]) and set(v.index[v["is_potential"]]) == {"P01", "P02"}
    text = (BASE_PARAMS + SECTIONS).replace("{I: A1, C: A1}", "{I: A2, C: A1}")  # benchmark must be 200k
    v = _frame(tiny, _params(tmp_path, text))
    assert not v["is_potential"].any()


# ------------------------------------------------------------------------------------------ parameters
def test_repo_parameters_have_every_section():
    p = load_value_params(path=REPO / "parameters" / "value.yaml")
    assert p.tiers is not None and p.tiers.aum.edges == [50000, 200000, 500000, 1000000, 3000000, 6000000]
    assert p.tiers.aum.measure == "aum_adb" and p.quality and p.potential and p.rfm


def test_contribution_only_file_still_loads(tmp_path):
    p = _params(tmp_path, BASE_PARAMS)
    assert p.tiers is None and p.quality is None
    with pytest.raises(ValueParamsError, match="tiers"):
        customer_value_sql(p)


def _line(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


def test_validation_names_key_and_line(tmp_path):
    text = BASE_PARAMS + SECTIONS.replace("edges: [50000, 200000]", "edges: [200000, 50000]")
    with pytest.raises(ValueParamsError) as exc:
        _params(tmp_path, text)
    msg = str(exc.value)
    assert "value.yaml" in msg and "tiers.aum" in msg and "ascending" in msg and "line" in msg, msg

    text = BASE_PARAMS + SECTIONS.replace("min_aum_tier: A2}", "min_aum_tier: A9}")
    with pytest.raises(ValueParamsError) as exc:
        _params(tmp_path, text)
    msg = str(exc.value)
    assert "quality.rules[0].min_aum_tier" in msg and f"line {_line(text, 'A9')}" in msg, msg

    text = BASE_PARAMS + SECTIONS.replace("edges_corporate: [0, 1000]", "edges_corporate: [0]")
    with pytest.raises(ValueParamsError, match="as many edges"):
        _params(tmp_path, text)

    text = BASE_PARAMS + SECTIONS.replace("{I: A1, C: A1}", "{I: A0, C: A1}")
    with pytest.raises(ValueParamsError, match=r"potential\.min_benchmark_tier\.I.*lowest tier"):
        _params(tmp_path, text)

    text = BASE_PARAMS + SECTIONS.replace("min_group_size: 10", "min_group_size: 2")
    with pytest.raises(ValueParamsError, match=r"potential\.min_group_size"):
        _params(tmp_path, text)

    text = BASE_PARAMS + SECTIONS.replace("customer_type: C, min_contribution_tier: V2}", "customer_type: C}")
    with pytest.raises(ValueParamsError, match="no condition"):
        _params(tmp_path, text)

    text = BASE_PARAMS + SECTIONS.replace("measure: aum_adb\n    edges", "measure: \"aum; DROP\"\n    edges")
    with pytest.raises(ValueParamsError, match=r"tiers\.aum\.measure"):
        _params(tmp_path, text)


# ------------------------------------------------------------------------------------------ the bank
@pytest.fixture(scope="module")
def analyst(bank):
    return principal_for("prov_analyst", bank.home)  # all orgs, aggregates only


@pytest.fixture(scope="module")
def analyst_detail(bank, analyst):
    return dataclasses.replace(analyst, detail=True)


@pytest.fixture(scope="module")
def county(bank):
    return principal_for("county_mgr_101", bank.home)


@pytest.fixture(scope="module")
def months(bank, analyst_detail):
    from cimlib.customer import _data as D

    return D.as_of_dates(D.snapshot(bank.home))


def test_bank_value_frame_scoped_and_cached(bank, analyst_detail, county):
    full = customer_value(analyst_detail, home=bank.home)
    fresh = customer_value(analyst_detail, home=bank.home, cache=False)
    pd.testing.assert_frame_equal(full.reset_index(drop=True), fresh.reset_index(drop=True))
    assert full["customer_id"].is_unique and len(full) > 1000
    assert {"cust_name", "id_no", "phone"}.isdisjoint(full.columns)
    mine = customer_value(county, home=bank.home)
    assert 0 < len(mine) < len(full) and (mine["county_code"] == county.org_code).all()
    assert set(mine["customer_id"]) == set(full.loc[full["county_code"] == county.org_code, "customer_id"])
    # aum_adb is deposit ADB + wealth; the tier is its bucket.
    assert (abs(full["aum_adb"] - full["deposit_adb"] - full["wealth_aum"]) < 0.011).all()
    p = load_value_params(bank.home)
    edges = p.tiers.aum.edges
    rank = sum((full["aum_adb"] >= e).astype(int) for e in edges)
    assert (rank == full["aum_tier_rank"]).all()
    assert full["is_quality"].equals(full["quality_rule"].notna())
    assert not (full["is_quality"] & full["is_potential"]).any()


def test_bank_tier_distribution_adds_up(bank, analyst, analyst_detail):
    full = customer_value(analyst_detail, home=bank.home)
    d = tier_distribution(analyst_detail, home=bank.home).set_index("tier")
    counts = full["aum_tier"].value_counts()
    for t in d.index[:-1]:
        assert d.loc[t, "customers"] == counts.get(t, 0)
    assert d.loc["_total", "customers"] == len(full)
    assert d.loc["_total", "aum_adb"] == pytest.approx(full["aum_adb"].sum())
    # Without detail, tiers of 1..min_cell-1 customers are blanked.
    agg = tier_distribution(analyst, home=bank.home).set_index("tier")
    small = [t for t in d.index[:-1] if 0 < d.loc[t, "customers"] < analyst.min_cell]
    assert all(pd.isna(agg.loc[t, "customers"]) for t in small)
    assert set(small) <= set(agg.attrs["suppressed"])
    chart = tier_chart(tier_distribution(analyst, kind="contribution", home=bank.home, lang="zh_CN"), "zh_CN")
    spec = chart.to_dict()
    assert spec["hconcat"][0]["layer"][0]["encoding"]["x"]["field"] == "customers"


def test_bank_migration_matches_the_two_frames(bank, analyst, analyst_detail, months):
    a, b = months[0], months[-1]
    m = migration_matrix(analyst_detail, a.strftime("%Y-%m"), b.strftime("%Y-%m"), home=bank.home)
    fa = customer_value(analyst_detail, a, home=bank.home)[["customer_id", "aum_tier"]]
    fb = customer_value(analyst_detail, b, home=bank.home)[["customer_id", "aum_tier"]]
    j = fa.merge(fb, on="customer_id", how="outer", suffixes=("_a", "_b"))
    j = j.fillna({"aum_tier_a": "NEW", "aum_tier_b": "GONE"})
    ct = pd.crosstab(j["aum_tier_a"], j["aum_tier_b"])
    for r in ct.index:
        for c in ct.columns:
            assert m.loc[r, c] == ct.loc[r, c], (r, c)
    assert m.loc["_total", "_total"] == len(j)
    assert m.loc["NEW", "_total"] == (~j["customer_id"].isin(fa["customer_id"])).sum()
    assert m.attrs["up"] + m.attrs["down"] + m.attrs["same"] + m.loc["NEW", "_total"] + m.loc[
        "_total", "GONE"] == len(j)
    agg = migration_matrix(analyst, a, b, home=bank.home)
    small = (m > 0) & (m < analyst.min_cell)
    assert agg[small].isna().all().all()
    assert migration_chart(agg).to_dict()["layer"][0]["mark"]["type"] == "rect"


def test_bank_migration_cell_is_scoped_masked_audited(bank, analyst, county, months):
    a, b = months[0], months[-1]
    with pytest.raises(NotPermitted):
        migration_customers(analyst, a, b, "A0", "A0", home=bank.home)
    m = migration_matrix(county, a, b, home=bank.home)
    cell = m.drop(index="_total", columns="_total").stack().idxmax()
    lst = migration_customers(county, a, b, cell[0], cell[1], home=bank.home, limit=7)
    assert len(lst) == 7 and lst.attrs["total"] == m.loc[cell[0], cell[1]]
    assert (lst["from_tier"] == cell[0]).all() and (lst["to_tier"] == cell[1]).all()
    # A county manager sees names in clear but ID numbers and phones masked (parameters/access.yaml).
    assert county.sees("name") and not county.sees("id_no") and not county.sees("phone")
    assert all("*" in x for x in lst["id_no"]) and all("*" in x for x in lst["phone"].dropna())
    aud = read_audit(bank.home, principal_for("auditor", bank.home), limit=50)
    acts = aud[aud["action"] == "value_migration_drill"]
    assert {"refused", "ok"} <= set(acts["outcome"])
    with pytest.raises(ValueError, match="unknown cell"):
        migration_customers(county, a, b, "A0", "ZZ", home=bank.home)


def test_bank_quality_and_potential(bank, analyst, analyst_detail, county):
    full = customer_value(analyst_detail, home=bank.home)
    q = quality_summary(analyst_detail, home=bank.home).set_index("rule")
    counts = full["quality_rule"].value_counts()
    assert all(q.loc[r, "customers"] == counts.get(r, 0) for r in q.index)
    ps = potential_summary(analyst_detail, home=bank.home).set_index("customer_type")
    assert ps.loc["I", "potential"] == full.loc[full["customer_type"] == "I", "is_potential"].sum()
    assert ps["assessed"].sum() == full["benchmark"].notna().sum()
    with pytest.raises(NotPermitted):
        quality_customers(analyst, home=bank.home)
    lst = quality_customers(county, home=bank.home, limit=20)
    assert lst["quality_rule"].notna().all() and list(lst["aum_adb"]) == sorted(lst["aum_adb"], reverse=True)
    assert set(lst["customer_id"]) <= set(full.loc[full["county_code"] == county.org_code, "customer_id"])
    pot = potential_customers(county, home=bank.home)
    assert (pot["share_of_wallet"] < load_value_params(bank.home).potential.max_share_of_wallet).all()
