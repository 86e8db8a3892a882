"""System management of parameters/: `cim params check`, `diff` and `apply`."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import types
from pathlib import Path

import duckdb
import pytest

from cimlib.cli import main
from cimlib.config import (
    DEPENDENCIES,
    OUTPUTS,
    Home,
    ParamsError,
    apply_parameters,
    check_parameters,
    dependents,
    diff_dimensions,
)
from cimlib.config import _params as P
from cimlib.segmentation import DimensionError, load_dimensions
from tests.conftest import Bank

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / "parameters"
USER = "prov_analyst"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """A CIM_HOME with its own copy of the project's parameters and no warehouse."""
    shutil.copytree(PARAMS, tmp_path / "parameters")
    monkeypatch.setenv("CIM_HOME", str(tmp_path))
    monkeypatch.delenv("CIM_PARAMETERS", raising=False)
    return Home(root=tmp_path, parameters=tmp_path / "parameters")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def _moved_edge(text: str) -> str:
    """``text`` with the deposit ADB edge between D1 and D2 moved from 50k to 80k."""
    return text.replace(D1, D1.replace("max: 50000", "max: 80000")).replace(
        D2, D2.replace("50000,", "80000,")
    )


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in ln)


D1 = "{id: D1, label: {en: 10k-50k, zh: 1-5万}, min: 10000, max: 50000}"
D2 = "{id: D2, label: {en: 50k-200k, zh: 5-20万}, min: 50000, max: 200000}"


# ------------------------------------------------------------------------------------------------ check
def test_check_passes_on_the_project_parameters(home: Home) -> None:
    assert check_parameters(home) == []
    assert main(["params", "check", "--home", str(home.root)]) == 0


def test_check_reports_every_broken_file(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(home.parameters / "access.yaml", "users:", "colour: blue\nusers:")
    _edit(home.parameters / "customer360.yaml", "\ntrend_months:", "\ntrend_months: 0\nx_trend_months:")
    (home.parameters / "targeting" / "broken.yaml").write_text("name: [\n", encoding="utf-8")
    problems = check_parameters(home)
    files = {p.file for p in problems}
    assert files == {"access.yaml", "customer360.yaml", "targeting/broken.yaml"}, problems
    for p in problems:
        assert str(home.parameters / p.file) in p.message  # each message names its file
    access = next(p for p in problems if p.file == "access.yaml")
    assert "colour" in access.message and f"line {_line_of(home.parameters / 'access.yaml', 'colour')}" in (
        access.message
    )
    capsys.readouterr()
    assert main(["params", "check", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert {p["file"] for p in out["problems"]} == files


@pytest.mark.parametrize(
    ("new_d2", "words"),
    [
        (
            "{id: D2, label: {en: 50k-200k, zh: 5-20万}, min: 60000, max: 200000}",
            ["gap between 50000 and 60000"],
        ),
        (
            "{id: D2, label: {en: 50k-200k, zh: 5-20万}, min: 40000, max: 200000}",
            ["overlap from 40000 to 50000"],
        ),
    ],
)
def test_gap_and_overlap_name_the_dimension_and_line(home: Home, new_d2: str, words: list[str]) -> None:
    path = home.parameters / "dimensions.yaml"
    _edit(path, D2, new_d2)
    line = _line_of(path, new_d2)
    problems = check_parameters(home)
    assert [p.file for p in problems] == ["dimensions.yaml"]
    msg = problems[0].message
    assert str(path) in msg and "dimension deposit_adb" in msg and f"(line {line})" in msg, msg
    for w in words:
        assert w in msg, msg
    with pytest.raises(DimensionError, match=f"line {line}.*deposit_adb"):
        P.load_proposed_dimensions(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------- diff
_SMALL = """
version: 1
dimensions:
  - id: adb
    label: {{en: ADB, zh: 日均}}
    kind: buckets
    column: deposit_adb
    applies: {applies}
    buckets:
      - {{id: A, label: {{en: low, zh: 低}}, max: {edge1}}}
      - {{id: B, label: {{en: mid, zh: 中}}, min: {edge1}, max: 50000}}
      - {{id: C, label: {{en: high, zh: 高}}, min: 50000}}
  - id: ctype
    label: {{en: Type, zh: 类型}}
    kind: codes
    column: customer_type
    code_list: customer_type
"""


def _dims(tmp_path: Path, name: str, **kw: object) -> object:
    p = tmp_path / name
    p.write_text(_SMALL.format(**{"applies": "[I, C]", "edge1": 10000, **kw}), encoding="utf-8")
    return load_dimensions(path=p)


def test_diff_on_a_hand_built_fixture(tmp_path: Path) -> None:
    con = duckdb.connect()
    rows = "('c1', 'I', 5000.0), ('c2', 'I', 15000.0), ('c3', 'C', 12000.0), ('c4', 'I', 25000.0), "
    rows += "('c5', 'C', 60000.0), ('c6', 'I', 19999.0)"
    con.execute(
        f"CREATE TABLE seg AS SELECT * FROM (VALUES {rows}) AS t(customer_id, customer_type, deposit_adb)"
    )
    old = _dims(tmp_path, "old.yaml")
    new = _dims(tmp_path, "new.yaml", edge1=20000, applies="[I]")
    frame = P.move_frame(con, "SELECT * FROM seg", old, new)  # type: ignore[arg-type]
    assert frame.attrs["unchanged"] == ["ctype"]
    got = {(r.from_member, r.to_member): (r.customers, r.deposit_adb, r.moved) for r in frame.itertuples()}
    # Edge 10k -> 20k: c2 (15k) and c6 (19,999) move B -> A; corporates leave the dimension (applies: [I]).
    assert got == {
        ("A", "A"): (1, 5000.0, False),
        ("B", "A"): (2, 34999.0, True),
        ("B", None): (1, 12000.0, True),
        ("B", "B"): (1, 25000.0, False),
        ("C", None): (1, 60000.0, True),
    }
    assert list(frame["from_member"]) == ["A", "B", "B", "B", "C"]  # old member order, then new
    assert set(frame["dimension"]) == {"adb"} and set(frame["change"]) == {"changed"}
    assert frame.loc[frame["to_member"] == "A", "to_label"].tolist() == ["low", "low"]
    same = P.move_frame(con, "SELECT * FROM seg", old, old)  # type: ignore[arg-type]
    assert same.empty and same.attrs["unchanged"] == ["adb", "ctype"]


def test_diff_rejects_an_invalid_proposal(bank: Bank) -> None:
    text = (
        (PARAMS / "dimensions.yaml").read_text(encoding="utf-8").replace(D2, D2.replace("50000,", "60000,"))
    )
    with pytest.raises(DimensionError, match=r"proposed dimensions\.yaml.*deposit_adb.*gap"):
        diff_dimensions(bank.home, text)


def test_diff_moving_one_edge_on_the_bank(bank: Bank, capsys: pytest.CaptureFixture[str]) -> None:
    from cimlib.customer._data import as_of_dates, snapshot

    text = _moved_edge((PARAMS / "dimensions.yaml").read_text(encoding="utf-8"))
    frame = diff_dimensions(bank.home, text)
    assert set(frame["dimension"]) == {"deposit_adb"}
    moved = frame[frame["moved"]]
    assert [(r.from_member, r.to_member) for r in moved.itertuples()] == [("D2", "D1")]
    snap = snapshot(bank.home)
    last = as_of_dates(snap)[-1]
    with snap.lock:
        n, adb = snap.con.execute(
            "SELECT count(*), sum(deposit_adb) FROM mart_customer_month "
            "WHERE as_of_date = ? AND deposit_adb >= 50000 AND deposit_adb < 80000",
            [last],
        ).fetchone()
        total = snap.con.execute(
            "SELECT count(*) FROM mart_customer_month WHERE as_of_date = ?", [last]
        ).fetchone()
    assert n > 0 and int(moved["customers"].iloc[0]) == n
    assert float(moved["deposit_adb"].iloc[0]) == pytest.approx(float(adb))
    assert int(frame["customers"].sum()) == total[0]  # everyone is in the matrix once
    assert frame.attrs["as_of"] == last.isoformat()
    new_file = bank.home / "proposed-dimensions.yaml"
    new_file.write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert (
        main(
            ["params", "diff", str(new_file), "--home", str(bank.home), "--json", "--as-of", f"{last:%Y-%m}"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert [m["customers"] for m in out["moves"] if m["moved"]] == [n]
    assert main(["params", "diff", str(new_file), "--home", str(bank.home), "--as-of", "1999-01"]) == 2


def test_check_covers_every_customer_of_the_bank(bank: Bank, tmp_path: Path) -> None:
    assert [p for p in check_parameters(bank.home) if p.kind == "data"] == []
    closed = tmp_path / "dimensions.yaml"
    closed.write_text(
        (PARAMS / "dimensions.yaml")
        .read_text(encoding="utf-8")
        .replace(
            '{id: D0, label: {en: "Under 10k", zh: 1万以下}, max: 10000}',
            '{id: D0, label: {en: "Under 10k", zh: 1万以下}, min: 1000, max: 10000}',
        ),
        encoding="utf-8",
    )
    problems = P.coverage_problems(bank.home, load_dimensions(path=closed))
    assert [p.kind for p in problems] == ["data"]
    assert "dimension deposit_adb" in problems[0].message and "land in no member" in problems[0].message


# ------------------------------------------------------------------------------------------------ apply
def test_dependency_map() -> None:
    assert dependents("dimensions.yaml") == ["segment_cubes"]
    assert dependents("churn.yaml") == ["churn_model"]
    for f in ("targeting/risk.yaml", "targeting/_backtest.yaml", "access.yaml", "sources/default.yaml"):
        assert dependents(f) == []
    assert {n for _, names in DEPENDENCIES for n in names} <= set(OUTPUTS)
    assert all(OUTPUTS[n].runner in P.RUNNERS for n in OUTPUTS)


def _recorders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in list(P.RUNNERS):
        monkeypatch.setitem(P.RUNNERS, name, lambda h, name=name: calls.append(name) or {"status": "ok"})
    return calls


def test_apply_dimensions_rebuilds_only_the_cubes(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _recorders(monkeypatch)
    target = home.parameters / "dimensions.yaml"
    old_text = target.read_text(encoding="utf-8")
    new = tmp_path / "new.yaml"
    new.write_text(_moved_edge(old_text), encoding="utf-8")
    result = apply_parameters(home, "dimensions.yaml", new, user=USER)
    assert calls == ["cubes"]  # the churn model is not retrained
    assert result.changed and result.outputs == {"segment_cubes": {"status": "ok"}}
    assert target.read_text(encoding="utf-8") == new.read_text(encoding="utf-8")
    log = [json.loads(x) for x in (home.state / "params" / "changes.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log] == ["change", "rerun"]
    rec = log[0]
    assert rec["user"] == USER and rec["file"] == "dimensions.yaml" and rec["at"].endswith("+00:00")
    assert rec["sha256_old"] != rec["sha256_new"] and len(rec["sha256_new"]) == 64
    assert (
        "-      - {id: D1" in rec["diff"]
        and "+      - {id: D1" in rec["diff"]
        and "max: 80000" in rec["diff"]
    )
    assert rec["outputs"] == ["segment_cubes"]
    # The same file again changes nothing and triggers nothing.
    again = apply_parameters(home, "dimensions.yaml", new, user=USER)
    assert not again.changed and calls == ["cubes"] and len(P.read_changes(home)) == 2


def test_apply_other_files_trigger_nothing(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _recorders(monkeypatch)
    new = tmp_path / "risk.yaml"
    new.write_text((home.parameters / "targeting" / "risk.yaml").read_text(encoding="utf-8") + "\n# tuned\n")
    result = apply_parameters(home, "targeting/risk.yaml", new, user=USER)
    assert result.changed and result.outputs == {} and calls == []
    churn = tmp_path / "churn.yaml"
    churn.write_text((home.parameters / "churn.yaml").read_text(encoding="utf-8").replace(
        "    drop: 0.5", "    drop: 0.6"), encoding="utf-8")
    # A churn definition feeds the churn model only (no cube rebuild); without a warehouse it is skipped.
    monkeypatch.setitem(P.RUNNERS, "churn", P._run_churn)
    r = apply_parameters(home, "churn.yaml", churn, user=USER)
    assert list(r.outputs) == ["churn_model"] and r.outputs["churn_model"]["status"] == "skipped"
    assert calls == []
    # and a broken churn.yaml is refused before anything is saved
    churn.write_text("version: 1\n")
    with pytest.raises(ParamsError, match=r"churn\.yaml"):
        apply_parameters(home, "churn.yaml", churn, user=USER)


def test_apply_refuses_bad_input(home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    calls = _recorders(monkeypatch)
    target = home.parameters / "dimensions.yaml"
    before = target.read_bytes()
    bad = tmp_path / "bad.yaml"
    bad.write_text(before.decode().replace(D2, D2.replace("50000,", "40000,")), encoding="utf-8")
    with pytest.raises(ParamsError, match=r"deposit_adb.*overlap"):
        apply_parameters(home, "dimensions.yaml", bad, user=USER)
    with pytest.raises(ParamsError, match="unknown user"):
        apply_parameters(home, "dimensions.yaml", bad, user="mallory")
    good = tmp_path / "good.yaml"
    good.write_text(before.decode().replace(D2, D2.replace("5-20万", "5-20万元")), encoding="utf-8")  # valid
    with pytest.raises(ParamsError, match="may not change parameters"):  # a county manager is no admin
        apply_parameters(home, "dimensions.yaml", good, user="county_mgr_101")
    with pytest.raises(ParamsError, match="expected a YAML file of parameters/"):
        apply_parameters(home, "../secrets.yaml", bad, user=USER)
    assert target.read_bytes() == before and calls == [] and P.read_changes(home) == []
    capsys.readouterr()
    assert main(["params", "apply", str(bad), "--file", "dimensions.yaml", "--as", "mallory", "--json"]) == 2
    assert "unknown user" in json.loads(capsys.readouterr().out)["error"]


def _copy_bank(bank: Bank, dest: Path) -> Home:
    """A new home with the bank's published snapshot (read-only use) and its own parameters."""
    cur = json.loads((bank.home / "data" / "warehouse" / "CURRENT").read_text())
    snaps = dest / "data" / "warehouse" / "snapshots"
    snaps.mkdir(parents=True)
    shutil.copy2(bank.home / "data" / "warehouse" / "snapshots" / cur["file"], snaps / cur["file"])
    shutil.copy2(bank.home / "data" / "warehouse" / "CURRENT", dest / "data" / "warehouse" / "CURRENT")
    shutil.copytree(PARAMS, dest / "parameters")
    return Home(root=dest, parameters=dest / "parameters")


def test_apply_rebuilds_the_cube_of_the_new_version(bank: Bank, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    h = _copy_bank(bank, tmp_path / "home")
    try:
        cube = importlib.import_module("cimlib.segmentation._cube")
    except ImportError:  # the cube module is not there yet: a stand-in with its folder layout

        def build_cube(
            home: object = None, as_of: object = None, dims: object = None, *, dimensions: object = None
        ):
            from cimlib.customer._data import resolve_as_of, snapshot

            snap = snapshot(h)
            d = resolve_as_of(snap, as_of)
            out = h.warehouse / "cubes" / snap.snapshot_id / load_dimensions(h).version / f"{d:%Y-%m}.parquet"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(b"PAR1")
            return {"path": str(out)}

        cube = types.ModuleType("cimlib.segmentation._cube")
        cube.build_cube = build_cube  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "cimlib.segmentation._cube", cube)
    calls = _recorders(monkeypatch)
    monkeypatch.setitem(P.RUNNERS, "cubes", P._run_cubes)
    old_version = load_dimensions(h).version
    cube.build_cube(h)  # the cube of the saved dimensions
    new = tmp_path / "new.yaml"
    new.write_text(
        _moved_edge((h.parameters / "dimensions.yaml").read_text(encoding="utf-8")), encoding="utf-8"
    )
    result = apply_parameters(h, "dimensions.yaml", new, user=USER)
    assert result.outputs["segment_cubes"]["status"] == "rebuilt", result.outputs
    assert calls == []  # nothing but the cubes ran
    new_version = load_dimensions(h).version
    assert new_version != old_version
    month = result.outputs["segment_cubes"]["as_of"]
    snap_dirs = list((h.warehouse / "cubes").iterdir())
    assert len(snap_dirs) == 1
    assert (snap_dirs[0] / new_version / f"{month}.parquet").is_file()
    assert (snap_dirs[0] / old_version / f"{month}.parquet").is_file()  # the old cube stays for history


def test_cli_apply_records_the_user(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = _recorders(monkeypatch)
    new = tmp_path / "new.yaml"
    new.write_text(
        _moved_edge((home.parameters / "dimensions.yaml").read_text(encoding="utf-8")), encoding="utf-8"
    )
    capsys.readouterr()
    assert main(["params", "apply", str(new), "--file", "dimensions.yaml", "--as", USER, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] and out["user"] == USER and list(out["outputs"]) == ["segment_cubes"]
    assert calls == ["cubes"] and P.read_changes(home)[0]["user"] == USER
