"""The content of the periodic reports, run in-process (no kernel): the monthly management pack's two
editions on the 13-month report bank (churn model and scores), and the data-quality report on a copy of it
with quarantined rows planted.

* every section shows its tables and at least one chart, and its figures are the services' own numbers
  (recomputed here with plain SQL or the service);
* the county edition shows that county only, with its lists attached and masked for the county role;
* the provincial edition shows aggregates only: no customer id or name, no list attached;
* ``figures.json`` is byte-identical across two runs on the same snapshot;
* the data-quality banner, the snapshot check, the parameter checks, and the DQ report's quarantine
  reasons and contract results.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import Bank, run_cim

COUNTY = "101000"
SECTION_PREFIX = {
    "macro": "macro.",
    "groups": "groups.",
    "segments": "segments.",
    "targets": "targets.",
    "churn": "churn.",
    "product": "product.",
    "channel": "channel.",
    "performance": "performance.",
}
CUSTOMER_ID = re.compile(r"(?<![\d.])[18]\d{9}(?!\d)")


class Run:
    """One in-process run of a report: the document, what it showed, and where it wrote."""

    def __init__(self, rep: Any, sink: list[dict[str, Any]], out: Path | None, summary: dict[str, Any]):
        self.rep = rep
        self.sink = sink
        self.out = out
        self.summary = summary

    @property
    def text(self) -> str:
        """Every HTML output and SVG the report showed, and its figures as JSON."""
        parts = [o.get("html") or o.get("svg") or "" for o in self.sink]
        return "\n".join(parts) + "\n" + self.rep.figures_json()

    def figure(self, key: str) -> list[dict[str, Any]]:
        return self.rep.figures[key]


def run_pack(home: Path, scope: str, lang: str, out: Path | None, **options: Any) -> Run:
    from cimlib.reports._pack import MonthlyPack

    sink: list[dict[str, Any]] = []
    rep = MonthlyPack(
        scope=scope, locale=lang, out_dir=str(out) if out else None, home=home, sink=sink, **options
    )
    for section in rep.sections()[:-1]:
        getattr(rep, section)()
    return Run(rep, sink, out, rep.finish())


@pytest.fixture(scope="module")
def county(report_bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_pack(report_bank.home, f"county:{COUNTY}", "zh_CN", tmp_path_factory.mktemp("county"))


@pytest.fixture(scope="module")
def province(report_bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_pack(report_bank.home, "province", "en", tmp_path_factory.mktemp("province"))


def _query(home: Path, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
    from cimlib.customer import _data as D

    table = D.snapshot(home).arrow(sql, params or {})
    return list(zip(*(c.to_pylist() for c in table.columns), strict=True))


def _by(records: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {r[key]: r for r in records}


# ------------------------------------------------------------------------------------------- structure
@pytest.mark.parametrize("edition", ["county", "province"])
def test_every_section_shows_tables_and_a_chart(edition: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(edition)
    for section, prefix in SECTION_PREFIX.items():
        tables = [k for k in run.rep.figures if k.startswith(prefix)]
        charts = [k for k in run.rep.charts if k.startswith(prefix)]
        assert tables, f"{section}: no table"
        assert charts, f"{section}: no chart"
        assert section in run.rep.timings
    svgs = [o["svg"] for o in run.sink if o["type"] == "svg"]
    assert len(svgs) == len(run.rep.charts) and all(s.lstrip().startswith("<svg") for s in svgs)
    html = "\n".join(o["html"] for o in run.sink if o["type"] == "html")
    assert 'class="num"' in html and "<table" in html
    assert "cdn.jsdelivr" not in run.text and "vega-embed" not in run.text


def test_tables_show_missing_as_a_dash_and_money_in_the_locale_unit(county: Run, province: Run) -> None:
    from cimlib.reports._document import MISSING

    zh = "\n".join(o["html"] for o in county.sink if o["type"] == "html")
    en = "\n".join(o["html"] for o in province.sink if o["type"] == "html")
    assert "万元" in zh and "(yuan)" in en
    # the county has no NPL: the provision coverage (provisions / NPL) is missing, shown as a dash
    cov = _by(county.figure("macro.overview"), "measure")["provision_coverage"]
    assert cov["current"] is None
    assert MISSING in zh and ">nan<" not in zh.lower() and ">None<" not in zh


# ------------------------------------------------------------------------------------------- figures
def test_key_figures_equal_the_warehouse(county: Run, province: Run, report_bank: Bank) -> None:
    day = county.rep.as_of
    sql = (
        "SELECT count(*), sum(m.deposit_balance), sum(m.loan_balance) FROM mart_customer_month m "
        "JOIN dim_customer d USING (customer_id) WHERE m.as_of_date = $d AND {cond}"
    )
    for run, cond, params in ((county, "d.county_code = $c", {"c": COUNTY}), (province, "TRUE", {})):
        n, dep, loan = _query(report_bank.home, sql.format(cond=cond), {"d": day, **params})[0]
        ov = _by(run.figure("macro.overview"), "measure")
        assert ov["customers"]["current"] == n
        assert ov["deposit_balance"]["current"] == pytest.approx(float(dep), abs=0.01)
        assert ov["loan_balance"]["current"] == pytest.approx(float(loan), abs=0.01)
        kpis = _by(run.figure("macro.kpis"), "measure")
        assert kpis["deposit_balance"]["current"] == ov["deposit_balance"]["current"]
        # the pivot's grand total is the same population
        total = county if run is county else province
        rows = total.figure("segments.customers_by_org_tier")
        assert rows[-1]["org"] == "" and rows[-1]["_total"] == n


def test_figures_equal_the_services(county: Run, report_bank: Bank) -> None:
    from cimlib import analysis as A
    from cimlib import targeting as TG

    who = county.rep.principal
    ov = A.overview(who, county.rep.as_of, home=report_bank.home)
    fig = _by(county.figure("macro.overview"), "measure")
    for rec in ov.to_dict("records"):
        got = fig[rec["measure"]]["current"]
        assert (got is None and pd.isna(rec["current"])) or got == pytest.approx(rec["current"], abs=0.01)
    counts = TG.counts("risk", who, county.rep.as_of, home=report_bank.home)
    hits = {(r["ruleset"], r["rule"]): r["hits"] for r in county.figure("targets.rules")}
    for rule in counts.attrs["rules"]:
        assert hits[("risk", rule)] == int(counts[rule].sum())
    by_org = _by(county.figure("targets.by_org"), "org")
    assert sum(r["risk"] for r in by_org.values()) == int(counts["n_customers"].sum())


def test_churn_figures_equal_the_scores(county: Run, report_bank: Bank) -> None:
    from cimlib import churn as C

    rep = county.rep
    definition, _ = C.load_churn_params(report_bank.home).definition(None)
    path = C.scores_path(report_bank.home, rep.snapshot_id, definition, rep.as_of)
    scored = _query(
        report_bank.home,
        "SELECT count(*) FROM read_parquet($p) s JOIN dim_customer d USING "
        "(customer_id) WHERE d.county_code = $c",
        {"p": str(path), "c": COUNTY},
    )[0][0]
    summary = {r["measure"]: r["value"] for r in county.figure("churn.summary")}
    assert summary["scored"] == scored
    wl = C.watchlist(rep.principal, rep.as_of, home=report_bank.home)
    assert summary["watchlist"] == len(wl)
    assert summary["value_at_risk"] == pytest.approx(float(wl["risk_x_value"].sum()), abs=0.01)
    reasons = county.figure("churn.reasons")
    assert reasons and all(r["reason"] != "other" for r in reasons), reasons


# ------------------------------------------------------------------------------------------- editions
def test_county_edition_shows_no_other_county(county: Run, report_bank: Bank) -> None:
    others = [
        r[0]
        for r in _query(
            report_bank.home,
            "SELECT org_code FROM core_org WHERE org_level IN "
            "('COUNTY', 'BRANCH') AND org_code NOT LIKE '101%'",
        )
    ]
    assert len(others) > 50
    pattern = re.compile(r"(?<![\d.])(" + "|".join(others) + r")(?!\d|\.\d)")
    hit = pattern.search(county.text)
    assert hit is None, county.text[max(0, hit.start() - 200) : hit.end() + 100] if hit else ""
    names = [
        r[0]
        for r in _query(
            report_bank.home,
            "SELECT org_name FROM core_org WHERE org_level = 'COUNTY' AND org_code <> $c",
            {"c": COUNTY},
        )
    ]
    assert not [n for n in names if n in county.text]


def test_county_lists_are_attached_split_by_branch_and_masked(county: Run, report_bank: Bank) -> None:
    from openpyxl import load_workbook

    from cimlib import targeting as TG

    out = county.out
    assert out is not None
    names = TG.list_rulesets(report_bank.home)
    for name in names:
        assert f"attachments/targets-{name}.xlsx" in county.rep.attachments
    assert "attachments/churn-watchlist.xlsx" in county.rep.attachments
    assert "attachments/tables.xlsx" in county.rep.attachments
    assert (out / "figures.json").is_file()
    seen_id = seen_name = False
    for rel in county.rep.attachments:
        path = out / rel
        assert path.is_file(), rel
        if not rel.startswith("attachments/targets-"):
            continue
        wb = load_workbook(path, read_only=True)
        for ws in wb.worksheets:
            if ws.title == "about":
                continue
            assert ws.title.startswith("101"), ws.title  # one sheet per branch of the county
            rows = list(ws.iter_rows(values_only=True))
            head = list(rows[0])
            assert "证件号码" in head, head  # localized headers
            i_id, i_name, i_org = head.index("证件号码"), head.index("客户名称"), head.index("机构号")
            i_type = head.index("客户类型")
            for r in rows[1:]:
                if r[i_org] is None:
                    continue
                assert str(r[i_org]).startswith("101")
                if r[i_id] and r[i_type] == "I":  # a person's ID number (a company's credit code is not C2)
                    assert "*" in str(r[i_id]), "ID numbers are masked for the county role"
                    seen_id = True
                if r[i_name] and "*" not in str(r[i_name]):
                    seen_name = True  # names are unmasked for the county manager (access.yaml)
    assert seen_id and seen_name


def test_provincial_edition_has_no_customer_and_no_list(province: Run, report_bank: Bank) -> None:
    assert province.rep.attachments == ["attachments/tables.xlsx"]
    assert sorted(p.name for p in (province.out / "attachments").iterdir()) == ["tables.xlsx"]  # type: ignore[operator]
    for key, records in province.rep.figures.items():
        cols = set(records[0]) if records else set()
        assert not cols & {"customer_id", "cust_name", "id_no", "phone", "link"}, key
    text = province.text
    assert not CUSTOMER_ID.search(text), CUSTOMER_ID.search(text)
    names = [
        r[0]
        for r in _query(
            report_bank.home,
            "SELECT cust_name FROM dim_customer WHERE length(cust_name) >= 3 ORDER BY customer_id LIMIT 300",
        )
    ]
    leaked = [n for n in names if n in text]
    assert not leaked, leaked[:5]
    assert province.rep.aggregate_only


def test_figures_json_is_byte_identical_across_runs(county: Run, report_bank: Bank, tmp_path: Path) -> None:
    again = run_pack(report_bank.home, f"county:{COUNTY}", "zh_CN", tmp_path / "again")
    assert county.out is not None
    first = (county.out / "figures.json").read_bytes()
    assert (tmp_path / "again" / "figures.json").read_bytes() == first
    data = json.loads(first)
    assert list(data) == sorted(data)
    assert "figures.json" in again.summary["files"]


def test_nothing_is_written_without_out_dir(report_bank: Bank) -> None:
    from cimlib.reports._pack import MonthlyPack

    rep = MonthlyPack(scope="province", home=report_bank.home, sink=[])
    rep.cover()
    summary = rep.finish()
    assert summary["files"] == [] and rep.attachments == []


# ----------------------------------------------------------------------------------------- the first page
def test_the_first_page_and_the_data_quality_banner(report_bank: Bank) -> None:
    from cimlib.reports._pack import MonthlyPack

    sink: list[dict[str, Any]] = []
    rep = MonthlyPack(
        scope="province",
        home=report_bank.home,
        sink=sink,
        dq_failures=["gl_tieout: 3 rows beyond tolerance", "quarantine: transaction 2.5%"],
    )
    rep.cover()
    html = "\n".join(o["html"] for o in sink)
    assert "Monthly management pack" in html and rep.snapshot_id in html and rep.period in html
    assert "Published despite data-quality failures:" in html
    assert "gl_tieout: 3 rows beyond tolerance" in html and "quarantine: transaction 2.5%" in html
    assert 'class="cim-banner"' in html

    sink2: list[dict[str, Any]] = []
    rep2 = MonthlyPack(scope=f"county:{COUNTY}", locale="zh_CN", home=report_bank.home, sink=sink2)
    rep2.cover()
    html2 = "\n".join(o["html"] for o in sink2)
    assert "月度经营管理报告" in html2 and f"({COUNTY})" in html2 and "县级行社管理人员" in html2
    assert 'class="cim-banner"' not in html2


# ----------------------------------------------------------------------------------------- snapshot check
def test_a_rebuilt_warehouse_fails_the_report(report_bank: Bank) -> None:
    from cimlib.reports import ReportError
    from cimlib.reports._pack import MonthlyPack

    rep = MonthlyPack(
        scope="province", home=report_bank.home, sink=[], snapshot_id="20200101T000000000Z-000000"
    )
    rep.cover()
    rep.product()
    with pytest.raises(ReportError, match="rebuilt while the report ran"):
        rep.finish()

    ok = MonthlyPack(scope="province", home=report_bank.home, sink=[])
    ok = MonthlyPack(scope="province", home=report_bank.home, sink=[], snapshot_id=ok.snapshot_id)
    frame = pd.DataFrame({"label": ["a"], "customers": [1]})
    frame.attrs["snapshot_id"] = "20990101T000000000Z-ffffff"  # a frame read from a newer snapshot
    ok.table("x.other", frame)
    with pytest.raises(ReportError, match="rebuilt while the report ran"):
        ok.finish()


# ---------------------------------------------------------------------------------------- parameters
def test_bad_parameters_are_refused(report_bank: Bank) -> None:
    from cimlib.reports import ReportParamsError
    from cimlib.reports._dq import DataQualityReport
    from cimlib.reports._pack import MonthlyPack

    with pytest.raises(ReportParamsError, match="unknown parameter 'bogus'"):
        MonthlyPack(scope="province", bogus=1, home=report_bank.home, sink=[])
    with pytest.raises(ReportParamsError, match="top_n"):
        MonthlyPack(scope="province", top_n=0, home=report_bank.home, sink=[])
    with pytest.raises(ReportParamsError, match="made for province"):
        DataQualityReport(scope=f"county:{COUNTY}", home=report_bank.home, sink=[])
    with pytest.raises(ReportParamsError, match="1999-01"):
        MonthlyPack(scope="province", period="1999-01", home=report_bank.home, sink=[])


def test_a_month_without_churn_scores_says_so(report_bank: Bank) -> None:
    from cimlib.reports._pack import MonthlyPack

    months = MonthlyPack(scope="province", home=report_bank.home, sink=[]).dates
    sink: list[dict[str, Any]] = []
    rep = MonthlyPack(
        scope=f"county:{COUNTY}", period=f"{months[-2]:%Y-%m}", home=report_bank.home, sink=sink
    )
    rep.churn()
    html = "\n".join(o.get("html", "") for o in sink)
    assert "No churn scores for" in html
    assert not [k for k in rep.figures if k.startswith("churn.")]


# ------------------------------------------------------------------------------------------- primitives
def test_cells_format_as_the_locale_says() -> None:
    from cimlib.reports._document import MISSING, format_value, plain_value

    assert format_value(None, "money", "en") == MISSING
    assert format_value(float("nan"), "count", "zh_CN") == MISSING
    assert format_value(123456.78, "money", "zh_CN") == "12.35"
    assert format_value(123456.78, "money", "en") == "123,457"
    assert format_value(0.12345, "percent", "en") == "12.35%"
    assert format_value(0.0123, "pp", "en", signed=True) == "+1.23 pp"
    assert format_value(1234, "count", "en") == "1,234"
    assert format_value(-0.05, "percent", "en", signed=True) == "-5.00%"
    assert plain_value(float("nan")) is None and plain_value(1.23456, "percent") == 1.2346
    assert plain_value(pd.Timestamp("2026-10-31")) == "2026-10-31"


def test_every_reason_template_is_recognised() -> None:
    from cimlib.churn import REASON_TEMPLATES
    from cimlib.churn._reasons import reason_fields
    from cimlib.reports._pack import classify_reason

    for lang in ("en", "zh_CN"):
        for feature, tpl in REASON_TEMPLATES.items():
            for value in (-0.37, 0.42, 1.0, 0.0, 12.0, 250000.0):
                fields = reason_fields(feature, value, 0.1, lang)
                try:
                    text = tpl[lang].format(**fields) if isinstance(tpl, dict) else tpl(fields, lang)
                except (ValueError, KeyError):
                    continue
                assert classify_reason(text, lang) == feature, (lang, feature, text)


def test_locale_fragments_have_the_same_keys() -> None:
    from cimlib.i18n import locale_keys

    en = {k for k in locale_keys("en") if k.startswith("report.")}
    zh = {k for k in locale_keys("zh_CN") if k.startswith("report.")}
    assert en == zh and len(en) > 200


# ------------------------------------------------------------------------------------ data-quality report
@pytest.fixture(scope="module")
def dq_bank(report_bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the report bank whose latest load quarantined rows: a negative amount, an unknown channel
    and a duplicated transaction id, re-ingested."""
    home = tmp_path_factory.mktemp("dq_bank") / "home"
    shutil.copytree(report_bank.home, home, symlinks=True)
    latest = sorted(p for p in (home / "data" / "raw").iterdir() if p.name[:1].isdigit())[-1]
    path = latest / "CORE_transaction.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    head = lines[0].split(",")
    i_amount, i_channel = head.index("amount"), head.index("channel")
    f = lines[1].split(",")
    f[i_amount] = "-5.00"
    lines[1] = ",".join(f)
    f = lines[2].split(",")
    f[i_channel] = "PIGEON"
    lines[2] = ",".join(f)
    lines[3] = lines[4]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_cim("ingest", str(latest), "--json", home=home)
    return home


def test_the_data_quality_report_lists_reasons_and_contracts(dq_bank: Path, tmp_path: Path) -> None:
    from cimlib.engine import current_snapshot
    from cimlib.reports._dq import DataQualityReport

    sink: list[dict[str, Any]] = []
    rep = DataQualityReport(scope="province", locale="en", out_dir=str(tmp_path), home=dq_bank, sink=sink)
    for section in rep.sections():
        getattr(rep, section)()
    reasons = {r["reason"]: r["rows"] for r in rep.figures["quarantine.by_reason"]}
    assert reasons == {"duplicate_key": 2, "out_of_range": 1, "unknown_code": 1}
    html = "\n".join(o.get("html", "") for o in sink)
    assert "Duplicate key" in html and "Unknown code" in html
    loads = _by(rep.figures["loads.tables"], "table")
    assert loads["transaction"]["rows_quarantined"] == 4
    for r in rep.figures["loads.tables"]:
        assert r["rows_read"] == r["rows_loaded"] + r["rows_quarantined"]
    from cimlib.config import get_home

    results = (current_snapshot(get_home(dq_bank)) or {})["contracts"]["results"]
    layers = rep.figures["contracts.by_layer"]
    assert sum(r["tests"] for r in layers) == len(results)
    assert sum(r["pass"] for r in layers) == sum(r["status"] == "pass" for r in results)
    assert {r["name"] for r in rep.figures["gate.checks"]} == {"gl_tieout", "contracts", "quarantine"}
    trend = rep.figures["trend.loads"]
    assert len(trend) == min(13, len(rep.dates)) and trend[-1]["rows_quarantined"] == 4
    assert {"quarantine.by_reason", "trend.quarantine", "tieout.differences"} <= set(rep.charts)
    assert (tmp_path / "figures.json").is_file() and (tmp_path / "attachments" / "tables.xlsx").is_file()
