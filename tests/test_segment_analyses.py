"""The specification's distribution analyses: hand-computed shares on a tiny warehouse, totals on the bank."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from cimlib.access import principal_for
from cimlib.segmentation import _analyses as A
from cimlib.segmentation import load_dimensions

ROOT = Path(__file__).resolve().parent.parent
OCT, SEP, AUG = dt.date(2026, 10, 31), dt.date(2026, 9, 30), dt.date(2026, 8, 31)
PARAMS = A.load_analyses_params(path=ROOT / "parameters" / "analyses.yaml")
DIMS = load_dimensions(path=ROOT / "parameters" / "dimensions.yaml")

# Six individuals I1..I6 and four corporates C1..C4; I1-I3, C1, C2 in county 101000.
CUSTOMERS = [
    # id, type, county, age, economic_nature, deposit_adb
    ("I1", "I", "101000", 22, None, 1000),
    ("I2", "I", "101000", 30, None, 2000),
    ("I3", "I", "101000", 31, None, 3000),
    ("I4", "I", "102000", 50, None, 4000),
    ("I5", "I", "102000", 70, None, 5000),
    ("I6", "I", "102000", None, None, 5000),
    ("C1", "C", "101000", None, "PRIVATE", 10000),
    ("C2", "C", "101000", None, "PRIVATE", 10000),
    ("C3", "C", "102000", None, "STATE_OWNED", 10000),
    ("C4", "C", "102000", None, "COLLECTIVE", 10000),
]
#: customer-initiated transactions (Aug, Sep, Oct) of the individuals; C1 has 4 online in October.
CTC = {"I1": (0, 3, 5), "I2": (0, 0, 1), "I3": (0, 2, 0), "I4": (4, 0, 0), "I5": (0, 0, 0), "I6": (0, 0, 0)}
#: October channel counts (counter, atm, pos, phone, online, mobile).
CHAN = {"I1": (2, 0, 0, 0, 0, 3), "I2": (0, 1, 0, 0, 0, 0), "C1": (0, 0, 0, 0, 4, 0)}
#: credit lines: customer -> (line, used, days to expiry)
LINES = {"C1": (1_000_000, 950_000, 20), "C2": (100_000, 100_000, 60), "I1": (200_000, 100_000, 400)}
LOANS = [
    # loan_no, customer, product, form, balance, class, status
    ("L1", "I1", "P_CONS", "CREDIT", 100_000, "NORMAL", "ACTIVE"),
    ("L2", "I2", "P_CONS", "GUARANTEE", 50_000, "SPECIAL_MENTION", "ACTIVE"),
    ("L3", "I3", "P_MORT", "MORTGAGE", 40_000, "SUBSTANDARD", "ACTIVE"),
    ("L4", "C1", "P_CORP", "GUARANTEE", 20_000, "DOUBTFUL", "ACTIVE"),
    ("L5", "C1", "P_CORP", "CREDIT", 200_000, "NORMAL", "ACTIVE"),
    ("L6", "C2", "P_CORP", "PLEDGE", 10_000, "LOSS", "ACTIVE"),
    ("L7", "I4", "P_CONS", "CREDIT", 0, "NORMAL", "SETTLED"),
]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    # The segment base joins the month's contribution (cimlib.segmentation.prepare defines it from
    # parameters/value.yaml over the warehouse); this fixture has no accounts, so nobody has one.
    c.execute(
        "CREATE MACRO cim_contribution_at(d) AS TABLE "
        "SELECT CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS DECIMAL(18, 2)) AS contribution "
        "WHERE FALSE"
    )
    c.execute(
        "CREATE TABLE dim_customer (customer_id VARCHAR, customer_type VARCHAR, county_code VARCHAR, "
        "home_org_code VARCHAR, manager_no VARCHAR, age INTEGER, monthly_income DECIMAL(18,2), "
        "education VARCHAR, occupation VARCHAR, sex VARCHAR, economic_nature VARCHAR, "
        "enterprise_form VARCHAR, "
        "industry VARCHAR)"
    )
    c.execute(
        "CREATE TABLE mart_customer_month (customer_id VARCHAR, as_of_date DATE, customer_type VARCHAR, "
        "deposit_adb DECIMAL(18,2), deposit_balance DECIMAL(18,2), aum DECIMAL(18,2), "
        "loan_balance DECIMAL(18,2), "
        "npl_balance DECIMAL(18,2), n_products BIGINT, txn_count HUGEINT, txn_amount DECIMAL(18,2), "
        "customer_txn_count HUGEINT, customer_txn_amount DECIMAL(18,2), credit_line_amount DECIMAL(18,2), "
        "credit_line_used DECIMAL(18,2), worst_five_class VARCHAR, txn_count_counter HUGEINT, "
        "txn_count_atm HUGEINT, txn_count_pos HUGEINT, txn_count_phone HUGEINT, txn_count_online HUGEINT, "
        "txn_count_mobile HUGEINT)"
    )
    c.execute(
        "CREATE TABLE core_loan_month (loan_no VARCHAR, customer_id VARCHAR, as_of_date DATE, "
        "product_code VARCHAR, loan_form VARCHAR, balance DECIMAL(18,2), five_class VARCHAR, status VARCHAR)"
    )
    c.execute("CREATE TABLE core_product (product_code VARCHAR, subtype VARCHAR)")
    c.execute(
        "CREATE TABLE core_deposit_month (customer_id VARCHAR, as_of_date DATE, product_code VARCHAR, "
        "balance DECIMAL(18,2), status VARCHAR)"
    )
    c.execute(
        "CREATE TABLE core_credit_line_month (customer_id VARCHAR, as_of_date DATE, "
        "line_amount DECIMAL(18,2), "
        "used_amount DECIMAL(18,2), expiry_date DATE, status VARCHAR)"
    )
    c.execute("CREATE TABLE ref_five_class (code VARCHAR, rank INTEGER, npl BOOLEAN)")
    c.executemany(
        "INSERT INTO ref_five_class VALUES (?, ?, ?)",
        [(k, i + 1, i >= 2) for i, k in enumerate(A.FIVE_CLASSES)],
    )
    c.executemany(
        "INSERT INTO core_product VALUES (?, ?)",
        [("P_CONS", "CONSUMER"), ("P_MORT", "MORTGAGE"), ("P_CORP", "CORPORATE"), ("P_DEM", "DEMAND"),
         ("P_TIME", "TIME")],
    )  # fmt: skip
    for cid, ctype, county, age, nature, adb in CUSTOMERS:
        c.execute(
            "INSERT INTO dim_customer VALUES (?, ?, ?, ?, 'E1', ?, NULL, NULL, NULL, NULL, ?, NULL, NULL)",
            [cid, ctype, county, county[:3] + "001", age, nature],
        )
        loans = [x for x in LOANS if x[1] == cid and x[4] > 0]
        bal = sum(x[4] for x in loans)
        npl = sum(x[4] for x in loans if x[5] in ("SUBSTANDARD", "DOUBTFUL", "LOSS"))
        line, used, _ = LINES.get(cid, (0, 0, 0))
        for k, month in enumerate((AUG, SEP, OCT)):
            ctc = CTC.get(cid, (0, 0, 4 if cid == "C1" else 0))[k]
            chan = CHAN.get(cid, (0,) * 6) if month == OCT else (0,) * 6
            c.execute(
                "INSERT INTO mart_customer_month VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, 0, ?, 0, ?, ?, NULL, "
                "?, ?, ?, ?, ?, ?)",
                [cid, month, ctype, adb, adb, adb, bal, npl, ctc, ctc, line, used, *chan],
            )
    c.executemany(
        "INSERT INTO core_loan_month VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(no, cid, OCT, prod, form, bal, cls, st) for no, cid, prod, form, bal, cls, st in LOANS],
    )
    c.executemany(
        "INSERT INTO core_deposit_month VALUES (?, ?, ?, ?, ?)",
        [("I1", OCT, "P_DEM", 1000, "NORMAL"), ("I1", OCT, "P_TIME", 5000, "NORMAL"),
         ("I2", OCT, "P_DEM", 3000, "NORMAL"), ("C1", OCT, "P_DEM", 10000, "DORMANT"),
         ("I3", OCT, "P_DEM", 999, "CLOSED")],
    )  # fmt: skip
    c.executemany(
        "INSERT INTO core_credit_line_month VALUES (?, ?, ?, ?, ?, 'ACTIVE')",
        [(cid, OCT, ln, u, OCT + dt.timedelta(days=d)) for cid, (ln, u, d) in LINES.items()],
    )
    c.execute("INSERT INTO core_credit_line_month VALUES ('I2', ?, 50000, 0, ?, 'EXPIRED')", [OCT, OCT])
    return c


def _row(df: pd.DataFrame, key: str, value: str) -> pd.Series:
    return df[df[key] == value].iloc[0]


# ------------------------------------------------------------------------------------- (a) small fixture
def test_corporate_by_economic_nature_shares(con: duckdb.DuckDBPyConnection) -> None:
    df = A.distribution_core(con, OCT, DIMS["economic_nature"], customer_type="C")
    # C1, C2 private; C3 state-owned; C4 collective: 2/4, 1/4, 1/4, every other member 0
    assert _row(df, "member", "PRIVATE")["customer_share"] == 0.5
    assert _row(df, "member", "STATE_OWNED")["customer_share"] == 0.25
    assert _row(df, "member", "COLLECTIVE")["customers"] == 1
    assert df["customers"].sum() == 4 and list(df["member"])[:3] == ["STATE_OWNED", "COLLECTIVE", "PRIVATE"]
    # loans: C1 220,000 + C2 10,000 = 230,000, all private
    assert _row(df, "member", "PRIVATE")["loan_balance"] == 230_000 and df["loan_balance_share"].max() == 1.0


def test_individuals_by_age_band(con: duckdb.DuckDBPyConnection) -> None:
    df = A.distribution_core(con, OCT, DIMS["age"], customer_type="I", lang="zh_CN")
    # ages 22 | 30, 31 | 50 | 70 | unknown: AGE1 holds 2 of 6; ADB 2,000 + 3,000 of 20,000 = 0.25
    age1 = _row(df, "member", "AGE1")
    assert age1["customers"] == 2 and age1["customer_share"] == pytest.approx(2 / 6)
    assert age1["deposit_adb"] == 5000 and age1["deposit_adb_share"] == 0.25
    assert _row(df, "member", "AGE_NA")["customers"] == 1 and _row(df, "member", "AGE2")["customers"] == 0
    assert age1["label"] == "25-34岁"


def test_loan_quality_npl_provisions_and_coverage(con: duckdb.DuckDBPyConnection) -> None:
    df = A.loan_quality_core(con, OCT, PARAMS.provision_rates)
    # balances (L7 settled, no balance, excluded): normal 100,000 + 200,000; special mention 50,000;
    # substandard 40,000; doubtful 20,000; loss 10,000; total 420,000
    assert list(df["balance"]) == [300_000, 50_000, 40_000, 20_000, 10_000]
    assert list(df["loans"]) == [2, 1, 1, 1, 1]
    # customers by worst class: I1 normal, I2 special mention, I3 substandard, C1 doubtful (its worse
    # loan), C2 loss: one each of five
    assert list(df["customers"]) == [1, 1, 1, 1, 1] and list(df["customer_share"]) == [0.2] * 5
    # provisions: 50,000 x 2% = 1,000; 40,000 x 25% = 10,000; 20,000 x 50% = 10,000; 10,000 x 100%
    assert list(df["provision"]) == [0, 1_000, 10_000, 10_000, 10_000]
    s = df.attrs["summary"]
    assert s["loan_balance"] == 420_000 and s["npl_balance"] == 70_000
    assert s["npl_ratio"] == pytest.approx(70_000 / 420_000)  # 1/6
    assert s["provisions"] == 31_000
    assert s["provision_coverage"] == pytest.approx(31_000 / 70_000)  # 0.442857
    assert df["balance_share"].sum() == pytest.approx(1.0)


def test_loan_forms_and_products(con: duckdb.DuckDBPyConnection) -> None:
    df = A.loan_products_core(con, OCT, group="loan_form")
    # credit: L1 100,000 + L5 200,000 (2 loans, I1 and C1); guarantee: L2 + L4 = 70,000; mortgage 40,000;
    # pledge 10,000; five loan customers
    credit = _row(df, "code", "CREDIT")
    assert (credit["loans"], credit["customers"], credit["balance"]) == (2, 2, 300_000)
    assert credit["balance_share"] == pytest.approx(300_000 / 420_000)
    assert credit["holder_rate"] == pytest.approx(2 / 5) and credit["loan_share"] == pytest.approx(2 / 6)
    assert _row(df, "code", "GUARANTEE")["balance"] == 70_000
    prod = A.loan_products_core(con, OCT, group="subtype")
    assert _row(prod, "code", "CORPORATE")["balance"] == 230_000
    assert prod["loan_share"].sum() == pytest.approx(1.0)


def test_deposit_product_holdings(con: duckdb.DuckDBPyConnection) -> None:
    df = A.deposit_products_core(con, OCT)
    # open accounts: demand I1 1,000, I2 3,000, C1 10,000 (dormant is open); time I1 5,000; I3's closed out
    dem, tim = _row(df, "code", "DEMAND"), _row(df, "code", "TIME")
    assert (dem["accounts"], dem["customers"], dem["balance"]) == (3, 3, 14_000)
    assert dem["balance_share"] == pytest.approx(14_000 / 19_000) and dem["holder_rate"] == 1.0
    assert tim["holder_rate"] == pytest.approx(1 / 3) and dem["account_share"] == 0.75


def test_credit_line_utilisation_and_expiry(con: duckdb.DuckDBPyConnection) -> None:
    u = A.credit_utilisation_core(con, OCT, PARAMS.credit_line)
    # I1 100,000 / 200,000 = 50% (U1); C1 95% (U3, early warning); C2 100% (U4, at the line)
    assert list(u["customers"]) == [0, 1, 0, 1, 1]
    assert _row(u, "band", "U3")["utilisation"] == 0.95
    assert u["customer_share"].sum() == pytest.approx(1.0)
    e = A.credit_expiry_core(con, OCT, PARAMS.credit_line)
    # active lines expire in 20 (C1), 60 (C2) and 400 days (I1); I2's expired line is not active
    assert list(e["band"]) == ["E30", "E90", "E180", "LATER"]
    assert list(e["lines"]) == [1, 1, 0, 1]
    assert _row(e, "band", "E30")["line_amount_share"] == pytest.approx(1_000_000 / 1_300_000)


def test_rfm_scores_and_segments(con: duckdb.DuckDBPyConnection) -> None:
    s = A.rfm_scores_core(con, OCT, PARAMS.rfm).set_index("customer_id")
    ind = s[s["customer_type"] == "I"]
    # R months since last active month: I1 0, I2 0, I3 1, I4 2, I5 and I6 never (3 months seen)
    assert list(ind["recency"]) == [0, 0, 1, 2, 3, 3]
    # F over Aug-Oct: 8, 1, 2, 4, 0, 0; M = ADB 1,000 .. 5,000
    assert list(ind["frequency"]) == [8, 1, 2, 4, 0, 0]
    # scores = ceil(5 x share of the type at or below the value), best R (0) ranked last:
    # R: 3 -> 2/6 -> 2; 2 -> 3/6 -> 3; 1 -> 4/6 -> 4; 0 -> 5
    assert list(ind["r_score"]) == [5, 5, 4, 3, 2, 2]
    # F: 0 -> 2/6 -> 2; 1 -> 3; 2 -> 4; 4 -> 5/6 -> 5; 8 -> 5
    assert list(ind["f_score"]) == [5, 3, 4, 5, 2, 2]
    assert list(ind["m_score"]) == [1, 2, 3, 4, 5, 5]
    seg = A.rfm_segments_core(con, OCT, PARAMS.rfm, customer_type="I").set_index("segment")
    # high = score >= 4: I1 HHL, I3 HHL (general value); I2 HLL (general develop); I4 LHH (retain);
    # I5, I6 LLH (win back, ADB 10,000 of 20,000)
    assert seg["customers"].to_dict() == {
        "VALUE": 0, "RETAIN": 1, "DEVELOP": 0, "WIN_BACK": 2, "G_VALUE": 2, "G_RETAIN": 0, "G_DEVELOP": 1,
        "G_WIN_BACK": 0,
    }  # fmt: skip
    assert seg.loc["WIN_BACK", "monetary_share"] == 0.5 and seg.loc["G_VALUE", "monetary"] == 4000


def test_channel_mix(con: duckdb.DuckDBPyConnection) -> None:
    df = A.channel_mix_core(con, OCT, DIMS["customer_type"])
    ind = df[df["member"] == "I"].set_index("channel")
    # individuals: counter 2, ATM 1, mobile 3 of 6; two active customers; corporates: C1 all online
    assert ind["share"].to_dict() == {
        "COUNTER": 2 / 6, "ATM": 1 / 6, "POS": 0.0, "PHONE": 0.0, "ONLINE": 0.0, "MOBILE": 3 / 6,
    }  # fmt: skip
    assert set(ind["customers"]) == {2}
    assert _row(df[df["member"] == "C"], "channel", "ONLINE")["share"] == 1.0


def test_scope_limits_every_core(con: duckdb.DuckDBPyConnection) -> None:
    scope = ("d.county_code = ?", ("101000",))
    df = A.distribution_core(con, OCT, DIMS["customer_type"], scope=scope)
    assert df["customers"].sum() == 5  # I1-I3, C1, C2
    q = A.loan_quality_core(con, OCT, PARAMS.provision_rates, scope=scope)
    assert q.attrs["summary"]["loan_balance"] == 420_000  # every loan is in 101000
    assert A.deposit_products_core(con, OCT, scope=("d.county_code = ?", ("102000",))).empty


def test_suppress_small_blanks_and_protects_the_complement() -> None:
    agg = dataclasses.replace(principal_for("prov_analyst"), detail=False)
    shares = [0.15, 0.5, 0.35, 0.0]
    df = pd.DataFrame({"member": list("abcd"), "customers": [3, 10, 7, 0], "customer_share": shares})
    out = A.suppress_small(df, agg)
    # a (3 < 5) is small; alone it could be derived from the rest, so c (the next smallest) goes too
    assert list(out["suppressed"]) == [True, False, True, False]
    assert math.isnan(out.loc[0, "customer_share"]) and math.isnan(out.loc[2, "customers"])
    assert out.loc[1, "customers"] == 10 and out.loc[3, "customers"] == 0
    full = A.suppress_small(df, dataclasses.replace(agg, detail=True, scope="all"))
    assert not full["suppressed"].any() and full["customers"].tolist() == [3, 10, 7, 0]


def test_parameters_reject_unknown_keys_and_gaps(tmp_path: Path) -> None:
    text = (ROOT / "parameters" / "analyses.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "analyses.yaml"
    bad.write_text(text.replace("  LOSS: 1.00", "  LOSS: 1.00\n  WRITTEN_OFF: 1.0"), encoding="utf-8")
    with pytest.raises(A.AnalysesError, match="WRITTEN_OFF"):
        A.load_analyses_params(path=bad)
    bad.write_text(text.replace("min: 0.3, max: 0.6}", "min: 0.35, max: 0.6}"), encoding="utf-8")
    with pytest.raises(A.AnalysesError, match="not contiguous"):
        A.load_analyses_params(path=bad)
    assert PARAMS.provision_rates.SUBSTANDARD == 0.25 and PARAMS.provision_rates.SPECIAL_MENTION == 0.02


# ----------------------------------------------------------------------------------- (b)-(d) on the bank
@pytest.fixture(scope="module")
def mart(bank) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    con = duckdb.connect()
    from cimlib.customer import _data as D

    snap = D.snapshot(bank.home)
    as_of = D.resolve_as_of(snap, None)
    with snap.lock:
        df = snap.con.execute(
            "SELECT m.*, d.county_code FROM mart_customer_month m JOIN dim_customer d USING (customer_id) "
            "WHERE m.as_of_date = ?",
            [as_of],
        ).df()
    con.close()
    return df


def _full(bank):  # type: ignore[no-untyped-def]
    return dataclasses.replace(principal_for("prov_analyst", bank.home), detail=True)


def test_bank_shares_sum_to_one_and_totals_match_the_mart(  # type: ignore[no-untyped-def]
    bank, mart: pd.DataFrame
) -> None:
    p, h = _full(bank), bank.home
    n = len(mart)
    for by in ("customer_type", "county", "branch"):
        df = A.deposit_loan_totals(p, home=h, by=by)
        assert df["customers"].sum() == n and df["customer_share"].sum() == pytest.approx(1.0)
        for m in ("deposit_adb", "deposit_balance", "aum", "loan_balance", "npl_balance", "txn_amount"):
            assert df[m].sum() == pytest.approx(float(mart[m].sum()), rel=1e-9)
        for m in A.SHARED:
            assert df[f"{m}_share"].sum() == pytest.approx(1.0)
    for by in ("txn_count", "txn_amount"):
        assert A.transaction_distribution(p, home=h, by=by)["customers"].sum() == n
    corp = A.corporate_customers(p, home=h, by="enterprise_form")
    assert corp["customers"].sum() == (mart["customer_type"] == "C").sum()
    for by in ("age", "education", "monthly_income"):
        ind = A.individual_customers(p, home=h, by=by)
        assert ind["customers"].sum() == (mart["customer_type"] == "I").sum()
        assert ind["customer_share"].sum() == pytest.approx(1.0)
    q = A.loan_quality(p, home=h)
    assert q.attrs["summary"]["loan_balance"] == pytest.approx(float(mart["loan_balance"].sum()))
    assert q.attrs["summary"]["npl_balance"] == pytest.approx(float(mart["npl_balance"].sum()))
    assert q["customers"].sum() == (mart["loan_balance"] > 0).sum()
    assert A.loan_forms(p, home=h)["balance"].sum() == pytest.approx(float(mart["loan_balance"].sum()))
    lp = A.loan_product_holdings(p, home=h)
    assert lp["balance_share"].sum() == pytest.approx(1.0) and lp["loan_share"].sum() == pytest.approx(1.0)
    dp = A.deposit_product_holdings(p, home=h)
    assert dp["balance"].sum() == pytest.approx(float(mart["deposit_balance"].sum()))
    u = A.credit_line_utilisation(p, home=h)
    assert u["credit_line_amount"].sum() == pytest.approx(float(mart["credit_line_amount"].sum()))
    assert u["customers"].sum() == (mart["credit_line_amount"] > 0).sum()
    amounts = A.credit_line_amounts(p, home=h)
    assert amounts["customers"].sum() == (mart["credit_line_amount"] > 0).sum()
    assert A.credit_line_expiry(p, home=h)["line_share"].sum() == pytest.approx(1.0)
    rfm = A.rfm_segments(p, home=h)
    assert rfm["customers"].sum() == n and rfm["monetary_share"].sum() == pytest.approx(1.0)
    ch = A.channel_preference(p, home=h, by="customer_type")
    assert ch["txn_count"].sum() == mart["customer_txn_count"].sum()
    assert ch.groupby("member")["share"].sum().tolist() == pytest.approx([1.0, 1.0])
    by_age = A.channel_preference(p, home=h, by="age").groupby("member")["share"].sum()
    assert by_age.max() == pytest.approx(1)


def test_county_manager_sees_their_county(bank, mart: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    mgr = principal_for("county_mgr_101", bank.home)
    mine = mart[mart["county_code"] == "101000"]
    df = A.deposit_loan_totals(mgr, home=bank.home, by="county")
    got = df[df["customers"] > 0]
    assert list(got["member"]) == ["101000"] and got["customers"].iloc[0] == len(mine)
    assert got["deposit_adb"].iloc[0] == pytest.approx(float(mine["deposit_adb"].sum()))
    q = A.loan_quality(mgr, home=bank.home)
    assert q.attrs["summary"]["loan_balance"] == pytest.approx(float(mine["loan_balance"].sum()))
    assert A.rfm_segments(mgr, home=bank.home)["customers"].sum() == len(mine)


def test_provincial_analyst_small_groups_are_suppressed(bank) -> None:  # type: ignore[no-untyped-def]
    prov = principal_for("prov_analyst", bank.home)
    assert not prov.can_view_detail
    full = A.loan_quality(_full(bank), home=bank.home)
    agg = A.loan_quality(prov, home=bank.home)
    small = (full["customers"] > 0) & (full["customers"] < 5)
    assert small.any()  # the test bank has a few doubtful / loss customers
    assert agg.loc[small, "suppressed"].all()
    assert agg.loc[agg["suppressed"], ["customers", "balance", "balance_share"]].isna().all().all()
    ok = ~agg["suppressed"]
    assert (agg.loc[ok, "customers"] == full.loc[ok, "customers"]).all()
    tx = A.transaction_distribution(prov, home=bank.home)
    assert not ((tx["customers"] > 0) & (tx["customers"] < 5)).any()


# -------------------------------------------------------------------------------------------- (e) charts
def test_distribution_chart_data_and_encodings(con: duckdb.DuckDBPyConnection) -> None:
    df = A.distribution_core(con, OCT, DIMS["age"], customer_type="I", lang="zh_CN")
    df.attrs["title"] = "年龄"
    chart = A.distribution_chart(df, "zh_CN")
    spec = chart.to_dict()
    assert spec["mark"]["type"] == "bar" and spec["title"] == "年龄"
    enc = spec["encoding"]
    assert (enc["y"]["field"], enc["y"]["type"]) == ("group", "nominal")
    assert (enc["x"]["field"], enc["x"]["type"]) == ("value", "quantitative")
    assert enc["y"]["sort"] == list(df["label"])
    assert list(chart.data["value"]) == list(df["customers"].astype(float))
    money = A.distribution_chart(df, "zh_CN", value="deposit_adb").data
    assert money.loc[money["group"] == "25-34岁", "value"].iloc[0] == 0.5  # 5,000 yuan = 0.5 万元
    x_enc = A.distribution_chart(df, "zh_CN", value="deposit_adb").to_dict()["encoding"]["x"]
    assert "万元" in x_enc["title"]
    empty = A.distribution_chart(df.iloc[0:0], "en")
    assert len(empty.data) == 0


def test_channel_mix_chart_and_png(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    from cimlib import charts

    df = A.channel_mix_core(con, OCT, DIMS["customer_type"], lang="zh_CN")
    chart = A.channel_mix_chart(df, "zh_CN", title="渠道偏好")
    enc = chart.to_dict()["encoding"]
    assert enc["x"]["field"] == "share" and enc["x"]["stack"] == "normalize"
    assert enc["color"]["field"] == "channel" and enc["y"]["field"] == "group"
    assert set(chart.data["group"]) == {"个人", "对公"} and len(chart.data) == 12
    assert charts.to_png(chart)[:8] == b"\x89PNG\r\n\x1a\n"


def test_pos_spending_by_merchant_category_per_segment(bank) -> None:  # type: ignore[no-untyped-def]
    """Consumption propensity: every segment's MCC shares sum to 1, and the amounts are the county's."""
    import json

    who = principal_for("county_mgr_101", bank.home)
    df = A.pos_spending(who, "2026-10", by="age", home=bank.home, lang="zh_CN")
    assert len(df) and set(df["dimension"]) == {"age"}
    for _, part in df.groupby("member"):
        assert part["share"].sum() == pytest.approx(1.0)
    cur = json.loads((bank.home / "data" / "warehouse" / "CURRENT").read_text())
    con = duckdb.connect(cur["path"], read_only=True)
    want = con.execute(
        "SELECT sum(p.pos_amount) FROM mart_pos_mcc_month p JOIN dim_customer d USING (customer_id) "
        "WHERE p.as_of_date = DATE '2026-10-31' AND d.county_code = '101000' AND d.customer_type = 'I'"
    ).fetchone()[0]
    assert df["pos_amount"].sum() == pytest.approx(float(want))
    assert all(lab != code for lab, code in zip(df["mcc_label"], df["mcc"], strict=True))  # labelled
    chart = A.pos_spending_chart(df, "zh_CN").to_dict()
    assert chart["encoding"]["color"]["field"] == "channel"
