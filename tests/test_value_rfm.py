"""RFM (cimlib.value): golden scores on a hand-built warehouse; the bank's scores, scope and audit."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from cimlib.access import NotPermitted, principal_for, read_audit
from cimlib.value import ValueParamsError, load_value_params, rfm_customers, rfm_scores, rfm_sql, rfm_summary
from cimlib.value._rfm import month_end_back
from tests.test_value_contribution import PARAMS as BASE_PARAMS

REPO = Path(__file__).resolve().parent.parent
AS_OF = dt.date(2026, 3, 31)
SEGMENTS = """\
rfm:
  frequency_months: 2
  monetary: aum_adb
  score_within: customer_type
  segments:
    - {id: CHAMPIONS, en: "Champions", zh: "重要价值客户", r: [4, 5], f: [4, 5], m: [4, 5]}
    - {id: LOYAL, en: "Loyal", zh: "忠诚客户", r: [3, 5], f: [3, 5], m: [3, 5]}
    - {id: CANT_LOSE, en: "Can't lose them", zh: "重要挽留客户", r: [1, 2], f: [3, 5], m: [4, 5]}
    - {id: AT_RISK, en: "At risk", zh: "流失风险客户", r: [1, 2], f: [2, 5], m: [2, 5]}
    - {id: BIG_IDLE, en: "High value, low activity", zh: "重要发展客户", r: [3, 5], f: [1, 2], m: [4, 5]}
    - {id: PROMISING, en: "Promising", zh: "潜力客户", r: [4, 5], f: [1, 5], m: [1, 3]}
    - {id: NEED_ATTENTION, en: "Need attention", zh: "需要关注客户", r: [3, 3], f: [1, 5], m: [1, 5]}
    - {id: HIBERNATING, en: "Hibernating", zh: "沉睡客户", r: [1, 2], f: [1, 5], m: [2, 5]}
    - {id: LOST, en: "Lost", zh: "流失客户", r: [1, 5], f: [1, 5], m: [1, 5]}
"""


def _params(tmp_path: Path, text: str = BASE_PARAMS + SEGMENTS):
    p = tmp_path / "value.yaml"
    p.write_text(text, encoding="utf-8")
    return load_value_params(path=p)


@pytest.fixture()
def tiny() -> duckdb.DuckDBPyConnection:
    """Six individuals over Jan-Apr 2026 (as-of March: April must not count)."""
    con = duckdb.connect()
    con.execute("""
        CREATE TABLE mart_customer_month (customer_id VARCHAR, as_of_date DATE, customer_txn_count BIGINT,
            last_txn_time TIMESTAMP, last_customer_txn_time TIMESTAMP);
        CREATE TABLE val (customer_id VARCHAR, customer_type VARCHAR, county_code VARCHAR,
            home_org_code VARCHAR, manager_no VARCHAR, aum_adb DECIMAL(18, 2));
    """)
    j, f, m, a = (dt.date(2026, 1, 31), dt.date(2026, 2, 28), dt.date(2026, 3, 31), dt.date(2026, 4, 30))
    ts = dt.datetime.fromisoformat
    months = [
        # customer, month, customer-initiated count, last transaction (any), last customer-initiated
        ("R1", j, 5, ts("2026-01-20 10:00"), ts("2026-01-20 10:00")),
        ("R1", f, 1, ts("2026-02-21 00:00"), ts("2026-02-03 09:00")),
        ("R1", m, 2, ts("2026-03-31 23:00"), ts("2026-03-30 12:00")),  # interest posted on the 31st
        ("R2", j, 4, ts("2026-01-15 08:00"), ts("2026-01-15 08:00")),
        ("R2", f, 0, ts("2026-02-21 00:00"), None),
        ("R3", m, 0, ts("2026-03-21 00:00"), None),  # only interest postings: never active
        ("R4", f, 10, ts("2026-02-28 18:00"), ts("2026-02-28 18:00")),
        ("R5", m, 1, ts("2026-03-31 09:00"), ts("2026-03-31 09:00")),
        ("R6", f, 3, ts("2026-02-01 11:00"), ts("2026-02-01 11:00")),
        ("R6", a, 9, ts("2026-04-10 11:00"), ts("2026-04-10 11:00")),  # after the as-of month
    ]
    con.executemany("INSERT INTO mart_customer_month VALUES (?, ?, ?, ?, ?)", months)
    for cid, aum in (("R1", 100), ("R2", 500), ("R3", 300), ("R4", 300), ("R5", 50), ("R6", 1000)):
        con.execute("INSERT INTO val VALUES (?, 'I', '101000', '101001', 'E1', ?)", [cid, aum])
    return con


def _run(con, params, exact=True) -> pd.DataFrame:
    sql = rfm_sql(params, "val", exact_recency=exact)
    p = {"as_of": AS_OF, "from": month_end_back(AS_OF, params.rfm.frequency_months)}
    return con.sql(sql, params=p).df().set_index("customer_id")


def test_month_end_back():
    assert month_end_back(dt.date(2026, 3, 31), 2) == dt.date(2026, 1, 31)
    assert month_end_back(dt.date(2026, 1, 31), 1) == dt.date(2025, 12, 31)
    assert month_end_back(dt.date(2026, 3, 31), 0) == dt.date(2026, 3, 31)


def test_golden_rfm(tiny, tmp_path):
    s = _run(tiny, _params(tmp_path))
    # R = days from 2026-03-31 to the last customer-initiated transaction up to March (April ignored):
    # R1 03-30 -> 1, R2 01-15 -> 75, R3 none -> NULL, R4 02-28 -> 31, R5 03-31 -> 0, R6 02-01 -> 58.
    assert pd.isna(s.loc["R3", "recency_days"])
    assert s["recency_days"].drop("R3").to_dict() == {"R1": 1, "R2": 75, "R4": 31, "R5": 0, "R6": 58}
    # F = customer-initiated transactions in Feb + Mar (frequency_months 2): R1 1 + 2 = 3, R6 3 (not April).
    assert s["frequency"].to_dict() == {"R1": 3, "R2": 0, "R3": 0, "R4": 10, "R5": 1, "R6": 3}
    # score = 1 + floor(5 x (rank - 1) / 6); ties share the lower rank.
    # R by days descending, NULL first: R3 1, R2 2, R6 3, R4 4, R1 5, R5 6 -> 1, 1, 2, 3, 4, 5.
    assert s["r_score"].to_dict() == {"R3": 1, "R2": 1, "R6": 2, "R4": 3, "R1": 4, "R5": 5}
    # F ascending: R2 = R3 = 0 (rank 1), R5 (3), R1 = R6 = 3 (rank 4), R4 (6) -> 1, 1, 2, 3, 3, 5.
    assert s["f_score"].to_dict() == {"R2": 1, "R3": 1, "R5": 2, "R1": 3, "R6": 3, "R4": 5}
    # M ascending: R5 50, R1 100, R3 = R4 = 300 (rank 3), R2 500 (5), R6 1000 (6) -> 1, 1, 2, 2, 4, 5.
    assert s["m_score"].to_dict() == {"R5": 1, "R1": 1, "R3": 2, "R4": 2, "R2": 4, "R6": 5}
    assert s.loc["R6", "rfm"] == "235"
    # First segment whose ranges hold: R1 (4,3,1) PROMISING; R2 (1,1,4) HIBERNATING; R3 (1,1,2)
    # HIBERNATING; R4 (3,5,2) NEED_ATTENTION; R5 (5,2,1) PROMISING; R6 (2,3,5) CANT_LOSE.
    assert s["segment"].to_dict() == {"R1": "PROMISING", "R2": "HIBERNATING", "R3": "HIBERNATING",
                                      "R4": "NEED_ATTENTION", "R5": "PROMISING", "R6": "CANT_LOSE"}


def test_scores_do_not_depend_on_row_order(tiny, tmp_path):
    a = _run(tiny, _params(tmp_path))
    tiny.execute("CREATE TABLE v2 AS SELECT * FROM val ORDER BY customer_id DESC")
    tiny.execute("DROP TABLE val; ALTER TABLE v2 RENAME TO val")
    b = _run(tiny, _params(tmp_path))
    pd.testing.assert_frame_equal(a.sort_index(), b.sort_index())


def test_recency_fallback_uses_months_with_customer_activity(tiny, tmp_path):
    s = _run(tiny, _params(tmp_path), exact=False)
    # last_txn_time of months with customer-initiated transactions: R1 March's 03-31 23:00 (an interest
    # posting: the approximation) -> 0 days; R2 January -> 75; R3 never.
    assert s.loc["R1", "recency_days"] == 0 and s.loc["R2", "recency_days"] == 75
    assert pd.isna(s.loc["R3", "recency_days"])


def test_segments_must_cover_every_pattern(tmp_path):
    text = BASE_PARAMS + SEGMENTS.replace(
        '    - {id: LOST, en: "Lost", zh: "流失客户", r: [1, 5], f: [1, 5], m: [1, 5]}\n', "")
    with pytest.raises(ValueParamsError, match=r"rfm.*score patterns.*no segment"):
        _params(tmp_path, text)
    with pytest.raises(ValueParamsError, match=r"rfm\.segments\[0\]\.r"):
        _params(tmp_path, BASE_PARAMS + SEGMENTS.replace("r: [4, 5], f: [4, 5]", "r: [4, 6], f: [4, 5]", 1))
    with pytest.raises(ValueParamsError, match=r"rfm\.monetary"):
        _params(tmp_path, BASE_PARAMS + SEGMENTS.replace("monetary: aum_adb", "monetary: balance"))


# ------------------------------------------------------------------------------------------ the bank
def test_bank_rfm(bank):
    import dataclasses

    analyst = principal_for("prov_analyst", bank.home)
    full = rfm_scores(dataclasses.replace(analyst, detail=True), home=bank.home)
    assert full.attrs["recency_source"] == "last_customer_txn_time"  # the rebuilt mart carries it
    scores = full[["r_score", "f_score", "m_score"]]
    assert full["customer_id"].is_unique and scores.isin(range(1, 6)).all().all()
    # Scores recomputed in pandas: 1 + floor(5 x (min rank - 1) / n) within each customer type.
    for _, g in full.groupby("customer_type"):
        rank = g["monetary"].rank(method="min")
        assert ((1 + (5 * (rank - 1) // len(g))).astype(int) == g["m_score"]).all()
        rr = g["recency_days"].fillna(10**9).rank(method="min", ascending=False)
        assert ((1 + (5 * (rr - 1) // len(g))).astype(int) == g["r_score"]).all()
    assert (full["recency_days"].dropna() >= 0).all()
    # Scope: a county manager sees the same scores for their own customers.
    county = principal_for("county_mgr_101", bank.home)
    mine = rfm_scores(county, home=bank.home)
    assert (mine["county_code"] == county.org_code).all()
    same = full.set_index("customer_id").loc[mine["customer_id"], "rfm"]
    assert list(same) == list(mine["rfm"])
    summ = rfm_summary(county, home=bank.home)
    assert summ["customers"].sum() == len(mine)
    with pytest.raises(NotPermitted):
        rfm_customers(analyst, home=bank.home)
    lst = rfm_customers(county, segment="CHAMPIONS", home=bank.home, limit=5)
    assert (lst["segment"] == "CHAMPIONS").all()
    assert lst.attrs["total"] == (mine["segment"] == "CHAMPIONS").sum()
    aud = read_audit(bank.home, principal_for("auditor", bank.home), limit=50)
    assert {"refused", "ok"} <= set(aud.loc[aud["action"] == "value_rfm_list", "outcome"])
