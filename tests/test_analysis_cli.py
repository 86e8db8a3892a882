"""``cim analysis NAME``: every registered analysis parses its own options, runs as the named user, writes
its frame and chart, and reports bad input with the right exit code (the CLI is generated from the
functions' signatures, so these tests are what keeps it honest)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cimlib.analysis._cli import REGISTRY, _options
from tests.conftest import Bank, run_cim


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_entry_loads_its_function_and_chart(name: str) -> None:
    e = REGISTRY[name]
    fn = e.load()
    assert callable(fn) and (e.chart is None or callable(e.load_chart()))
    names = {o[0] for o in _options(fn)}
    assert not names & {"principal", "home", "lang", "org", "as_of"}


def test_overview_json_matches_the_function(analysis_bank: Bank) -> None:
    from cimlib.access import principal_for
    from cimlib.analysis import overview

    out = json.loads(run_cim("analysis", "overview", "--as", "county_mgr_101", "--json",
                             home=analysis_bank.home).stdout)  # fmt: skip
    frame = overview(principal_for("county_mgr_101", analysis_bank.home), home=analysis_bank.home)
    got = {r["measure"]: r["current"] for r in out["rows"]}
    want = dict(zip(frame["measure"], frame["current"], strict=True))
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert (got[k] is None) if v != v else got[k] == pytest.approx(v, rel=1e-9), k  # NaN is JSON null
    assert out["attrs"]["org"] == "101000"


def test_options_files_and_charts(analysis_bank: Bank, tmp_path: Path) -> None:
    home = analysis_bank.home
    xlsx, png = tmp_path / "league.xlsx", tmp_path / "league.png"
    run_cim("analysis", "league", "--as", "county_mgr_101", "--member", "branch", "--measure", "deposit_adb",
            "--out", str(xlsx), "--chart", str(png), home=home)  # fmt: skip
    frame = pd.read_excel(xlsx)
    assert len(frame) > 0 and set(frame["org_code"].astype(str).str[:3]) == {"101"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    csv = tmp_path / "groups.csv"
    run_cim("analysis", "group-value", "--as", "county_mgr_101", "--groups", "dim:aum", "--out", str(csv),
            home=home)  # fmt: skip
    g = pd.read_csv(csv)
    assert g["customer_share"].sum() == pytest.approx(1.0)
    flow = json.loads(run_cim("analysis", "channel-volume", "--as", "prov_analyst", "--by-txn-type", "--json",
                              home=home).stdout)  # fmt: skip
    assert {"txn_type", "channel"} <= set(flow["rows"][0])


def test_bad_input_exit_codes(analysis_bank: Bank) -> None:
    home = analysis_bank.home
    missing = run_cim("analysis", "group-value", "--as", "prov_analyst", home=home, check=False)
    assert missing.returncode == 2 and "--groups" in missing.stderr
    bad_dim = run_cim("analysis", "group-value", "--as", "prov_analyst", "--groups", "dim:nope", home=home,
                      check=False)  # fmt: skip
    assert bad_dim.returncode == 2 and "nope" in bad_dim.stderr
    bad_month = run_cim("analysis", "overview", "--as", "prov_analyst", "--as-of", "1999-01", home=home,
                        check=False)  # fmt: skip
    assert bad_month.returncode == 2
    other_county = run_cim("analysis", "overview", "--as", "county_mgr_101", "--org", "102000", home=home,
                           check=False)  # fmt: skip
    assert other_county.returncode == 1 and "not permitted" in other_county.stderr
    auditor = run_cim("analysis", "overview", "--as", "auditor", home=home, check=False)
    assert auditor.returncode == 1
    drill = run_cim("analysis", "overview-customers", "--as", "prov_analyst", home=home, check=False)
    assert drill.returncode == 1 and "aggregates only" in drill.stderr
    cols = run_cim("analysis", "overview", "--as", "prov_analyst", "--columns", "nope", home=home,
                   check=False)  # fmt: skip
    assert cols.returncode == 2 and "--columns" in cols.stderr
