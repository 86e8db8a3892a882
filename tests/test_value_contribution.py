"""Contribution by FTP (cimlib.value): golden numbers on a hand-built warehouse; the bank's figures add up."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pytest

from cimlib.access import NotPermitted, principal_for
from cimlib.customer import _data as D
from cimlib.value import (
    ValueParamsError,
    contribution,
    contribution_by_product,
    contribution_by_product_sql,
    contribution_sql,
    load_value_params,
)

REPO = Path(__file__).resolve().parent.parent
AS_OF = dt.date(2026, 6, 30)

PARAMS = """\
version: 1
deposit_ftp:
  DEMAND: 0.02
  TIME:
    - {max_term_months: 12, rate: 0.03}
    - {max_term_months: 36, rate: 0.04}
loan_ftp:
  lpr_1y: 0.03
  lpr_5y: 0.04
  spread: {CONSUMER: 0.0, BUSINESS: 0.01, MORTGAGE: -0.005, AGRI: 0.0, CORPORATE: 0.0, OTHER: 0.0}
operating_cost:
  per_deposit_account_month: 2
  per_loan_month: 30
  per_transaction: {COUNTER: 5, ATM: 0, POS: 0, PHONE: 0, ONLINE: 0, MOBILE: 0.5, SYSTEM: 0}
expected_loss:
  include_expected_loss: true
  rates: {NORMAL: 0.01, SPECIAL_MENTION: 0.05, SUBSTANDARD: 0.25, DOUBTFUL: 0.5, LOSS: 1.0}
"""

CHANNELS = ("counter", "atm", "pos", "phone", "online", "mobile", "system")


def _params(tmp_path: Path, text: str = PARAMS, name: str = "value.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return load_value_params(path=p)


@pytest.fixture()
def tiny() -> duckdb.DuckDBPyConnection:
    """Three customers in June 2026 (30 days); accumulated balances chosen so that / 365 is round."""
    con = duckdb.connect()
    con.execute("""
        CREATE TABLE core_deposit_month (customer_id VARCHAR, as_of_date DATE, account_no VARCHAR,
            product_code VARCHAR, account_type VARCHAR, term_months INTEGER, rate DECIMAL(9, 6),
            status VARCHAR, accum_balance DECIMAL(18, 2));
        INSERT INTO core_deposit_month VALUES
            ('A', DATE '2026-06-30', 'DD01', 'DP0001', 'DEMAND', NULL, 0.0035, 'ACTIVE', 3650000),
            ('A', DATE '2026-06-30', 'TD01', 'DP0002', 'TIME', 24, 0.025, 'ACTIVE', 7300000),
            ('A', DATE '2026-05-31', 'DD01', 'DP0001', 'DEMAND', NULL, 0.0035, 'ACTIVE', 99999999),
            ('B', DATE '2026-06-30', 'TD02', 'DP0003', 'TIME', 3, 0.011, 'ACTIVE', 3650000),
            ('B', DATE '2026-06-30', 'DD02', 'DP0001', 'DEMAND', NULL, 0.0035, 'CLOSED', 0);
        CREATE TABLE core_loan_month (customer_id VARCHAR, as_of_date DATE, loan_no VARCHAR,
            product_code VARCHAR, rate DECIMAL(9, 6), start_date DATE, maturity_date DATE,
            accum_balance DECIMAL(18, 2), five_class VARCHAR, status VARCHAR);
        INSERT INTO core_loan_month VALUES
            ('A', DATE '2026-06-30', 'LN01', 'LN0001', 0.055, DATE '2025-01-01', DATE '2028-01-01',
             18250000, 'NORMAL', 'ACTIVE'),
            ('B', DATE '2026-06-30', 'LN02', 'LN0002', 0.039, DATE '2020-01-01', DATE '2040-01-01',
             36500000, 'SPECIAL_MENTION', 'ACTIVE');
        CREATE TABLE core_product (product_code VARCHAR, subtype VARCHAR);
        INSERT INTO core_product VALUES ('DP0001', 'DEMAND'), ('DP0002', 'TIME'), ('DP0003', 'TIME'),
            ('LN0001', 'BUSINESS'), ('LN0002', 'MORTGAGE');
        CREATE TABLE mart_fee_month (customer_id VARCHAR, as_of_date DATE, fee_count BIGINT,
            fee_amount DECIMAL(18, 2));
        INSERT INTO mart_fee_month VALUES ('A', DATE '2026-06-30', 3, 12.50), ('A', DATE '2026-05-31', 1, 99);
    """)
    cols = ", ".join(f"txn_count_{c} BIGINT" for c in CHANNELS)
    con.execute(f"CREATE TABLE mart_customer_month (customer_id VARCHAR, as_of_date DATE, {cols})")
    #                    counter atm pos phone online mobile system
    for cid, counts in (("A", (2, 0, 0, 0, 0, 10, 4)), ("B", (1, 0, 0, 0, 0, 0, 0)), ("C", (0,) * 7)):
        con.execute("INSERT INTO mart_customer_month VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [cid, AS_OF, *counts])
    return con


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    cur = con.execute(sql, {"as_of": AS_OF})
    names = [d[0] for d in cur.description]
    return {tuple(r[:2]) if "product_code" in names else r[0]: dict(zip(names, r, strict=True))
            for r in cur.fetchall()}


def test_golden_contribution(tiny, tmp_path):
    rows = _rows(tiny, contribution_sql(_params(tmp_path)))
    assert set(rows) == {"A", "B", "C"}
    d = Decimal
    # A, June (30 days; amounts = accumulated balance x annual rate / 365):
    #   demand DD01: FTP 0.02;  3,650,000 x (0.02 - 0.0035) / 365 = 10,000 x 0.0165 = 165.00
    #   time TD01 (24 months -> FTP 0.04): 7,300,000 x (0.04 - 0.025) / 365 = 20,000 x 0.015 = 300.00
    #   deposit NII = 465.00
    #   loan LN01 BUSINESS, 36 months -> LPR 1y 0.03 + 0.01 = 0.04: 18,250,000 x (0.055 - 0.04) / 365
    #     = 50,000 x 0.015 = 750.00;  expected loss NORMAL 50,000 x 0.01 = 500.00
    #   fees 12.50 (the May row is ignored)
    #   cost: 2 open accounts x 2 + 1 loan x 30 + 2 counter x 5 + 10 mobile x 0.5 + 4 system x 0 = 49.00
    #   contribution = 465 + 750 + 12.50 - 49 - 500 = 678.50
    assert rows["A"] == {"customer_id": "A", "deposit_nii": d("465.00"), "loan_nii": d("750.00"),
                         "fee_income": d("12.50"), "operating_cost": d("49.00"),
                         "expected_loss": d("500.00"), "contribution": d("678.50")}
    # B: time TD02 (3 months -> 0.03): 3,650,000 x (0.03 - 0.011) / 365 = 10,000 x 0.019 = 190.00;
    #   DD02 closed: 0 NII, no account cost
    #   loan LN02 MORTGAGE, 240 months -> LPR 5y 0.04 - 0.005 = 0.035: 36,500,000 x (0.039 - 0.035) / 365
    #     = 100,000 x 0.004 = 400.00;  expected loss SPECIAL_MENTION 100,000 x 0.05 = 5,000.00
    #   cost: 1 x 2 + 1 x 30 + 1 counter x 5 = 37.00
    #   contribution = 190 + 400 - 37 - 5000 = -4,447.00
    assert rows["B"] == {"customer_id": "B", "deposit_nii": d("190.00"), "loan_nii": d("400.00"),
                         "fee_income": d("0.00"), "operating_cost": d("37.00"),
                         "expected_loss": d("5000.00"), "contribution": d("-4447.00")}
    # C: nothing that month.
    assert all(rows["C"][c] == 0 for c in rows["C"] if c != "customer_id")


def test_golden_without_expected_loss(tiny, tmp_path):
    text = PARAMS.replace("include_expected_loss: true", "include_expected_loss: false")
    rows = _rows(tiny, contribution_sql(_params(tmp_path, text)))
    # Expected loss is still reported, but not subtracted: 678.50 + 500 and -4,447 + 5,000.
    assert rows["A"]["expected_loss"] == Decimal("500.00")
    assert rows["A"]["contribution"] == Decimal("1178.50")
    assert rows["B"]["contribution"] == Decimal("553.00")


def test_golden_by_product(tiny, tmp_path):
    rows = _rows(tiny, contribution_by_product_sql(_params(tmp_path)))
    got = {k: (r["subtype"], r["contribution"]) for k, r in rows.items()}
    assert got == {
        ("A", "DP0001"): ("DEMAND", Decimal("163.00")),  # 165 - 2
        ("A", "DP0002"): ("TIME", Decimal("298.00")),  # 300 - 2
        ("A", "LN0001"): ("BUSINESS", Decimal("220.00")),  # 750 - 30 - 500
        ("A", None): (None, Decimal("-2.50")),  # fees 12.50 - transactions 15
        ("B", "DP0003"): ("TIME", Decimal("188.00")),  # 190 - 2
        ("B", "DP0001"): ("DEMAND", Decimal("0.00")),  # closed
        ("B", "LN0002"): ("MORTGAGE", Decimal("-4630.00")),  # 400 - 30 - 5000
        ("B", None): (None, Decimal("-5.00")),  # 1 counter transaction
    }
    assert rows[("A", None)]["fee_income"] == Decimal("12.50")
    assert rows[("A", None)]["operating_cost"] == Decimal("15.00")


# ------------------------------------------------------------------------------------------ parameters
def test_repo_parameters_load():
    p = load_value_params(path=REPO / "parameters" / "value.yaml")
    assert p.operating_cost.per_transaction.COUNTER > 10 * p.operating_cost.per_transaction.MOBILE
    assert p.loan_ftp.lpr_5y >= p.loan_ftp.lpr_1y


def test_validation_names_key_and_line(tmp_path):
    bad = PARAMS.replace("  DEMAND: 0.02", "  DEMAND: 1.5")
    with pytest.raises(ValueParamsError) as exc:
        _params(tmp_path, bad)
    msg = str(exc.value)
    assert "value.yaml" in msg and "deposit_ftp.DEMAND" in msg and "line 3" in msg, msg

    unknown = PARAMS.replace("  per_loan_month: 30", "  per_loan_month: 30\n  per_card_month: 1")
    with pytest.raises(ValueParamsError) as exc:
        _params(tmp_path, unknown)
    msg = str(exc.value)
    line = unknown.splitlines().index("  per_card_month: 1") + 1
    assert "operating_cost.per_card_month" in msg and f"line {line}" in msg, msg

    unsorted = PARAMS.replace("max_term_months: 36", "max_term_months: 6")
    with pytest.raises(ValueParamsError, match=r"deposit_ftp.*TIME|ascending"):
        _params(tmp_path, unsorted)

    text_in_rate = PARAMS.replace("lpr_1y: 0.03", "lpr_1y: '0.03; DROP TABLE x'")
    with pytest.raises(ValueParamsError, match=r"loan_ftp\.lpr_1y"):
        _params(tmp_path, text_in_rate)


# ------------------------------------------------------------------------------------------ the bank
@pytest.fixture(scope="module")
def analyst(bank):
    return dataclasses.replace(principal_for("prov_analyst", bank.home), detail=True)


def test_bank_components_add_up(bank, analyst):
    params = load_value_params(bank.home)
    df = contribution(analyst, home=bank.home)
    assert len(df) > 1000 and df["customer_id"].is_unique
    el = df["expected_loss"] if params.expected_loss.include_expected_loss else 0
    total = df["deposit_nii"] + df["loan_nii"] + df["fee_income"] - df["operating_cost"] - el
    assert np.allclose(total, df["contribution"], rtol=0, atol=1e-6)  # float yuan, each rounded to the fen
    assert (df["fee_income"] >= 0).all() and (df["operating_cost"] >= 0).all()
    assert df["fee_income"].sum() > 0 and df["deposit_nii"].sum() > 0

    by = contribution_by_product(analyst, home=bank.home)
    assert by.attrs["as_of"] == df.attrs["as_of"]
    sums = by.groupby("customer_id")[["deposit_nii", "loan_nii", "fee_income", "operating_cost",
                                      "expected_loss", "contribution"]].sum()
    merged = df.set_index("customer_id").loc[sums.index]
    assert np.allclose(sums, merged[sums.columns], rtol=0, atol=1e-6)
    # Customers without product rows have all zeros.
    rest = df[~df["customer_id"].isin(sums.index)]
    assert (rest["contribution"] == 0).all()


def test_bank_fee_mart_contract(bank):
    snap = D.snapshot(bank.home)
    with snap.lock:
        n, bad_amount, bad_count, total = snap.con.execute(
            "SELECT count(*), count(*) FILTER (WHERE fee_amount < 0), count(*) FILTER (WHERE fee_count < 1),"
            " sum(fee_amount) FROM mart_fee_month"
        ).fetchall()[0]
    assert n > 0 and bad_amount == 0 and bad_count == 0 and total > 0


def test_bank_one_customer_and_scope(bank, analyst):
    df = contribution(analyst, home=bank.home)
    cid = df.sort_values("contribution")["customer_id"].iloc[-1]
    one = contribution_by_product(analyst, cid, home=bank.home)
    assert set(one["customer_id"]) == {cid}
    assert one["contribution"].sum() == pytest.approx(df.set_index("customer_id").loc[cid, "contribution"])

    aggregate_only = dataclasses.replace(analyst, detail=False)
    assert len(contribution(aggregate_only, home=bank.home)) == len(df)
    with pytest.raises(NotPermitted):
        contribution_by_product(aggregate_only, cid, home=bank.home)

    county = principal_for("county_mgr_101", bank.home)
    mine = contribution(county, home=bank.home)
    assert 0 < len(mine) < len(df) and set(mine["customer_id"]) <= set(df["customer_id"])
