"""Target lists on the shared synthetic bank: planted answers found, scope and masking, exports, the CLI."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from openpyxl import load_workbook

from cimlib.access import NotPermitted, principal_for, read_audit
from cimlib.targeting import counts, load_ruleset, run
from cimlib.targeting._export import csv_safe, list_bytes, write_list
from cimlib.targeting._rules import adhoc_ruleset
from cimlib.targeting._run import build_query, execute, to_pandas
from tests.conftest import Bank, run_cim

LAST = "2026-10"


def _label(column: str) -> str:
    from cimlib.i18n import column_label

    return column_label(column, "en")


@pytest.fixture(scope="module")
def everyone(bank: Bank):
    """A test principal with detail over the whole bank (the shipped roles with detail are scoped)."""
    p = principal_for("county_mgr_101", bank.home)
    return dataclasses.replace(p, scope="all", org_code=None, unmasked=frozenset({"name", "phone", "id_no"}))


def _answers(bank: Bank, name: str) -> pd.DataFrame:
    return pd.read_csv(bank.raw / "_answers" / f"{name}.csv", dtype=str, keep_default_na=False)


def _hits(bank: Bank, who, ruleset: str, rules: list[str], as_of: str = LAST) -> set[str]:
    return set(run(ruleset, who, as_of, rules=rules, home=bank.home)["customer_id"])


def _warehouse(bank: Bank) -> duckdb.DuckDBPyConnection:
    cur = json.loads((bank.home / "data" / "warehouse" / "CURRENT").read_text())
    return duckdb.connect(cur["path"], read_only=True)


# ------------------------------------------------------------------ planted answers
@pytest.mark.parametrize(
    ("event", "rules"),
    [
        ("TIME_DEPOSIT_MATURITY", ["time_deposit_maturity", "corp_time_deposit_maturity"]),
        ("CREDIT_LINE_EXPIRY", ["credit_line_expiry", "corp_credit_line_expiry"]),
        ("BIRTHDAY", ["birthday"]),
    ],
)
def test_every_planted_event_is_found_and_nothing_else(
    bank: Bank, everyone, event: str, rules: list[str]
) -> None:
    ev = _answers(bank, "events")
    want = set(ev.loc[ev["event_type"] == event, "cust_no"])
    assert want, f"the test bank plants no {event}"
    got = _hits(bank, everyone, "events", rules)
    assert got == want, f"missed {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}"


def test_the_360_sample_events_are_found_by_their_rules(bank: Bank, everyone) -> None:
    rule_of = {
        "TIME_DEPOSIT_MATURITY": {"time_deposit_maturity", "corp_time_deposit_maturity"},
        "CREDIT_LINE_EXPIRY": {"credit_line_expiry", "corp_credit_line_expiry"},
        "LOAN_MATURITY": {"loan_due", "corp_loan_due"},
        "WEALTH_MATURITY": {"wealth_maturity"},
        "CARD_EXPIRY": {"card_expiry"},
        "LC_MATURITY": {"corp_bill_maturity"},
        "ACCEPTANCE_MATURITY": {"corp_bill_maturity"},
        "DISCOUNT_MATURITY": {"corp_bill_maturity"},
        "BIRTHDAY": {"birthday"},
        "ID_EXPIRY": {"id_expiry"},
    }
    listed = run("events", everyone, LAST, home=bank.home).set_index("customer_id")
    checked = 0
    for row in _answers(bank, "customers").itertuples():
        if row.n_products == "0":  # closed everything: the rules remind only customers who hold a product
            continue
        for item in filter(None, row.events.split(";")):
            kind = item.split("|")[0]
            assert row.cust_no in listed.index, f"{row.cust_no} has {item} but is not listed"
            fired = set(listed.loc[row.cust_no, "rules"].split(";"))
            assert fired & rule_of[kind], f"{row.cust_no} {item}: fired {fired}"
            checked += 1
    assert checked >= 5


def test_every_planted_risk_is_found_and_newly_overdue_is_exact(bank: Bank, everyone) -> None:
    risk = _answers(bank, "risk")
    months = sorted({d[:7] for d in risk["as_of_date"]})
    assert months
    for m in months:
        day = risk[risk["as_of_date"].str.startswith(m)]
        overdue = set(day.loc[day["kind"] == "OVERDUE", "cust_no"])
        down = set(day.loc[day["kind"] == "DOWNGRADE", "cust_no"])
        ind = {c for c in overdue if c.startswith("1")}
        assert _hits(bank, everyone, "risk", ["newly_overdue"], m) == ind
        assert overdue <= _hits(bank, everyone, "risk", ["overdue", "corp_overdue"], m)
        assert _hits(bank, everyone, "risk", ["downgraded", "corp_downgraded"], m) == down


def test_every_planted_swing_is_found(bank: Bank, everyone) -> None:
    sw = _answers(bank, "swings")
    assert len(sw)
    for m in sorted({d[:7] for d in sw["as_of_date"]}):
        want = set(sw.loc[sw["as_of_date"].str.startswith(m), "cust_no"])
        got = _hits(bank, everyone, "abnormal", ["adb_swing", "corp_adb_swing"], m)
        assert want <= got, f"{m}: missed {sorted(want - got)}"


def test_an_exact_threshold_rule_has_no_false_positives(bank: Bank, everyone) -> None:
    """A rule at exactly the planted cut-off finds the planted customers and nobody else."""
    ev = _answers(bank, "events")
    td = ev[ev["event_type"] == "TIME_DEPOSIT_MATURITY"]
    last = max(td["event_date"])
    exact = adhoc_ruleset(
        f"any(deposits, account_type = 'TIME' and status <> 'CLOSED' and maturity_date = date '{last}')", "I"
    )
    want = set(td.loc[(td["event_date"] == last) & td["cust_no"].str.startswith("1"), "cust_no"])
    assert want
    assert set(run(exact, everyone, LAST, home=bank.home)["customer_id"]) == want


def test_the_wide_table_and_the_monthly_path_agree(bank: Bank, everyone) -> None:
    from cimlib.customer import _data as D

    snap = D.snapshot(bank.home)
    day = D.resolve_as_of(snap, LAST)
    for name in ("key_customers", "events", "abnormal", "risk"):
        rs = load_ruleset(name, bank.home)
        for t in ("I", "C"):
            rules = [r for r in rs.rules if r.customer_type == t]
            a = to_pandas(execute(snap, build_query(rules, day, wide=True)))
            b = to_pandas(execute(snap, build_query(rules, day, wide=False)))
            cols = ["customer_id", *[r.id for r in rules]]
            pd.testing.assert_frame_equal(
                a[cols].sort_values("customer_id").reset_index(drop=True),
                b[cols].sort_values("customer_id").reset_index(drop=True),
            )


def test_reasons_quote_the_matched_item(bank: Bank, everyone) -> None:
    df = run("events", everyone, LAST, rules=["time_deposit_maturity"], home=bank.home)
    con = _warehouse(bank)
    row = df.iloc[0]
    got = con.execute(
        "SELECT min(maturity_date) FROM core_deposit_month WHERE customer_id = ? "
        "AND as_of_date = DATE '2026-10-31' AND account_type = 'TIME' "
        "AND maturity_date > DATE '2026-10-31' AND maturity_date <= DATE '2026-11-30'",
        [row["customer_id"]],
    ).fetchone()[0]
    assert f"matures on {got.isoformat()}" in row["reasons"]
    zh = run("events", everyone, LAST, rules=["time_deposit_maturity"], lang="zh_CN", home=bank.home)
    assert "到期" in zh.iloc[0]["reasons"] and zh.iloc[0]["rule_names"] == "定期存款30天内到期"


# ------------------------------------------------------------------ scope, masking, audit
def test_lists_stay_in_scope_and_are_masked(bank: Bank) -> None:
    con = _warehouse(bank)
    dim = (
        con.execute(
            "SELECT customer_id, county_code, home_org_code, manager_no, cust_name, id_no_or_credit_code, "
            "phone, customer_type FROM dim_customer"
        )
        .df()
        .set_index("customer_id")
    )
    for user in ("county_mgr_101", "branch_mgr_101001", "cust_mgr_e1000005"):
        who = principal_for(user, bank.home)
        df = run("events", who, LAST, home=bank.home)
        assert len(df), user
        real = dim.loc[df["customer_id"]]
        if who.scope == "county":
            assert (real["county_code"] == who.org_code).all()
        elif who.scope == "branch":
            assert (real["home_org_code"] == who.org_code).all()
        else:
            assert (real["manager_no"] == who.staff_no).all()
        person = (real["customer_type"] == "I").to_numpy()
        ids = df["id_no"].to_numpy()
        assert all("*" in str(v) for v in ids[person])  # ID numbers are masked for every shipped role
        assert not any(str(v) in set(real["id_no_or_credit_code"][person]) for v in ids[person])
        phones_clear = who.sees("phone")
        assert (
            df["phone"].fillna("").to_numpy() == real["phone"].fillna("").to_numpy()
        ).all() == phones_clear
        # every in-scope hit of the county list is there (scope filters inside the query, not after a cut)
        if who.scope == "county":
            all_rules = load_ruleset("events", bank.home)
            everyone = dataclasses.replace(who, scope="all", org_code=None)
            full = run(all_rules, everyone, LAST, home=bank.home)
            mine = set(
                full.loc[
                    dim.loc[full["customer_id"], "county_code"].to_numpy() == who.org_code, "customer_id"
                ]
            )
            assert set(df["customer_id"]) == mine


def test_aggregate_roles_get_counts_not_lists(bank: Bank) -> None:
    prov = principal_for("prov_analyst", bank.home)
    with pytest.raises(NotPermitted):
        run("risk", prov, LAST, home=bank.home)
    c = counts("events", prov, LAST, home=bank.home)
    county = principal_for("county_mgr_101", bank.home)
    mine = counts("events", county, LAST, home=bank.home)
    assert set(mine["county_code"]) == {"101000"}
    lst = run("events", county, LAST, home=bank.home)
    assert int(mine["n_customers"].sum()) == len(lst)
    for rid, n in lst.attrs["hits"].items():
        assert int(mine[rid].sum()) == n
    assert int(c["n_customers"].sum()) > int(mine["n_customers"].sum())
    with pytest.raises(NotPermitted):
        counts("events", principal_for("auditor", bank.home), LAST, home=bank.home)


def test_lists_are_audited(bank: Bank) -> None:
    who = principal_for("branch_mgr_101001", bank.home)
    run("key_customers", who, LAST, home=bank.home)
    log = read_audit(bank.home, principal_for("auditor", bank.home), user="branch_mgr_101001")
    rec = log[log["action"] == "target_list"].iloc[-1]
    assert rec["target"] == "key_customers"


# ------------------------------------------------------------------ exports
def _hostile() -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "customer_id": ["1", "2", "3", "4"],
            "cust_name": ['=HYPERLINK("http://x","click")', "+1+2", "-2+3", "@SUM(A1:A9)"],
            "home_org_code": ["101001", "101001", "101002", "101002"],
            "home_org_name": ["A", "A", "B:/?*[]", "B:/?*[]"],
            "manager_no": ["E1", None, "E2", "E1"],
            "aum": [-5.0, 1.5, 2.0, 3.0],
            "reasons": ["\tTAB", "\rCR", "ok", "=1+1"],
        }
    )
    df.attrs.update(ruleset="x", as_of="2026-10-31", snapshot_id="s", rules=["r"])
    return df


def test_excel_keeps_formula_like_text_as_text(tmp_path: Path) -> None:
    data = list_bytes(_hostile())
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        sheets = [n for n in z.namelist() if n.startswith("xl/worksheets/")]
        assert sheets and all("<f>" not in z.read(n).decode() for n in sheets)
    wb = load_workbook(io.BytesIO(data))
    ws = wb["list"]
    names = [c.value for c in ws["B"][1:]]
    assert names == list(_hostile()["cust_name"])
    assert all(c.data_type == "s" for c in ws["B"][1:])
    assert [c.value for c in ws["F"][1:]] == [-5, 1.5, 2, 3]  # numbers stay numbers
    assert "about" in wb.sheetnames


def test_csv_prefixes_formula_like_text(tmp_path: Path) -> None:
    text = list_bytes(_hostile(), fmt="csv").decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert [r[1] for r in rows[1:]] == ['\'=HYPERLINK("http://x","click")', "'+1+2", "'-2+3", "'@SUM(A1:A9)"]
    assert [r[6] for r in rows[1:]] == ["'\tTAB", "'\rCR", "ok", "'=1+1"]
    assert [r[5] for r in rows[1:]] == ["-5.0", "1.5", "2.0", "3.0"]
    assert csv_safe(-5) == -5


def test_split_per_branch_and_per_manager(tmp_path: Path) -> None:
    df = _hostile()
    [book] = write_list(df, tmp_path / "l.xlsx", split="branch")
    wb = load_workbook(book)
    assert wb.sheetnames == ["101001 A", "101002 B______", "about"]
    assert [c.value for c in wb["101001 A"]["A"][1:]] == ["1", "2"]
    files = write_list(df, tmp_path / "m.xlsx", split="manager")
    assert sorted(f.name for f in files) == ["m-E1.xlsx", "m-E2.xlsx", "m-UNASSIGNED.xlsx"]
    e1 = load_workbook(tmp_path / "m-E1.xlsx")["list"]
    assert [c.value for c in e1["A"][1:]] == ["1", "4"]
    csvs = write_list(df, tmp_path / "b.csv", split="branch")
    assert sorted(f.name for f in csvs) == ["b-101001.csv", "b-101002.csv"]


def test_the_cli_runs_a_list_and_writes_it(bank: Bank, tmp_path: Path) -> None:
    out = tmp_path / "risk.xlsx"
    proc = run_cim("target", "run", "events", "--as", "county_mgr_101", "--as-of", LAST, "--out", str(out),
                   "--split", "branch", "--json", home=bank.home)  # fmt: skip
    payload = json.loads(proc.stdout)
    assert payload["n"] == len(payload["rows"]) > 0 and payload["files"] == [str(out)]
    wb = load_workbook(out)
    listed = sum(ws.max_row - 1 for ws in wb.worksheets if ws.title != "about")
    assert listed == payload["n"]
    assert all(r["link"].endswith(f"customer={r['customer_id']}") for r in payload["rows"])
    # the file holds what the user may see: ID numbers and phones of individuals masked, in every sheet
    for ws in wb.worksheets:
        if ws.title == "about":
            continue
        hdr = [c.value for c in ws[1]]
        id_col, type_col = hdr.index(_label("id_no")), hdr.index(_label("customer_type"))
        for row in ws.iter_rows(min_row=2, values_only=True):
            if row[type_col] == "I":
                assert "*" in row[id_col]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["target", "run", "event", "--as", "county_mgr_101"], 2, "did you mean 'events'"),
        (["target", "run", "events", "--as", "county_mgr_101", "--as-of", "2019-01"], 2, "no warehouse data"),
        (["target", "run", "events", "--as", "prov_analyst"], 1, "--counts"),
        (["target", "run", "events", "--as", "nobody"], 1, "nobody"),
        (["target", "run", "--condition", "aum >= 1e6 and agee > 3", "--as", "county_mgr_101"], 2, "'age'"),
        (["target", "compile", "aum > 1; drop table x"], 2, "one expression only"),
    ],
)
def test_cli_errors(bank: Bank, args: list[str], code: int, message: str) -> None:
    proc = run_cim(*args, home=bank.home, check=False)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr


def test_cli_counts_and_adhoc_condition(bank: Bank) -> None:
    proc = run_cim("target", "run", "risk", "--as", "prov_analyst", "--counts", "--json", home=bank.home)
    rows = json.loads(proc.stdout)["rows"]
    assert rows and all("cust_name" not in r for r in rows)
    proc = run_cim("target", "run", "--condition", "aum >= 200000", "--as", "county_mgr_101", "--json",
                   home=bank.home)  # fmt: skip
    rows = json.loads(proc.stdout)["rows"]
    assert rows and all(r["aum"] is None or r["aum"] >= 0 for r in rows)
    proc = run_cim("target", "check", home=bank.home)
    assert "events: 15 rules compile" in proc.stdout


def test_cli_backtest_prints_relevant_outcomes_and_saves_a_chart(bank: Bank, tmp_path: Path) -> None:
    chart = tmp_path / "bt.png"
    months = ["--from", "2026-07", "--to", "2026-08"]
    proc = run_cim("target", "backtest", "risk", "--as", "county_mgr_101", *months, "--horizon", "1",
                   "--chart", str(chart), home=bank.home)  # fmt: skip
    assert "newly_overdue (I, risk)" in proc.stdout and "downgrade" in proc.stdout
    assert chart.stat().st_size > 10_000
    bad = run_cim("target", "backtest", "risk", "--as", "county_mgr_101", *months, "--rule", "overdu",
                  home=bank.home, check=False)  # fmt: skip
    assert bad.returncode == 2 and "did you mean 'overdue'" in bad.stderr


def test_a_warehouse_older_than_the_rules_gets_a_clear_message() -> None:
    import datetime as dt

    from cimlib.access import Snapshot
    from cimlib.targeting._run import StaleWarehouse

    con = duckdb.connect()
    con.execute(
        "CREATE TABLE mart_customer_wide (customer_id VARCHAR, customer_type VARCHAR, as_of_date DATE, "
        "county_code VARCHAR, home_org_code VARCHAR, manager_no VARCHAR, aum DECIMAL(18, 2))"
    )
    rule = adhoc_ruleset("months_inactive >= 11 and aum > 0", "C").rules[0]
    with pytest.raises(StaleWarehouse, match="run `cim build`"):
        execute(Snapshot(con, "old", "old.duckdb"), build_query([rule], dt.date(2026, 10, 31), wide=True))
