"""Churn labels (hand-computed golden cases, the planted churners), features without leakage, parameters."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from cimlib.churn._features import FEATURES, feature_sql, features_frame
from cimlib.churn._labels import labelled_months, labels_frame
from cimlib.churn._params import ChurnParamsError, load_churn_params
from tests.conftest import Bank

ROOT = Path(__file__).resolve().parent.parent
MONTHS = [dt.date(2024, 1, 31), dt.date(2024, 2, 29), dt.date(2024, 3, 31), dt.date(2024, 4, 30),
          dt.date(2024, 5, 31), dt.date(2024, 6, 30)]  # fmt: skip

_COLS = ["n_products", "demand_balance", "demand_adb", "time_balance", "wealth_aum", "n_active_loans",
         "n_debit_cards", "n_credit_cards", "deposit_adb", "aum", "customer_txn_count"]  # fmt: skip


def _tiny() -> duckdb.DuckDBPyConnection:
    """A hand-made mart_customer_month: six customers over Jan..Jun 2024 (see each test for the story)."""
    rows = []

    def add(cid: str, month: int, **kw: float) -> None:
        base = dict.fromkeys(_COLS, 0.0)
        base.update(n_products=2, demand_balance=5000, demand_adb=5000, deposit_adb=5000, aum=5000,
                    customer_txn_count=3, n_debit_cards=1)
        base.update(kw)
        rows.append({"customer_id": cid, "as_of_date": MONTHS[month], **base})

    for m in range(6):
        add("A", m)  # stays: nothing changes
    for m, n in enumerate([2, 2, 0, 0, 0, 0]):  # closes everything in March
        gone = dict(demand_balance=0, demand_adb=0, deposit_adb=0, aum=0, n_debit_cards=0) if n == 0 else {}
        add("B", m, n_products=n, **gone)
    for m in range(2):
        add("C", m)  # no rows from March on: holds nothing
    for m in range(6):  # time deposit matured and not renewed in April
        add("D", m, time_balance=50000 if m < 3 else 0)
    for m, adb in enumerate([100000, 100000, 100000, 90000, 60000, 40000]):
        add("E", m, deposit_adb=adb, aum=adb)  # value falls to 40% of its Jan-Mar baseline by June
    for m, n in enumerate([1, 0, 0, 0, 2, 0]):
        add("F", m, customer_txn_count=n)  # silent Feb-Apr
    con = duckdb.connect()
    con.register("rows", pd.DataFrame(rows))
    con.execute("CREATE TABLE mart_customer_month AS SELECT * FROM rows")
    return con


@pytest.fixture(scope="module")
def params():
    return load_churn_params(ROOT)


def _labels(con: duckdb.DuckDBPyConnection, d: object) -> dict[tuple[str, int], tuple[bool, str | None]]:
    df = labels_frame(con, d, labelled_months(MONTHS, d))  # type: ignore[arg-type]
    return {(r.customer_id, MONTHS.index(r.as_of_date)): (bool(r.churned), r.detail) for r in df.itertuples()}


def test_labelled_months_need_the_whole_outcome_window(params) -> None:
    _, d = params.definition("hard")
    assert d.outcome_months == 3
    assert labelled_months(MONTHS, d) == MONTHS[:3]


def test_hard_churn_golden(params) -> None:
    got = _labels(_tiny(), params.definitions["hard"])
    churned = {k for k, (v, _) in got.items() if v}
    # B closes in March: churned seen from Jan and Feb; not eligible from March (holds nothing).
    # C has no rows from March: holds nothing then, so churned from Jan and Feb.
    assert churned == {("B", 0), ("B", 1), ("C", 0), ("C", 1)}
    assert ("B", 2) not in got and ("C", 2) not in got
    assert got[("A", 0)] == (False, None) and len([k for k in got if k[0] == "A"]) == 3


def test_product_attrition_golden(params) -> None:
    got = _labels(_tiny(), params.definitions["product_attrition"])
    # D's time deposit is gone from April on: lost as seen from Jan, Feb and Mar.
    assert got[("D", 0)] == (True, "TIME")
    assert got[("D", 1)][0] is False or got[("D", 1)] == (True, "TIME")
    assert got[("D", 1)] == (True, "TIME")  # Feb + 3 = May: no time deposit either
    assert got[("D", 2)] == (True, "TIME")
    # B loses demand deposits and its card by April (seen from Jan); A loses nothing.
    assert got[("B", 0)] == (True, "DEMAND,DEBIT_CARD")
    assert not any(v for (c, _), (v, _) in got.items() if c == "A")


def test_value_churn_golden(params) -> None:
    d = params.definitions["value"]
    assert (d.measure, d.drop, d.baseline_months, d.min_baseline) == ("deposit_adb", 0.5, 3, 10000)
    got = _labels(_tiny(), d)
    # E: baseline Jan-Mar 100,000; at June (Mar + 3) 40,000 <= 50% of it -> churned seen from March.
    assert got[("E", 2)] == (True, "deposit_adb 100000 -> 40000")
    # from Feb: baseline avg(Jan, Feb) = 100,000, end May 60,000 > 50,000 -> not churned
    assert got[("E", 1)] == (False, "deposit_adb 100000 -> 60000")
    # A's 5,000 ADB is under min_baseline: not eligible
    assert not any(c == "A" for c, _ in got)


def test_inactivity_golden(params) -> None:
    got = _labels(_tiny(), params.definitions["inactive"])
    # F: active in Jan, nothing Feb-Apr -> churned seen from Jan; from Feb it was active in Jan (within the
    # 3 months to Feb) but trades in May -> not churned; from Mar: eligible (Jan), May has a trade.
    assert got[("F", 0)][0] is True
    assert got[("F", 1)][0] is False
    assert got[("F", 2)][0] is False
    assert not got[("A", 0)][0]


# ------------------------------------------------------------------------------ planted churners
def _planted(bank: Bank, con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    ch = pd.read_csv(bank.raw / "_answers" / "churners.csv", dtype=str)
    ids = con.sql("SELECT cust_no, customer_id FROM core_cust_no_map").df()
    ch = ch.merge(ids, on="cust_no")
    ch["churn_month"] = pd.to_datetime(ch["churn_month"] + "-01").dt.to_period("M")
    return ch


def _months(con: duckdb.DuckDBPyConnection) -> list[dt.date]:
    sql = "SELECT DISTINCT as_of_date FROM mart_customer_month ORDER BY 1"
    return [r[0] for r in con.sql(sql).fetchall()]


def _snapshot_con(bank: Bank) -> duckdb.DuckDBPyConnection:
    import json

    cur = json.loads((bank.home / "data" / "warehouse" / "CURRENT").read_text())
    return duckdb.connect(cur["path"], read_only=True)


def test_hard_churn_is_exactly_the_planted_leavers(bank: Bank, params) -> None:
    con = _snapshot_con(bank)
    planted = _planted(bank, con)
    months = _months(con)
    _, d = params.definition("hard")
    for outcome in (1, 2, 3):
        dd = d.model_copy(update={"outcome_months": outcome})
        lab = labels_frame(con, dd, labelled_months(months, dd))
        assert len(lab)
        for s, part in lab.groupby("as_of_date"):
            p = pd.Period(s, "M")
            truth = planted[(planted["kind"] == "ATTRITION") & (planted["churn_month"] > p)
                            & (planted["churn_month"] <= p + outcome)]
            got = set(part.loc[part["churned"], "customer_id"])
            assert got == set(truth["customer_id"]), (s, outcome)
            assert got, "the seeded bank plants leavers in every window"


def test_value_churn_finds_the_silent_leavers(bank: Bank, params) -> None:
    con = _snapshot_con(bank)
    planted = _planted(bank, con)
    months = _months(con)
    d = params.definitions["value"]
    lab = labels_frame(con, d, labelled_months(months, d))
    s = pd.Period(lab["as_of_date"].iloc[0], "M")
    silent = planted[(planted["churn_month"] > s) & (planted["churn_month"] <= s + 3)]
    eligible = silent[silent["customer_id"].isin(lab["customer_id"])]
    found = eligible["customer_id"].isin(lab.loc[lab["churned"], "customer_id"])
    assert len(eligible) >= 5
    assert found.mean() >= 0.8, found.mean()


# ------------------------------------------------------------------------------ features: no leakage
def _copy_until(src: duckdb.DuckDBPyConnection, day: dt.date | None) -> duckdb.DuckDBPyConnection:
    """An in-memory copy of what the features read, without any month after ``day`` (None: everything)."""
    dst = duckdb.connect()
    for table, dated in (("mart_customer_month", True), ("core_deposit_month", True),
                         ("core_account", False), ("dim_customer", False)):  # fmt: skip
        df = src.sql(f"SELECT * FROM {table}").df()
        if dated and day is not None:
            df = df[pd.to_datetime(df["as_of_date"]).dt.date <= day]
        dst.register("t", df)
        dst.execute(f"CREATE TABLE {table} AS SELECT * FROM t")
        dst.unregister("t")
    return dst


def test_features_use_nothing_after_the_scoring_month(bank: Bank) -> None:
    con = _snapshot_con(bank)
    months = _months(con)
    s = months[-2]
    full = features_frame(_copy_until(con, None), [s])
    cut = features_frame(_copy_until(con, s), [s])
    assert len(full) > 1000
    pd.testing.assert_frame_equal(full, cut)
    # and the later month really is different data (the test could fail)
    later = features_frame(_copy_until(con, None), [months[-1]])
    a, b = (f[["deposit_adb"]].reset_index(drop=True) for f in (later, full))
    assert not a.equals(b)


def test_feature_sql_reads_no_current_state_fields() -> None:
    sql = feature_sql(6)
    for leak in ("is_current", "last_seen_date", "first_seen_date", "manager_since", "close_date"):
        assert leak not in sql


def test_features_frame_shape(bank: Bank) -> None:
    con = _snapshot_con(bank)
    months = _months(con)
    f = features_frame(con, months[-2:])
    assert list(f.columns[:2]) == ["customer_id", "as_of_date"]
    assert set(FEATURES) <= set(f.columns)
    assert not f.duplicated(["customer_id", "as_of_date"]).any()
    assert f["customer_type"].dtype == "category"
    ratios = f[["adb_change_1m", "adb_change_3m", "end_vs_adb", "net_flow_to_adb_3m"]].to_numpy()
    assert np.nanmax(np.abs(ratios)) <= 10
    # a customer's ADB change against last month, checked by hand from the mart
    one = f[(f["as_of_date"] == months[-1]) & f["adb_change_1m"].notna()].iloc[0]
    a = con.sql("SELECT as_of_date, deposit_adb FROM mart_customer_month WHERE customer_id = ? "
                "ORDER BY as_of_date", params=[one.customer_id]).df()
    now, before = a["deposit_adb"].iloc[-1], a["deposit_adb"].iloc[-2]
    assert one.adb_change_1m == pytest.approx(min(float(now) / float(before), 10) - 1)


# ------------------------------------------------------------------------------ parameters
def test_bad_parameters_name_file_key_and_line(tmp_path: Path) -> None:
    text = (ROOT / "parameters" / "churn.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "churn.yaml"
    bad.write_text(text.replace("    drop: 0.5", "    drop: 1.5"), encoding="utf-8")
    with pytest.raises(ChurnParamsError, match=r"churn\.yaml.*drop.*line"):
        load_churn_params(path=bad)
    bad.write_text(text.replace("  definition: hard", "  definition: valeu"), encoding="utf-8")
    with pytest.raises(ChurnParamsError, match="valeu"):
        load_churn_params(path=bad)
    params = load_churn_params(ROOT)
    with pytest.raises(ChurnParamsError, match="there are: hard"):
        params.definition("nope")


def test_negative_sampling_keeps_every_leaver_and_reweights() -> None:
    from cimlib.churn._backtest import sample_negatives

    y = pd.Series(np.r_[np.ones(100, int), np.zeros(9900, int)])
    rows = pd.Series(np.ones(10000, bool))
    keep, w, rate = sample_negatives(y, rows, 10000, 0)
    assert keep.all() and w is None and rate == 1.0
    keep, w, rate = sample_negatives(y, rows, 2000, 0)
    assert y[keep].sum() == 100  # every leaver
    assert rate == pytest.approx(1900 / 9900)
    assert 1800 < keep.sum() < 2300
    assert w.sum() == pytest.approx(10000, rel=0.05)  # weighted back to the population


def test_a_month_has_the_same_features_alone_or_in_a_training_frame(bank: Bank) -> None:
    """No train/score skew: scoring a month alone reads the same history as a multi-month training frame."""
    con = _snapshot_con(bank)
    months = _months(con)
    together = features_frame(con, months)
    for m in months[1:]:
        alone = features_frame(con, [m]).reset_index(drop=True)
        part = together[together["as_of_date"] == m].reset_index(drop=True)
        pd.testing.assert_frame_equal(alone, part)


def test_backtest_cli_takes_the_chart_language(monkeypatch: pytest.MonkeyPatch) -> None:
    import cimlib.churn as C
    from cimlib.cli import build_parser

    args = build_parser().parse_args(["churn", "backtest", "--as", "prov_analyst", "--lang", "en"])
    assert args.lang == "en"
    seen = {}

    def fake(who: object, definition: object, **kw: object) -> None:
        seen.update(kw)
        raise C.BacktestError("stop here")

    monkeypatch.setattr(C, "backtest", fake)
    with pytest.raises(Exception, match="stop here"):
        args.func(args, __import__("cimlib.config", fromlist=["get_home"]).get_home(ROOT))
    assert seen["lang"] == "en"
