"""OLAP cubes: totals tie out to the wide table, subtotals to their children, drill-through to the cells;
scope, small-cell suppression, filters, storage keys and errors."""

from __future__ import annotations

import json
import os
import shutil
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, Bank, run_cim

from cimlib.access import NotPermitted, PolicyError, load_policy, principal_for, warehouse
from cimlib.config import Home
from cimlib.segmentation import DEFAULT_DIMS, CubeError, build_cube, drill, drill_down, load_dimensions, pivot
from cimlib.segmentation._cube import TOTAL, _grouping_sets, level_of


@pytest.fixture(scope="module")
def home(bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> Home:
    """The bank's warehouse with this module's own parameters and audit log."""
    root = tmp_path_factory.mktemp("cube_home")
    (root / "data").mkdir()
    os.symlink(bank.home / "data" / "warehouse", root / "data" / "warehouse")
    shutil.copytree(ROOT / "parameters", root / "parameters")
    return Home(root=root, parameters=root / "parameters")


def q(home: Home, sql: str, params: list | None = None) -> list[tuple]:
    return warehouse(home).snapshot().query(sql, params or [])[1]


def latest(home: Home) -> str:
    return str(q(home, "SELECT max(as_of_date) FROM mart_customer_wide")[0][0])


def test_cube_file_is_keyed_by_snapshot_and_dims_version(home: Home) -> None:
    info = build_cube(home)
    snap = warehouse(home).snapshot()
    dims = load_dimensions(home)
    assert info.path.parent == home.warehouse / "cubes" / snap.snapshot_id / dims.version
    assert info.path.name == f"{latest(home)[:7]}.parquet"
    assert info.dimensions == DEFAULT_DIMS
    meta = json.loads(info.path.with_suffix(".json").read_text())
    assert meta["snapshot_id"] == snap.snapshot_id and meta["dims_version"] == dims.version
    assert meta["as_of"] == latest(home) and meta["rows"] == info.rows > 0
    assert {"built_at", "timings", "dimensions"} <= set(meta)
    again = build_cube(home)
    assert not again.built and again.path == info.path
    assert not list(info.path.parent.glob(".*tmp"))  # written by rename, no leftovers


def test_grand_total_equals_the_wide_table(home: Home) -> None:
    info = build_cube(home)
    t = pq.read_table(info.path).to_pandas()
    grand = t[t["level"] == level_of(info.dimensions, [])]
    assert len(grand) == 1
    day = latest(home)
    want = q(
        home,
        "SELECT count(*), sum(deposit_adb), sum(aum), sum(loan_balance), sum(npl_balance), "
        "sum(credit_line_amount), sum(credit_line_used), sum(txn_amount), sum(txn_count) "
        "FROM mart_customer_wide WHERE as_of_date = ?",
        [day],
    )[0]
    g = grand.iloc[0]
    assert g["customers"] == want[0]
    for i, m in enumerate(
        ["deposit_adb", "aum", "loan_balance", "npl_balance", "credit_line_amount", "credit_line_used",
         "txn_amount"], start=1
    ):  # fmt: skip
        assert Decimal(g[m]) == want[i], m  # money ties out exactly (stored as DECIMAL)
    assert g["txn_count"] == want[8]
    # an earlier month (not the wide table's) ties out to the month facts
    first = str(q(home, "SELECT min(as_of_date) FROM mart_customer_month")[0][0])
    early = pq.read_table(build_cube(home, first[:7]).path).to_pandas()
    e = early[early["level"] == level_of(info.dimensions, [])].iloc[0]
    w = q(home, "SELECT count(*), sum(aum) FROM mart_customer_month WHERE as_of_date = ?", [first])[0]
    assert e["customers"] == w[0] and Decimal(e["aum"]) == w[1]


def test_every_subtotal_equals_the_sum_of_its_children(home: Home) -> None:
    info = build_cube(home)
    t = pq.read_table(info.path).to_pandas()
    dims = list(info.dimensions)
    measures = ["customers", "loan_customers", "txn_count"]
    sets = _grouping_sets(load_dimensions(home).items and [load_dimensions(home)[d] for d in dims])
    assert len(sets) == 48  # 2^6 minus the 16 sets with branch but not county
    checked = 0
    for s in sets:
        parent = t[t["level"] == level_of(dims, s)]
        for extra in dims:
            if extra in s or (extra == "branch" and "county" not in s):
                continue
            child = t[t["level"] == level_of(dims, [*s, extra])]
            keys = [f"dim_{d}" for d in s]
            summed = child.groupby(keys)[measures].sum() if keys else child[measures].sum().to_frame().T
            mine = parent.set_index(keys)[measures] if keys else parent[measures].reset_index(drop=True)
            if keys:
                assert (summed.sort_index() == mine.sort_index()).all().all(), (s, extra)
            else:
                assert (summed.to_numpy() == mine.to_numpy()).all(), extra
            checked += 1
    assert checked > 100


def test_pivot_subtotals_shares_and_change(home: Home) -> None:
    p = principal_for("county_mgr_101", home)
    df = pivot(p, "customer_type", "deposit_adb", home=home)
    inner = df.drop(index=TOTAL, columns=TOTAL).fillna(0)
    assert (inner.sum(axis=1) == df[TOTAL].drop(TOTAL)).all()
    assert (inner.sum(axis=0) == df.loc[TOTAL].drop(TOTAL)).all()
    assert df.loc[TOTAL, TOTAL] == inner.to_numpy().sum()
    share = df.attrs["share"]
    assert share[TOTAL][TOTAL] == 1.0
    assert abs(sum(v for k, v in share[TOTAL].items() if k != TOTAL and v) - 1) < 1e-9
    assert df.attrs["prev_month"] is not None and df.attrs["mom"] is not None
    assert df.attrs["year_ago"] is None and df.attrs["yoy"] is None  # 4 months only
    assert df.attrs["row_labels"]["I"] == "Individual" and df.attrs["row_labels"][TOTAL] == "Total"
    zh = pivot(p, "customer_type", home=home, lang="zh_CN")
    assert zh.attrs["row_labels"][TOTAL] == "合计"
    avg = pivot(p, "customer_type", measure="avg_aum", home=home)
    tot = pivot(p, "customer_type", measure="aum", home=home)
    n = pivot(p, "customer_type", home=home)
    assert avg.loc["I", TOTAL] == pytest.approx(tot.loc["I", TOTAL] / n.loc["I", TOTAL])


def test_county_manager_sees_only_their_county(home: Home) -> None:
    p = principal_for("county_mgr_101", home)
    day = latest(home)
    want = q(
        home, "SELECT count(*), sum(aum) FROM mart_customer_wide WHERE as_of_date = ? AND county_code = ?",
        [day, p.org_code],
    )[0]  # fmt: skip
    df = pivot(p, "deposit_adb", home=home)
    assert df.loc[TOTAL, TOTAL] == want[0]
    aum = pivot(p, "aum", measure="aum", home=home)
    assert aum.loc[TOTAL, TOTAL] == pytest.approx(float(want[1]))
    by_county = pivot(p, "county", home=home)
    assert list(by_county.index) == [p.org_code, TOTAL]
    # a branch manager and a customer manager: their own customers only
    b = principal_for("branch_mgr_101001", home)
    nb = q(home, "SELECT count(*) FROM mart_customer_wide WHERE as_of_date = ? AND home_org_code = ?",
           [day, b.org_code])[0][0]  # fmt: skip
    assert pivot(b, "customer_type", home=home).loc[TOTAL, TOTAL] == nb
    cm = principal_for("cust_mgr_e1000005", home)
    nm = q(home, "SELECT count(*) FROM mart_customer_wide WHERE as_of_date = ? AND manager_no = ?",
           [day, cm.staff_no])[0][0]  # fmt: skip
    got = pivot(cm, "customer_type", "deposit_adb", home=home)
    assert nm > 0 and got.loc[TOTAL, TOTAL] == nm
    with pytest.raises(NotPermitted):
        pivot(principal_for("auditor", home), "customer_type", home=home)


def test_small_cells_are_suppressed_for_aggregate_only_roles(home: Home) -> None:
    k = load_policy(home).aggregate_min_cell
    assert k == 5
    prov = principal_for("prov_analyst", home)
    assert prov.min_cell == k and not prov.can_view_detail
    df = pivot(prov, "branch", "aum", home=home)
    n = pivot(principal_for("county_mgr_101", home), "branch", "aum", home=home)  # detail: unsuppressed
    sup = df.attrs["suppressed"]
    cust = df.attrs["customers"]
    small = [(r, c) for r, row in cust.items() for c, v in row.items() if v is None]
    assert small, "the fixture has small branch x AUM cells"
    for r, row in sup.items():
        for c, flagged in row.items():
            if flagged:
                assert df.loc[r, c] != df.loc[r, c]  # NaN
    raw = pivot(prov, "branch", "aum", home=home)
    assert raw.attrs["min_cell"] == k
    # every cell under k is suppressed
    full = pivot(principal_for("county_mgr_101", home), "county", "aum", home=home)
    assert not any(v for row in full.attrs["suppressed"].items() for v in row[1].values())
    assert not any(v for row in n.attrs["suppressed"].values() for v in row.values())
    # the county manager sees the cells under k of their county
    # (the county's subtotals are not the province's: a county total under k is no small cell for prov)
    under = [(r, c) for r, row in n.attrs["customers"].items() for c, v in row.items()
             if v and 0 < v < k and "_total" not in (r, c)]  # fmt: skip
    assert under, "the county has small cells"
    for r, c in under:
        assert sup[r][c] and df.loc[r, c] != df.loc[r, c]


def test_min_cell_is_validated(tmp_path: Path) -> None:
    params = tmp_path / "parameters"
    params.mkdir()
    policy = yaml.safe_load((ROOT / "parameters" / "access.yaml").read_text(encoding="utf-8"))
    policy["aggregate_min_cell"] = 0
    (params / "access.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PolicyError, match="aggregate_min_cell"):
        load_policy(Home(root=tmp_path, parameters=params))


def test_filters_slice_and_dice(home: Home) -> None:
    p = principal_for("county_mgr_101", home)
    day = latest(home)
    df = pivot(p, "deposit_adb", filters={"customer_type": ["C"]}, home=home)
    want = q(home, "SELECT count(*) FROM mart_customer_wide WHERE as_of_date = ? AND county_code = ? "
             "AND customer_type = 'C'", [day, p.org_code])[0][0]  # fmt: skip
    assert df.loc[TOTAL, TOTAL] == want
    whole = pivot(p, "deposit_adb", "aum", home=home)
    dice = pivot(p, "deposit_adb", filters={"aum": ["A0", "A1"]}, home=home) if "A0" in dict(
        load_dimensions(home)["aum"].members) else None  # fmt: skip
    if dice is not None:
        assert dice.loc[TOTAL, TOTAL] == whole.loc[TOTAL, ["A0", "A1"]].fillna(0).sum()
    down = drill_down(p, "county", p.org_code, home=home)
    assert down.index.name == "branch" and down.loc[TOTAL, TOTAL] == whole.loc[TOTAL, TOTAL]


def test_drill_through_count_equals_the_cell(home: Home) -> None:
    p = principal_for("county_mgr_101", home)
    df = pivot(p, "customer_type", "deposit_adb", home=home)
    cell_n = int(df.loc["I", "D1"])
    lst = drill(p, {"customer_type": "I", "deposit_adb": "D1"}, home=home, limit=10)
    assert lst.attrs["total"] == cell_n and len(lst) == min(10, cell_n)
    assert set(lst["county_code"]) == {p.org_code}
    assert lst["link"].iloc[0] == f"voila/render/customer_360.ipynb?customer={lst['customer_id'].iloc[0]}"
    assert all("*" in x for x in lst["id_no"].dropna())  # ID numbers masked; names in clear for this role
    assert not any("*" in x for x in lst["cust_name"].dropna())
    all_n = drill(p, {"deposit_adb": TOTAL}, home=home, limit=5000)
    assert all_n.attrs["total"] == df.loc[TOTAL, TOTAL] == len(all_n)
    rec = [r for r in read_audit_all(home) if r["action"] == "segment_drill"]
    assert rec and rec[-1]["detail"]["n_customers"] == all_n.attrs["total"]
    with pytest.raises(NotPermitted):
        drill(principal_for("prov_analyst", home), {"customer_type": "I"}, home=home)
    refused = [r for r in read_audit_all(home) if r["action"] == "segment_drill"][-1]
    assert refused["outcome"] == "refused"


def read_audit_all(home: Home) -> list[dict]:
    from cimlib.access._audit import _records, audit_dir

    return _records(audit_dir(home), None)


def test_bad_dimension_member_and_measure_give_clear_errors(home: Home) -> None:
    p = principal_for("county_mgr_101", home)
    with pytest.raises(CubeError, match="did you mean 'deposit_adb'"):
        pivot(p, "deposit_abd", home=home)
    with pytest.raises(CubeError, match="unknown measure"):
        pivot(p, "county", measure="customer", home=home)
    with pytest.raises(CubeError, match="no member"):
        pivot(p, "county", filters={"deposit_adb": ["D9"]}, home=home)
    with pytest.raises(CubeError, match="did you mean"):
        build_cube(home, dims=["countyy"])


def test_cli_segment(home: Home, bank: Bank) -> None:
    out = run_cim("segment", "build", "--json", home=bank.home)
    assert json.loads(out.stdout)["rows"] > 0
    out = run_cim("segment", "pivot", "--as", "county_mgr_101", "--rows", "customer_type", "--cols",
                  "deposit_adb", "--filter", "customer_type=I", "--json", home=bank.home)  # fmt: skip
    got = json.loads(out.stdout)
    assert got["cells"][TOTAL][TOTAL] > 0
    out = run_cim("segment", "drill", "--as", "county_mgr_101", "--cell", "customer_type=I", "--json",
                  home=bank.home)  # fmt: skip
    assert json.loads(out.stdout)["total"] == got["cells"][TOTAL][TOTAL]
    bad = run_cim("segment", "pivot", "--as", "county_mgr_101", "--rows", "countyy", home=bank.home,
                  check=False)  # fmt: skip
    assert bad.returncode == 2 and "did you mean" in bad.stderr


def test_period_pivot_is_each_months_cube(home: Home) -> None:
    """The period on an axis: one column per month, each equal to that month's own pivot."""
    who = principal_for("county_mgr_101", home)
    trend = pivot(who, "customer_type", "period", measure="deposit_adb", home=home)
    months = trend.attrs["months"]
    assert len(months) == 4 and months == sorted(months) and list(trend.columns) == months
    assert TOTAL not in trend.columns  # no total over months: balances are stocks
    for m in months:
        one = pivot(who, "customer_type", measure="deposit_adb", as_of=m, home=home)
        assert trend.loc[TOTAL, m] == pytest.approx(one.loc[TOTAL, TOTAL])
        assert trend.loc["I", m] == pytest.approx(one.loc["I", TOTAL])
    rows = pivot(who, "period", "customer_type", home=home, filters={"period": months[-2:]})
    assert list(rows.index) == months[-2:] and rows.attrs["filters"]["period"] == months[-2:]
    with pytest.raises(CubeError, match="different dimensions"):
        pivot(who, "period", "period", home=home)


def test_contribution_is_a_measure_and_a_dimension(home: Home) -> None:
    """The cube's contribution is the value module's, summed; the contribution buckets cover everyone."""
    from cimlib.value import contribution

    who = principal_for("county_mgr_101", home)
    grid = pivot(who, "contribution", "customer_type", measure="contribution", home=home)
    want = contribution(who, home=home)["contribution"].sum()
    assert float(grid.loc[TOTAL, TOTAL]) == pytest.approx(float(want), abs=0.05)
    counts = pivot(who, "contribution", home=home)
    assert counts.loc[TOTAL, TOTAL] == len(contribution(who, home=home))
    assert "CT_NA" not in counts.index  # every customer of the month has a contribution
