"""Tests of the synthetic bank generator: determinism, contract conformance, tie-outs, planted answers."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import yaml

from cimlib.contracts import load_codes, load_contracts
from cimlib.contracts.checkdigits import is_valid_id, is_valid_uscc
from cimlib.synth import generate

MAPPING = Path(__file__).resolve().parents[1] / "parameters" / "sources" / "default.yaml"
N, MONTHS, SEED = 2000, 3, 11
_SQL_FMT = {"%Y-%m-%d": "%Y-%m-%d", "%Y%m%d": "%Y%m%d", "%Y/%m/%d": "%Y/%m/%d"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    summary = generate(out, N, MONTHS, SEED)
    return out, summary


def _read(folder: Path, spec: dict) -> pa.Table:
    """Read one extract file as strings and return it with canonical column names and codes."""
    opts = pacsv.ReadOptions(encoding=spec.get("encoding", "utf-8"))
    parse = pacsv.ParseOptions(delimiter=spec.get("delimiter", ","), quote_char=False)
    with open(folder / spec["file"], "rb") as fh:
        header = fh.readline().decode(spec.get("encoding", "utf-8")).strip().split(spec.get("delimiter", ","))
    conv = pacsv.ConvertOptions(column_types={h: pa.string() for h in header}, strings_can_be_null=True)
    t = pacsv.read_csv(folder / spec["file"], read_options=opts, parse_options=parse, convert_options=conv)
    rename = spec.get("columns") or {}
    t = t.rename_columns([rename.get(c, c) for c in t.column_names])
    for col, cmap in (spec.get("codes") or {}).items():
        i = t.column_names.index(col)
        vals = [cmap.get(v, f"?{v}") if v is not None else None for v in t.column(col).to_pylist()]
        t = t.set_column(i, col, pa.array(vals, type=pa.string()))
    for col, val in (spec.get("constants") or {}).items():
        t = t.append_column(col, pa.array([val] * t.num_rows, type=pa.string()))
    return t


def _load_date(folder: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one typed canonical table per contract (union of the files feeding it)."""
    mapping = yaml.safe_load(MAPPING.read_text(encoding="utf-8"))
    defaults = mapping["defaults"]
    contracts = load_contracts()
    con = duckdb.connect()
    by_table: dict[str, list[str]] = {}
    for i, f in enumerate(mapping["files"]):
        spec = {**defaults, **f}
        t = _read(folder, spec)
        c = contracts[spec["table"]]
        assert set(t.column_names) == set(c.column_names), spec["file"]
        name = f"raw_{i}"
        con.register(name, t)
        sel = []
        for col in c.columns:
            q = f'"{col.name}"'
            if col.type == "date":
                sel.append(f"CAST(strptime({q}, '{_SQL_FMT[spec['date_format']]}') AS DATE) AS {q}")
            elif col.type == "timestamp":
                sel.append(f"strptime({q}, '{spec['timestamp_format']}') AS {q}")
            else:
                sel.append(f"CAST({q} AS {col.sql_type}) AS {q}")
        by_table.setdefault(spec["table"], []).append(
            f"SELECT {', '.join(sel)}, '{spec['file']}' AS _file FROM {name}"
        )
    for table, parts in by_table.items():
        con.execute(f'CREATE TABLE "{table}" AS {" UNION ALL ".join(parts)}')
    return con


@pytest.fixture(scope="module")
def cons(synth: tuple[Path, dict]) -> dict[str, duckdb.DuckDBPyConnection]:
    out, summary = synth
    return {d: _load_date(out / d) for d in summary["dates"]}


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_deterministic(synth: tuple[Path, dict], tmp_path: Path) -> None:
    out, summary = synth
    again = generate(tmp_path / "b", N, MONTHS, SEED)
    assert again["dates"] == summary["dates"] == ["2026-08-31", "2026-09-30", "2026-10-31"]
    assert _files(out) == _files(tmp_path / "b")
    other = generate(tmp_path / "c", N, 1, SEED + 1)
    assert (
        _files(tmp_path / "c")["2026-10-31/CORE_individual_customer.csv"]
        != _files(out)["2026-10-31/CORE_individual_customer.csv"]
    )
    assert other["dates"] == ["2026-10-31"]


def test_files_match_mapping(synth: tuple[Path, dict]) -> None:
    out, summary = synth
    mapping = yaml.safe_load(MAPPING.read_text(encoding="utf-8"))
    names = {f["file"] for f in mapping["files"]}
    for d in summary["dates"]:
        assert {p.name for p in (out / d).iterdir()} == names
    raw = (out / summary["dates"][-1] / "LOAN_loan.csv").read_bytes()
    raw.decode("gbk")
    assert raw.split(b"\n", 1)[0].startswith(b"JJH,KHH,")
    assert b"|" in (out / summary["dates"][-1] / "CARD_card.txt").read_bytes().split(b"\n", 1)[0]


def test_contracts(cons: dict[str, duckdb.DuckDBPyConnection]) -> None:
    contracts = load_contracts()
    codes = load_codes()
    for date, con in cons.items():
        for c in contracts.values():
            n = con.execute(f'SELECT count(*) FROM "{c.table}"').fetchone()[0]
            assert n > 0, (date, c.table)
            for col in c.columns:
                q = f'"{col.name}"'
                if col.required:
                    bad = con.execute(f'SELECT count(*) FROM "{c.table}" WHERE {q} IS NULL').fetchone()[0]
                    assert bad == 0, (date, c.table, col.name, "required")
                if col.codes:
                    vals = {
                        r[0]
                        for r in con.execute(
                            f'SELECT DISTINCT {q} FROM "{c.table}" WHERE {q} IS NOT NULL'
                        ).fetchall()
                    }
                    assert vals <= set(codes[col.codes]), (
                        date,
                        c.table,
                        col.name,
                        vals - set(codes[col.codes]),
                    )
                if col.pattern:
                    bad = con.execute(
                        f'SELECT count(*) FROM "{c.table}" WHERE NOT regexp_full_match({q}, ?)',
                        [col.pattern.strip("^$")],
                    ).fetchone()[0]
                    assert bad == 0, (date, c.table, col.name, "pattern")
                if col.min is not None:
                    bad = con.execute(f'SELECT count(*) FROM "{c.table}" WHERE {q} < {col.min}').fetchone()[0]
                    assert bad == 0, (date, c.table, col.name, "min")
                if col.max is not None:
                    bad = con.execute(f'SELECT count(*) FROM "{c.table}" WHERE {q} > {col.max}').fetchone()[0]
                    assert bad == 0, (date, c.table, col.name, "max")
                if col.check:
                    fn = is_valid_id if col.check == "id_no" else is_valid_uscc
                    vals = [r[0] for r in con.execute(f'SELECT {q} FROM "{c.table}"').fetchall()]
                    assert all(fn(v) for v in vals), (date, c.table, col.name)
            for chk in c.checks:
                bad = con.execute(f'SELECT count(*) FROM "{c.table}" WHERE NOT ({chk.sql})').fetchone()[0]
                assert bad == 0, (date, c.table, chk.name)


def test_keys(cons: dict[str, duckdb.DuckDBPyConnection]) -> None:
    contracts = load_contracts()
    for date, con in cons.items():
        for c in contracts.values():
            pk = ", ".join(f'"{k}"' for k in c.primary_key)
            dup = con.execute(
                f'SELECT count(*) FROM (SELECT {pk} FROM "{c.table}" GROUP BY ALL HAVING count(*) > 1)'
            ).fetchone()[0]
            assert dup == 0, (date, c.table, "pk")
            for fk in c.foreign_keys:
                cols = fk.columns
                ref = " UNION ".join(f'SELECT {", ".join(fk.ref_columns)} FROM "{r}"' for r in fk.references)
                cond = " AND ".join(f't."{a}" IS NOT NULL' for a in cols)
                join = " AND ".join(f't."{a}" = r."{b}"' for a, b in zip(cols, fk.ref_columns, strict=True))
                bad = con.execute(
                    f'SELECT count(*) FROM "{c.table}" t WHERE {cond} AND NOT EXISTS '
                    f"(SELECT 1 FROM ({ref}) r WHERE {join})"
                ).fetchone()[0]
                assert bad == 0, (date, c.table, fk.columns, fk.references)
        # references the contracts leave implicit
        assert (
            con.execute(
                "SELECT count(*) FROM loan WHERE credit_line_no IS NOT NULL AND credit_line_no NOT IN "
                "(SELECT line_no FROM credit_line)"
            ).fetchone()[0]
            == 0
        )
        assert (
            con.execute(
                "SELECT count(*) FROM card WHERE card_type = 'DEBIT' AND account_no NOT IN (SELECT "
                "account_no FROM deposit_account WHERE account_type = 'DEMAND')"
            ).fetchone()[0]
            == 0
        )


def test_balances_and_gl(cons: dict[str, duckdb.DuckDBPyConnection]) -> None:
    for date, con in cons.items():
        d = dt.date.fromisoformat(date)
        assert con.execute("SELECT min(days), max(days) FROM account_balance").fetchone() == (d.day, d.day)
        # closed accounts carry no balance; every open account has a balance row
        assert (
            con.execute(
                "SELECT count(*) FROM account_balance b JOIN deposit_account a USING (account_no) "
                "WHERE a.status = 'CLOSED' AND b.balance <> 0"
            ).fetchone()[0]
            == 0
        )
        assert (
            con.execute(
                "SELECT count(*) FROM deposit_account WHERE status <> 'CLOSED' AND account_no NOT IN "
                "(SELECT account_no FROM account_balance)"
            ).fetchone()[0]
            == 0
        )
        diff = con.execute("""
            WITH dep AS (
              SELECT a.org_code, CASE WHEN c.cust_no IS NULL THEN 'C' ELSE 'I' END AS ct,
                     a.account_type, b.balance
              FROM account_balance b JOIN deposit_account a USING (account_no)
              LEFT JOIN (SELECT cust_no FROM individual_customer WHERE src_system = 'CORE') c
                USING (cust_no)),
            calc AS (
              SELECT org_code, CASE WHEN ct = 'I' AND account_type = 'DEMAND' THEN '2011'
                                    WHEN ct = 'I' THEN '2012' WHEN account_type = 'DEMAND' THEN '2013'
                                    ELSE '2014' END AS subject_code, sum(balance) AS bal FROM dep GROUP BY ALL
              UNION ALL
              SELECT l.org_code, CASE WHEN i.cust_no IS NULL THEN '1302' ELSE '1301' END, sum(l.balance)
              FROM loan l LEFT JOIN (SELECT DISTINCT cust_no FROM individual_customer) i USING (cust_no)
              GROUP BY ALL)
            SELECT count(*), sum(abs(coalesce(g.balance, 0) - coalesce(c.bal, 0)))
            FROM gl_balance g FULL JOIN calc c USING (org_code, subject_code)
            WHERE coalesce(g.balance, 0) <> coalesce(c.bal, 0)""").fetchone()
        assert diff[0] == 0, (date, diff)
        assert (
            con.execute(
                "SELECT count(*) FROM gl_balance WHERE subject_code = '2011' AND balance > 0"
            ).fetchone()[0]
            > 50
        )


def test_deposit_concentration(cons: dict[str, duckdb.DuckDBPyConnection]) -> None:
    for con in cons.values():
        share = con.execute("""
            WITH c AS (SELECT a.cust_no, sum(b.balance) AS bal FROM account_balance b
                       JOIN deposit_account a USING (account_no) GROUP BY ALL),
            r AS (SELECT bal, row_number() OVER (ORDER BY bal DESC) AS rn, count(*) OVER () AS n FROM c)
            SELECT sum(bal) FILTER (WHERE rn <= n * 0.2) / sum(bal) FROM r""").fetchone()[0]
        assert 0.70 <= float(share) <= 0.85, share
        corp = con.execute(
            "SELECT count(*) FILTER (WHERE src_system = 'CORE') FROM corporate_customer"
        ).fetchone()[0]
        ind = con.execute(
            "SELECT count(*) FILTER (WHERE src_system = 'CORE') FROM individual_customer"
        ).fetchone()[0]
        assert 0.05 <= corp / (corp + ind) <= 0.10


def test_channel_drift(cons: dict[str, duckdb.DuckDBPyConnection]) -> None:
    codes = load_codes()
    digital = [c for c, a in codes["channel"].items() if a.get("digital")]
    ci = [t for t, a in codes["txn_type"].items() if a.get("customer_initiated")]
    shares = []
    for con in cons.values():
        shares.append(
            con.execute(
                f"SELECT avg(CASE WHEN channel IN ({', '.join(repr(x) for x in digital)}) THEN 1 ELSE 0 END) "
                f'FROM "transaction" WHERE txn_type IN ({", ".join(repr(x) for x in ci)})'
            ).fetchone()[0]
        )
    assert shares[-1] > shares[0] + 0.01, shares
    n_txn = cons[max(cons)].execute('SELECT count(*) FROM "transaction"').fetchone()[0]
    assert 3 * N <= n_txn <= 5.5 * N


def test_five_class_floor_and_risk(
    synth: tuple[Path, dict], cons: dict[str, duckdb.DuckDBPyConnection]
) -> None:
    out, summary = synth
    rank = (
        "CASE five_class WHEN 'NORMAL' THEN 1 WHEN 'SPECIAL_MENTION' THEN 2 WHEN 'SUBSTANDARD' THEN 3 "
        "WHEN 'DOUBTFUL' THEN 4 ELSE 5 END"
    )
    floor = (
        "CASE WHEN days_past_due > 360 THEN 5 WHEN days_past_due > 270 THEN 4 WHEN days_past_due > 90 THEN 3 "
        "WHEN days_past_due > 0 THEN 2 ELSE 1 END"
    )
    last = cons[summary["dates"][-1]]
    assert last.execute(f"SELECT count(*) FROM loan WHERE {rank} < {floor}").fetchone()[0] == 0
    assert last.execute("SELECT count(*) FROM loan WHERE days_past_due > 0").fetchone()[0] > 0
    assert last.execute(f"SELECT count(*) FROM loan WHERE {rank} > {floor}").fetchone()[0] > 0
    risk = pacsv.read_csv(out / "_answers" / "risk.csv").to_pylist()
    assert risk, "no planted risk events"
    for r in risk:
        con = cons[str(r["as_of_date"])]
        dpd, _ = con.execute(
            "SELECT days_past_due, five_class FROM loan WHERE loan_no = ?", [r["loan_no"]]
        ).fetchone()
        if r["kind"] == "OVERDUE":
            assert dpd > 0


def test_answers(synth: tuple[Path, dict], cons: dict[str, duckdb.DuckDBPyConnection]) -> None:
    out, summary = synth
    ans = out / "_answers"
    last = cons[summary["dates"][-1]]
    dup = pacsv.read_csv(
        ans / "duplicates.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={"core_cust_no": pa.string(), "other_cust_no": pa.string()}
        ),
    ).to_pylist()
    assert dup
    n_loan_ind = last.execute(
        "SELECT count(*) FROM individual_customer WHERE src_system = 'LOAN'"
    ).fetchone()[0]
    for r in dup:
        core = last.execute(
            "SELECT id_no FROM individual_customer WHERE src_system = 'CORE' AND cust_no = ? UNION ALL "
            "SELECT credit_code FROM corporate_customer WHERE src_system = 'CORE' AND cust_no = ?",
            [r["core_cust_no"]] * 2,
        ).fetchall()
        other = last.execute(
            "SELECT id_no FROM individual_customer WHERE src_system = 'LOAN' AND cust_no = ? UNION ALL "
            "SELECT credit_code FROM corporate_customer WHERE src_system = 'LOAN' AND cust_no = ?",
            [r["other_cust_no"]] * 2,
        ).fetchall()
        assert core == other == [(r["id_key"],)]
        assert r["other_cust_no"].startswith("L")
    # every other LOAN customer reuses its CORE number
    n_reuse = last.execute(
        "SELECT count(*) FROM individual_customer l JOIN individual_customer c USING (cust_no, id_no)"
        " WHERE l.src_system = 'LOAN' AND c.src_system = 'CORE'"
    ).fetchone()[0]
    n_dup_ind = sum(
        1 for r in dup if len(r["id_key"]) == 18 and r["id_key"][:2].isdigit() and is_valid_id(r["id_key"])
    )
    assert n_reuse + n_dup_ind == n_loan_ind
    churn = pacsv.read_csv(
        ans / "churners.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={"cust_no": pa.string(), "churn_month": pa.string()}
        ),
    ).to_pylist()
    assert churn
    for r in churn:
        if r["kind"] == "ATTRITION":
            st = last.execute(
                "SELECT DISTINCT status FROM deposit_account WHERE cust_no = ?", [r["cust_no"]]
            ).fetchall()
            assert st == [("CLOSED",)], r
    ev = pacsv.read_csv(
        ans / "events.csv",
        convert_options=pacsv.ConvertOptions(column_types={"cust_no": pa.string(), "ref_no": pa.string()}),
    ).to_pylist()
    kinds = {r["event_type"] for r in ev}
    assert {"TIME_DEPOSIT_MATURITY", "BIRTHDAY"} <= kinds
    end = dt.date.fromisoformat(summary["dates"][-1])
    for r in ev:
        assert end < r["event_date"] <= end + dt.timedelta(days=30)
        if r["event_type"] == "TIME_DEPOSIT_MATURITY":
            assert (
                last.execute(
                    "SELECT maturity_date FROM deposit_account WHERE account_no = ?", [r["ref_no"]]
                ).fetchone()[0]
                == r["event_date"]
            )
    swings = pacsv.read_csv(ans / "swings.csv").to_pylist()
    assert swings and all(abs(r["pct_change"]) >= 50 for r in swings)


def test_enterprise_groups(cons: dict[str, duckdb.DuckDBPyConnection]) -> None:
    """About 12% of corporates are in groups of 2-6: one code, one name ending in 集团, in both systems."""
    con = cons[max(cons)]
    share, n_groups = con.execute(
        "SELECT avg((group_code IS NOT NULL)::INT), count(DISTINCT group_code) FROM corporate_customer "
        "WHERE src_system = 'CORE'"
    ).fetchone()
    assert 0.06 < share < 0.2 and n_groups >= 3
    bad = con.execute(
        "SELECT group_code FROM corporate_customer WHERE src_system = 'CORE' AND group_code IS NOT NULL "
        "GROUP BY group_code HAVING count(*) NOT BETWEEN 2 AND 6 OR count(DISTINCT group_name) <> 1 "
        "OR NOT bool_and(group_name LIKE '%集团')"
    ).fetchall()
    assert bad == []
    # the credit system's copy of a corporate carries the same group (LOAN_corporate_customer, GBK)
    loan = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE l.group_code IS NOT DISTINCT FROM c.group_code) "
        "FROM corporate_customer l JOIN corporate_customer c ON c.credit_code = l.credit_code "
        "AND c.src_system = 'CORE' WHERE l.src_system = 'LOAN'"
    ).fetchone()
    assert loan[0] > 0 and loan[0] == loan[1]
