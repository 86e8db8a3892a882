"""Rule backtests: hand-computed figures on a tiny warehouse, incomplete horizons, the shared test bank.

The tiny warehouse holds only what the backtest SQL and ``build_query(wide=False)`` read for rules on
month facts: ``dim_customer``, ``mart_customer_month`` and ``ref_five_class``. Eleven individuals and two
corporates over five month-ends, 2026-01 .. 2026-05 (J F M A Y below); the figures in the comments were
worked out by hand from the table in ``TINY``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from cimlib.access import Snapshot, principal_for
from cimlib.customer import AsOfError
from cimlib.targeting import backtest, backtest_chart, counts, load_ruleset, run
from cimlib.targeting._backtest import (
    COLUMNS,
    FAMILY_OUTCOMES,
    OVERALL,
    BacktestError,
    BacktestParams,
    backtest_snapshot,
    load_params,
)

ROOT = Path(__file__).resolve().parent.parent
MONTHS = [dt.date(2026, 1, 31), dt.date(2026, 2, 28), dt.date(2026, 3, 31), dt.date(2026, 4, 30),
          dt.date(2026, 5, 31)]  # fmt: skip
N, SM, SUB, DBT = "NORMAL", "SPECIAL_MENTION", "SUBSTANDARD", "DOUBTFUL"
# customer -> (type, county, {month index: (aum, loan_balance, n_products, worst_five_class)}); a month
# missing from the dict is a month without a row in mart_customer_month.
TINY: dict[str, tuple[str, str, dict[int, tuple[int, int, int, str | None]]]] = {
    # aum 200k all along; a third product in March
    "I01": ("I", "101000", {0: (200000, 0, 2, None), 1: (200000, 0, 2, None), 2: (200000, 0, 3, None),
                            3: (200000, 0, 3, None), 4: (200000, 0, 3, None)}),
    # aum 150k -> 30k in February: exactly an 80% drop (value churn at the boundary)
    "I02": ("I", "101000", {0: (150000, 0, 2, None), 1: (30000, 0, 2, None), 2: (30000, 0, 2, None),
                            3: (30000, 0, 2, None), 4: (30000, 0, 2, None)}),
    # aum exactly 100k (hit by aum >= 100000); gone from March (absent: hard churn)
    "I03": ("I", "101000", {0: (100000, 0, 1, None), 1: (100000, 0, 1, None)}),
    "I04": ("I", "101000", {k: (10000, 0, 1, None) for k in range(5)}),
    # a 60k loan: NORMAL -> SPECIAL_MENTION in February, repaid in May
    "I05": ("I", "101000", {0: (5000, 60000, 2, N), 1: (5000, 60000, 2, SM), 2: (5000, 60000, 2, SM),
                            3: (5000, 60000, 2, SM), 4: (5000, 0, 1, None)}),
    # an 80k loan, always NORMAL; a third product in April
    "I06": ("I", "101000", {0: (20000, 80000, 2, N), 1: (20000, 80000, 2, N), 2: (20000, 80000, 2, N),
                            3: (20000, 80000, 3, N), 4: (20000, 80000, 3, N)}),
    # a 10k loan (not a big loan): NORMAL, SUBSTANDARD in March, DOUBTFUL in April
    "I07": ("I", "101000", {0: (1000, 10000, 2, N), 1: (1000, 10000, 2, N), 2: (1000, 10000, 2, SUB),
                            3: (1000, 10000, 2, DBT), 4: (1000, 10000, 2, DBT)}),
    # emptied in February (aum + loans = 0), gone from March
    "I08": ("I", "101000", {0: (100, 0, 1, None), 1: (0, 0, 0, None)}),
    # another county: 300k, down to 50k in May (an 83% drop)
    "I09": ("I", "102000", {0: (300000, 0, 2, None), 1: (300000, 0, 2, None), 2: (300000, 0, 2, None),
                            3: (300000, 0, 2, None), 4: (50000, 0, 2, None)}),
    # another county: a second product in February
    "I10": ("I", "102000", {0: (8000, 0, 1, None), **{k: (8000, 0, 2, None) for k in range(1, 5)}}),
    # new in February, 120k
    "I11": ("I", "101000", {k: (120000, 0, 2, None) for k in range(1, 5)}),
    "C01": ("C", "101000", {k: (2000000, 0, 3, None) for k in range(5)}),
    "C02": ("C", "102000", {0: (500000, 0, 2, None), 1: (500000, 0, 2, None)}),
}  # fmt: skip

RULESET = """
version: 1
name: {en: Tiny, zh: 小}
rules:
  - id: rich
    name: {en: AUM 100k and above, zh: 金融资产10万元以上}
    customer_type: I
    family: key
    condition: aum >= 100000
    reason: {en: "AUM {aum}", zh: "金融资产{aum}"}
  - id: big_loan
    name: {en: Loans 50k and above, zh: 贷款5万元以上}
    customer_type: I
    family: risk
    condition: loan_balance >= 50000
    reason: {en: "loans {loan_balance}", zh: "贷款{loan_balance}"}
  - id: big_corp
    name: {en: Corporate AUM 1 million and above, zh: 对公金融资产100万元以上}
    customer_type: C
    family: key
    condition: aum >= 1000000
    reason: {en: "AUM {aum}", zh: "金融资产{aum}"}
"""


def _tiny_warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE ref_five_class (code VARCHAR, label_en VARCHAR, label_zh VARCHAR, rank INTEGER, "
        "npl BOOLEAN)"
    )
    con.execute(
        "INSERT INTO ref_five_class VALUES ('NORMAL', 'Normal', '正常', 1, FALSE), "
        "('SPECIAL_MENTION', 'Special mention', '关注', 2, FALSE), "
        "('SUBSTANDARD', 'Substandard', '次级', 3, TRUE), "
        "('DOUBTFUL', 'Doubtful', '可疑', 4, TRUE), ('LOSS', 'Loss', '损失', 5, TRUE)"
    )
    con.execute(
        "CREATE TABLE dim_customer (customer_id VARCHAR, customer_type VARCHAR, "
        "id_no_or_credit_code VARCHAR, cust_name VARCHAR, phone VARCHAR, county_code VARCHAR, "
        "county_name VARCHAR, home_org_code VARCHAR, home_org_name VARCHAR, manager_no VARCHAR, "
        "manager_name VARCHAR)"
    )
    con.execute(
        "CREATE TABLE mart_customer_month (customer_id VARCHAR, as_of_date DATE, customer_type VARCHAR, "
        "aum DECIMAL(18,2), loan_balance DECIMAL(18,2), n_products BIGINT, worst_five_class VARCHAR)"
    )
    for cid, (ctype, county, months) in TINY.items():
        branch = county[:3] + "001"
        con.execute(
            "INSERT INTO dim_customer VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [cid, ctype, f"ID{cid}", f"Name {cid}", "13800000000", county, f"County {county}", branch,
             f"Branch {branch}", "E1", "Manager"],
        )  # fmt: skip
        for k, (aum, loan, n_products, five_class) in months.items():
            con.execute(
                "INSERT INTO mart_customer_month VALUES (?, ?, ?, ?, ?, ?, ?)",
                [cid, MONTHS[k], ctype, aum, loan, n_products, five_class],
            )
    con.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Snapshot, Any]]:
    """A read-only snapshot of the tiny warehouse and the tiny rule set."""
    d = tmp_path_factory.mktemp("tiny")
    _tiny_warehouse(d / "tiny.duckdb")
    (d / "tiny.yaml").write_text(RULESET, encoding="utf-8")
    con = duckdb.connect(str(d / "tiny.duckdb"), read_only=True)
    yield Snapshot(con, "tiny-1", "tiny.duckdb"), load_ruleset(d / "tiny.yaml")
    con.close()


def _row(frame: pd.DataFrame, rule: str, as_of: str) -> dict[str, Any]:
    got = frame[(frame["rule_id"] == rule) & (frame["as_of"] == as_of)]
    assert len(got) == 1, (rule, as_of)
    return got.iloc[0].to_dict()


def _close(value: Any, expected: float, digits: int = 4) -> bool:
    return value is not None and not math.isnan(value) and abs(value - expected) <= 0.5 * 10**-digits + 1e-12


# ---- (1) hand-computed figures -----------------------------------------------------------------------------


def test_tiny_warehouse_by_hand(tiny: tuple[Snapshot, Any]) -> None:
    snap, rs = tiny
    f = backtest_snapshot(snap, rs.rules, "2026-01", "2026-05", horizon=2)
    assert list(f.columns) == COLUMNS
    # rule-set order, months ascending, the pooled row last
    assert list(f["rule_id"]) == ["rich"] * 6 + ["big_loan"] * 6 + ["big_corp"] * 6
    assert list(f["as_of"][:6]) == ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", OVERALL]
    # horizon 2: January (Feb, Mar), February (Mar, Apr) and March (Apr, May) are complete; April, May not
    assert list(f["complete"][:6]) == [True, True, True, False, False, False]

    jan = _row(f, "rich", "2026-01")
    # base: the ten individuals present in January (I01..I10; not I11, not the corporates)
    # hits (aum >= 100000): I01 200k, I02 150k, I03 100k, I09 300k
    assert (jan["n_hits"], jan["n_base"]) == (4, 10)
    # churn in Feb/Mar: I02 (150k -> 30k, exactly -80%), I03 (absent in March), I08 (aum + loans = 0)
    # hits 2/4 = 0.5, base 3/10 = 0.3, lift 1.67
    assert _close(jan["churn_rate"], 0.5) and _close(jan["churn_base_rate"], 0.3)
    assert _close(jan["churn_lift"], 5 / 3, 2)
    # product bought in Feb/Mar: I01 (2 -> 3 in March), I10 (1 -> 2); I06's third product comes in April
    # hits 1/4 = 0.25, base 2/10 = 0.2, lift 1.25
    assert _close(jan["product_bought_rate"], 0.25) and _close(jan["product_bought_base_rate"], 0.2)
    assert _close(jan["product_bought_lift"], 1.25, 2)
    # downgrade: no rich customer has a loan -> unknown (NaN), not 0; base with loans I05, I06, I07, of
    # whom I05 (Feb) and I07 (Mar) were downgraded: 2/3
    assert (jan["n_hits_with_loans"], jan["n_base_with_loans"]) == (0, 3)
    assert math.isnan(jan["downgrade_rate"]) and math.isnan(jan["downgrade_lift"])
    assert _close(jan["downgrade_base_rate"], 2 / 3)

    loan = _row(f, "big_loan", "2026-01")
    # hits (loans >= 50k): I05, I06; neither churned nor bought; I05 downgraded: 1/2 against 2/3 -> 0.75
    assert (loan["n_hits"], loan["n_hits_with_loans"]) == (2, 2)
    assert loan["churn_rate"] == 0 and loan["churn_lift"] == 0
    assert _close(loan["downgrade_rate"], 0.5) and _close(loan["downgrade_lift"], 0.75, 2)
    assert loan["product_bought_rate"] == 0

    feb = _row(f, "rich", "2026-02")
    # base 11 (I11 is new); hits I01, I03, I09, I11 (I02 is down to 30k)
    # churn in Mar/Apr: I03 and I08 (both absent from March); I02 stays at 30k -> hits 1/4, base 2/11
    assert (feb["n_hits"], feb["n_base"]) == (4, 11)
    assert _close(feb["churn_rate"], 0.25) and _close(feb["churn_base_rate"], 2 / 11)
    assert _close(feb["churn_lift"], 1.375, 2)
    # product bought in Mar/Apr: I01 (March), I06 (April) -> hits 1/4, base 2/11
    assert _close(feb["product_bought_base_rate"], 2 / 11)
    # downgrade: I07 only (NORMAL in Feb -> SUBSTANDARD in March); I05 stays SPECIAL_MENTION -> 1/3
    assert _close(_row(f, "big_loan", "2026-02")["downgrade_base_rate"], 1 / 3)
    assert _row(f, "big_loan", "2026-02")["downgrade_rate"] == 0

    mar = _row(f, "rich", "2026-03")
    # base 9 (I03, I08 gone); hits I01, I09, I11; churn in Apr/May: I09 (300k -> 50k); I05 repaid its loan
    # but keeps 5k of AUM, which is not churn -> hits 1/3, base 1/9, lift 3
    assert (mar["n_hits"], mar["n_base"]) == (3, 9)
    assert _close(mar["churn_rate"], 1 / 3) and _close(mar["churn_base_rate"], 1 / 9)
    assert _close(mar["churn_lift"], 3.0, 2)
    # downgrade in Apr/May: I07 SUBSTANDARD -> DOUBTFUL; I05's repaid loan (no class) is no downgrade
    assert _close(_row(f, "big_loan", "2026-03")["downgrade_base_rate"], 1 / 3)

    # April and May are counted, but their outcomes are unknown
    apr, may = _row(f, "rich", "2026-04"), _row(f, "rich", "2026-05")
    assert (apr["n_hits"], apr["n_base"], may["n_hits"], may["n_base"]) == (3, 9, 2, 9)
    assert (_row(f, "big_loan", "2026-04")["n_hits"], _row(f, "big_loan", "2026-05")["n_hits"]) == (2, 1)

    every = _row(f, "rich", OVERALL)
    # n_hits and n_base summed over the five months; rates pooled over the complete months only:
    # churn hits (2 + 1 + 1) / (4 + 4 + 3) = 4/11, base (3 + 2 + 1) / (10 + 11 + 9) = 0.2, lift 1.82
    assert (every["n_hits"], every["n_base"], every["complete"]) == (16, 48, False)
    assert _close(every["churn_rate"], 4 / 11) and _close(every["churn_base_rate"], 0.2)
    assert _close(every["churn_lift"], (4 / 11) / 0.2, 2)
    loans = _row(f, "big_loan", OVERALL)
    # downgrade hits (1 + 0 + 0) / (2 + 2 + 2) = 1/6, base (2 + 1 + 1) / (3 + 3 + 3) = 4/9, lift 0.375
    assert (loans["n_hits"], loans["n_hits_with_loans"]) == (9, 9)
    assert _close(loans["downgrade_rate"], 1 / 6) and _close(loans["downgrade_base_rate"], 4 / 9)
    assert _close(loans["downgrade_lift"], 0.375, 2)

    corp = _row(f, "big_corp", "2026-01")
    # corporates have their own base: C01 and C02; C02 is gone from March -> base churn 1/2; the hit C01
    # stayed -> 0, lift 0; nobody bought a product: base rate 0, so the lift is unknown
    assert (corp["n_hits"], corp["n_base"]) == (1, 2)
    assert corp["churn_rate"] == 0 and _close(corp["churn_base_rate"], 0.5) and corp["churn_lift"] == 0
    assert corp["product_bought_base_rate"] == 0 and math.isnan(corp["product_bought_lift"])


def test_tiny_scope_and_parameters(tiny: tuple[Snapshot, Any]) -> None:
    snap, rs = tiny
    # county 101000 only: I01..I08 in January; hits I01, I02, I03 of which I02, I03 churned: 2/3 against 3/8
    f = backtest_snapshot(snap, [rs.rule("rich")], "2026-01", "2026-01", horizon=2,
                          scope=("d.county_code = ?", ["101000"]))  # fmt: skip
    jan = _row(f, "rich", "2026-01")
    assert (jan["n_hits"], jan["n_base"]) == (3, 8)
    assert _close(jan["churn_rate"], 2 / 3) and _close(jan["churn_base_rate"], 3 / 8)
    assert _close(jan["churn_lift"], (2 / 3) / (3 / 8), 2)
    # a 90% threshold: I02's 80% drop is no longer churn (I03 absent and I08 emptied still are)
    strict = BacktestParams.model_validate({"churn": {"aum_drop": 0.9}})
    f = backtest_snapshot(snap, [rs.rule("rich")], "2026-01", "2026-01", horizon=2, params=strict)
    jan = _row(f, "rich", "2026-01")
    assert _close(jan["churn_rate"], 0.25) and _close(jan["churn_base_rate"], 0.2)
    # without the absent test I03 is no churn in January either; I08 is still emptied in February
    f = backtest_snapshot(snap, [rs.rule("rich")], "2026-01", "2026-01", horizon=2,
                          params=BacktestParams.model_validate({"churn": {"absent": False}}))  # fmt: skip
    assert _close(_row(f, "rich", "2026-01")["churn_base_rate"], 0.2)


# ---- (2) incomplete horizons -------------------------------------------------------------------------------


def test_incomplete_horizon_gives_null_outcomes(tiny: tuple[Snapshot, Any]) -> None:
    snap, rs = tiny
    f = backtest_snapshot(snap, rs.rules, "2026-01", "2026-05")  # horizon 3
    outcome_cols = [c for c in COLUMNS if c.endswith(("_rate", "_lift"))]
    rich = f[f["rule_id"] == "rich"].set_index("as_of")
    # January (Feb, Mar, Apr) and February (Mar, Apr, May) are complete; March needs June
    assert list(rich["complete"]) == [True, True, False, False, False, False]
    for month in ("2026-03", "2026-04", "2026-05"):
        assert rich.loc[month, outcome_cols].isna().all(), month  # NULL, not 0
        assert rich.loc[month, "n_hits"] > 0
    assert rich.loc["2026-01", "churn_rate"] == 0.5
    # only the latest month: nothing is known, not even in the pooled row
    f = backtest_snapshot(snap, rs.rules, "2026-05", "2026-05")
    assert not f["complete"].any()
    assert f[outcome_cols].isna().all().all()
    assert list(f[f["rule_id"] == "rich"]["n_hits"]) == [2, 2]
    # the hits match the rules' own query for that month
    from cimlib.targeting._run import build_query, execute, to_pandas

    q = build_query([r for r in rs.rules if r.customer_type == "I"], MONTHS[4])
    hits = to_pandas(execute(snap, q))
    assert int(hits["rich"].sum()) == 2 and int(hits["big_loan"].sum()) == 1


# ---- (4) bad input -----------------------------------------------------------------------------------------


def test_bad_months_and_horizons_give_clear_errors(tiny: tuple[Snapshot, Any]) -> None:
    snap, rs = tiny
    with pytest.raises(AsOfError, match="expected YYYY-MM"):
        backtest_snapshot(snap, rs.rules, "2026-13", "2026-05")
    with pytest.raises(AsOfError, match="expected YYYY-MM"):
        backtest_snapshot(snap, rs.rules, "January", "2026-05")
    with pytest.raises(
        AsOfError, match=r"no warehouse data for 2025-06; available months 2026-01 \.\. 2026-05"
    ):
        backtest_snapshot(snap, rs.rules, "2025-06", "2026-05")
    with pytest.raises(AsOfError, match="the first month 2026-04 is after the last month 2026-02"):
        backtest_snapshot(snap, rs.rules, "2026-04", "2026-02")
    for bad in (0, 13, -1, 2.5, True):
        with pytest.raises(BacktestError, match="horizon: expected a whole number of months from 1 to 12"):
            backtest_snapshot(snap, rs.rules, "2026-01", "2026-02", horizon=bad)  # type: ignore[arg-type]
    assert issubclass(AsOfError, ValueError) and issubclass(BacktestError, ValueError)


def test_parameter_file(tmp_path: Path) -> None:
    shipped = load_params(ROOT)
    assert shipped == BacktestParams()  # the shipped file holds the documented defaults
    assert shipped.churn.aum_drop == 0.8 and shipped.downgrade.min_rank_increase == 1
    target = tmp_path / "parameters" / "targeting"
    target.mkdir(parents=True)
    text = (ROOT / "parameters" / "targeting" / "_backtest.yaml").read_text(encoding="utf-8")
    (target / "_backtest.yaml").write_text(text.replace("  aum_drop: 0.80", "  aum_drops: 0.80"), "utf-8")
    with pytest.raises(BacktestError, match=r"_backtest\.yaml: churn\.aum_drops \(line \d+\): Extra inputs"):
        load_params(tmp_path)
    (target / "_backtest.yaml").write_text(text.replace("aum_drop: 0.80", "aum_drop: 1.5"), "utf-8")
    with pytest.raises(
        BacktestError, match=r"churn\.aum_drop \(line \d+\): Input should be less than or equal"
    ):
        load_params(tmp_path)
    (target / "_backtest.yaml").unlink()
    assert load_params(tmp_path) == BacktestParams()  # no file: the defaults


# ---- the chart ---------------------------------------------------------------------------------------------


def test_chart_data_and_encodings(tiny: tuple[Snapshot, Any]) -> None:
    snap, rs = tiny
    f = backtest_snapshot(snap, rs.rules, "2026-01", "2026-05", horizon=2)
    chart = backtest_chart(f, lang="en")
    data = chart.data
    # one row per rule and relevant outcome of the pooled rows: key -> churn, product bought; risk ->
    # churn, downgrade
    assert list(zip(data["rule_id"], data["outcome_code"], strict=True)) == [
        ("rich", "churn"), ("rich", "product_bought"), ("big_loan", "churn"), ("big_loan", "downgrade"),
        ("big_corp", "churn"), ("big_corp", "product_bought"),
    ]  # fmt: skip
    assert FAMILY_OUTCOMES["risk"] == ("churn", "downgrade")
    first = data.iloc[0]
    assert (first["rule"], first["outcome"], first["n_hits"]) == ("AUM 100k and above", "Churned", 16)
    assert first["lift"] == _row(f, "rich", OVERALL)["churn_lift"]
    bars, _, labels = chart.layer
    assert bars.to_dict()["mark"]["type"] == "bar"
    assert bars.encoding.x.shorthand == "lift:Q"
    assert bars.encoding.y.shorthand == "rule:N"
    assert bars.encoding.yOffset.shorthand == "outcome:N"
    assert bars.encoding.color.shorthand == "outcome:N"
    assert bars.encoding.y.to_dict()["sort"] == ["AUM 100k and above", "Loans 50k and above",
                                          "Corporate AUM 1 million and above"]  # fmt: skip
    assert labels.encoding.text.shorthand == "lift:Q"
    d = chart.to_dict()
    assert d["layer"][1]["mark"]["type"] == "rule" and d["layer"][1]["encoding"]["x"] == {"datum": 1.0}
    assert d["title"]["text"] == "Rule backtest: hits' outcomes against the base rate"
    assert "2026-01 to 2026-05, outcomes within 2 months" in d["title"]["subtitle"]

    zh = backtest_chart(f, lang="zh_CN")
    assert list(zh.data["rule"][:2]) == ["金融资产10万元以上"] * 2
    assert set(zh.data["outcome"]) == {"流失", "新增产品", "五级分类下调"}
    assert zh.to_dict()["title"]["text"].startswith("规则回测")
    import vl_convert as vlc

    png = vlc.vegalite_to_png(zh.to_dict(), scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    empty = backtest_chart(pd.DataFrame(columns=COLUMNS))  # nothing to show is still a chart
    assert len(empty.data) == 0 and vlc.vegalite_to_svg(empty.to_dict()).startswith("<svg")


# ---- (3) the shared test bank ------------------------------------------------------------------------------


def test_bank_risk_rules_first_month(bank: Any) -> None:
    prov = principal_for("prov_analyst", bank.home)
    county = principal_for("county_mgr_101", bank.home)
    from cimlib.customer import _data as D

    first = D.as_of_dates(D.snapshot(bank.home))[0]
    month = f"{first:%Y-%m}"
    wide = backtest("risk", prov, month, month, home=bank.home)
    local = backtest("risk", county, month, month, home=bank.home)
    rs = load_ruleset("risk", bank.home)
    assert wide.attrs["ruleset"] == "risk" and wide.attrs["horizon"] == 3
    for f in (wide, local):
        assert list(f.columns) == COLUMNS
        assert len(f) == 2 * len(rs.rules)
        assert f["complete"].all()  # four months: the first has all three later months
        rates = f[[c for c in COLUMNS if c.endswith("_rate")]]
        assert ((rates >= 0) & (rates <= 1) | rates.isna()).all().all()
        assert (f["n_hits"] <= f["n_base"]).all() and (f["n_hits_with_loans"] <= f["n_hits"]).all()
        # the pooled row of one month is that month
        by = f.set_index(["rule_id", "as_of"])
        for r in rs.rules:
            assert by.loc[(r.id, month), "n_hits"] == by.loc[(r.id, OVERALL), "n_hits"]
        # one base per customer type
        assert f.groupby("customer_type")["churn_base_rate"].nunique().max() == 1
    # the hits are what the rule set finds that month, scope by scope
    per_branch = counts("risk", prov, month, home=bank.home)
    listed = run("risk", county, month, home=bank.home)
    months_w = wide[wide["as_of"] == month].set_index("rule_id")
    months_l = local[local["as_of"] == month].set_index("rule_id")
    for r in rs.rules:
        assert months_w.loc[r.id, "n_hits"] == int(per_branch[r.id].sum()), r.id
        assert months_l.loc[r.id, "n_hits"] == listed.attrs["hits"][r.id], r.id
    assert months_w["n_hits"].sum() > 0
    # key customers: more hits in the county, the same agreement with the customer list
    key = backtest("key_customers", county, month, month, home=bank.home)
    key_hits = run("key_customers", county, month, home=bank.home).attrs["hits"]
    key_month = key[key["as_of"] == month].set_index("rule_id")
    assert key_month["n_hits"].to_dict() == key_hits and sum(key_hits.values()) > 0
    # scope holds: the county manager's base is a part of the province's
    for ctype in ("I", "C"):
        w = months_w[months_w["customer_type"] == ctype]["n_base"].iloc[0]
        loc = months_l[months_l["customer_type"] == ctype]["n_base"].iloc[0]
        assert 0 < loc < w, ctype
    snap = D.snapshot(bank.home)
    _, rows = snap.query(
        "SELECT customer_type, count(*) FROM mart_customer_month WHERE as_of_date = ? GROUP BY ALL", [first]
    )
    n = dict(rows)
    assert months_w[months_w["customer_type"] == "I"]["n_base"].iloc[0] == n["I"]
    assert months_w[months_w["customer_type"] == "C"]["n_base"].iloc[0] == n["C"]
    # risk rules should find customers who go on to be downgraded more often than the base
    overdue = months_w.loc["overdue"]
    if overdue["n_hits_with_loans"] >= 5:
        assert overdue["downgrade_rate"] >= overdue["downgrade_base_rate"]


def test_bank_backtest_needs_a_scope_and_is_audited(bank: Any) -> None:
    from cimlib.access import NotPermitted, read_audit

    auditor = principal_for("auditor", bank.home)
    with pytest.raises(NotPermitted):
        backtest("risk", auditor, "2026-10", "2026-10", home=bank.home)
    log = read_audit(bank.home, auditor, limit=5000)
    rows = log[log["action"] == "target_backtest"]
    assert len(rows) >= 1 and "refused" in set(rows["outcome"])
