"""Segmentation dimensions: validation of parameters/dimensions.yaml and the SQL that assigns members."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from cimlib.segmentation import DimensionError, load_dimensions, member_sql

_HEAD = "version: 1\ndimensions:\n"
_ADB = """  - id: deposit_adb
    label: {en: Deposit ADB, zh: 存款日均}
    kind: buckets
    column: deposit_adb
    buckets:
      - {id: D0, label: {en: low, zh: 低}, max: 10000}
      - {id: D1, label: {en: mid, zh: 中}, min: 10000, max: 50000}
      - {id: D2, label: {en: high, zh: 高}, min: 50000}
"""


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "dimensions.yaml"
    p.write_text(_HEAD + body, encoding="utf-8")
    return p


def test_the_shipped_dimensions_load() -> None:
    dims = load_dimensions()
    assert {"loan_balance", "deposit_adb", "n_products", "txn_amount", "txn_count", "credit_line_amount",
            "aum", "age", "monthly_income", "education", "occupation", "sex", "economic_nature",
            "enterprise_form", "industry", "five_class", "loan_form", "deposit_product", "loan_product",
            "main_channel", "county", "branch", "period", "contribution"} <= set(dims.items)  # fmt: skip
    assert len(dims.version) == 12


_MID = "{id: D1, label: {en: mid, zh: 中}, min: 10000, max: 50000}"


@pytest.mark.parametrize(
    ("edit", "message", "line"),
    [
        ((_MID, _MID.replace("min: 10000", "min: 20000")), "gap between 10000 and 20000 (buckets D0", 9),
        ((_MID, _MID.replace("min: 10000", "min: 5000")), "buckets D0 and D1 overlap from 5000 to 10000", 9),
        ((_MID, _MID.replace("min: 10000, ", "")), "bucket D1 is open below but is not the first", 9),
        ((_MID, _MID.replace("max: 50000", "max: 9000")), "max 9000 is not above min 10000", 9),
    ],
)
def test_gaps_and_overlaps_name_the_dimension_and_line(
    tmp_path: Path, edit: tuple[str, str], message: str, line: int
) -> None:
    p = _write(tmp_path, _ADB.replace(*edit))
    with pytest.raises(DimensionError) as ei:
        load_dimensions(path=p)
    text = str(ei.value)
    assert str(p) in text and message in text and f"(line {line})" in text


def test_every_code_must_be_mapped_once(tmp_path: Path) -> None:
    body = """  - id: channel
    label: {en: Channel, zh: 渠道}
    kind: codes
    column: main_channel
    code_list: channel
    codes: [COUNTER, ATM, MOBILE]
    members:
      - {id: BRANCH, label: {en: Branch, zh: 网点}, codes: [COUNTER]}
      - {id: DIGITAL, label: {en: Digital, zh: 电子}, codes: [MOBILE]}
"""
    with pytest.raises(DimensionError, match=r"dimension channel: codes \['ATM'\] are not mapped"):
        load_dimensions(path=_write(tmp_path, body))
    twice = body.replace("codes: [MOBILE]", "codes: [MOBILE, COUNTER, ATM]")
    with pytest.raises(DimensionError, match="code COUNTER is in both BRANCH and DIGITAL"):
        load_dimensions(path=_write(tmp_path, twice))
    with pytest.raises(DimensionError, match=r"\['FAX'\] are not codes of channel"):
        load_dimensions(path=_write(tmp_path, body.replace("codes: [COUNTER, ATM, MOBILE]", "codes: [FAX]")))


def test_unknown_columns_and_keys(tmp_path: Path) -> None:
    with pytest.raises(DimensionError, match="unknown column 'deposit_abd'; did you mean 'deposit_adb'"):
        load_dimensions(path=_write(tmp_path, _ADB.replace("column: deposit_adb", "column: deposit_abd")))
    with pytest.raises(DimensionError, match=r"dimensions\[0\]\.colour \(line 7\)"):
        load_dimensions(path=_write(tmp_path, _ADB.replace("    buckets:", "    colour: red\n    buckets:")))


def test_members_cover_every_value_exactly_once(tmp_path: Path) -> None:
    dims = load_dimensions(path=_write(tmp_path, _ADB))
    con = duckdb.connect()
    values = [None, -5, 0, 9999.99, 10000, 49999.99, 50000, 1e12]
    con.execute("CREATE TABLE s AS SELECT unnest(?) AS deposit_adb", [values])
    got = [r[0] for r in con.execute(f"SELECT {member_sql(dims['deposit_adb'], 's')} FROM s").fetchall()]
    assert got == [None, "D0", "D0", "D0", "D1", "D1", "D2", "D2"]
    closed = load_dimensions(path=_write(tmp_path, _ADB.replace("max: 10000}", "min: 0, max: 10000}")))
    got = [r[0] for r in con.execute(f"SELECT {member_sql(closed['deposit_adb'], 's')} FROM s").fetchall()]
    assert got[1] is None and got[2] == "D0"  # below a closed first bucket: no member (coverage reports it)
