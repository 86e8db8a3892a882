"""SQL fragments of the row validation: typed parsing, per-column checks and check digits."""

from __future__ import annotations

from cimlib.contracts import ColumnSpec
from cimlib.contracts.checkdigits import ID_CHECK_CHARS, ID_WEIGHTS, USCC_ALPHABET, USCC_WEIGHTS

# Reasons in the order they are tried; a row is quarantined with the first one that fails.
REASON_ORDER = (
    "malformed_row",
    "missing_required",
    "bad_type",
    "bad_format",
    "unknown_code",
    "out_of_range",
    "bad_check_digit",
    # then the contract's own checks, in contract order
    "duplicate_key",
    "orphan_fk",
)

_NUMERIC_RE = {
    "integer": r"[+-]?[0-9]{1,9}",
    "bigint": r"[+-]?[0-9]{1,18}",
    "money": r"[+-]?[0-9]{1,16}(\.[0-9]{0,2})?",
    "rate": r"[+-]?[0-9]{1,3}(\.[0-9]{0,6})?",
}


def lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def raw(name: str) -> str:
    """The identifier of the raw (VARCHAR, as read) value of canonical column ``name``."""
    return ident("_r_" + name)


def id_no_valid_sql(x: str) -> str:
    """SQL boolean: ``x`` is an 18-character resident ID number with a valid birth date and check character.

    Mirrors :func:`cimlib.contracts.checkdigits.is_valid_id`.
    """
    total = " + ".join(f"CAST(substr({x}, {i + 1}, 1) AS INTEGER) * {w}" for i, w in enumerate(ID_WEIGHTS))
    return (
        f"(CASE WHEN NOT regexp_full_match({x}, '[0-9]{{17}}[0-9Xx]') THEN false "
        f"WHEN substr({x}, 7, 4) = '0000' OR try_strptime(substr({x}, 7, 8), '%Y%m%d') IS NULL THEN false "
        f"ELSE substr({lit(ID_CHECK_CHARS)}, (({total}) % 11) + 1, 1) = upper(substr({x}, 18, 1)) END)"
    )


def uscc_valid_sql(x: str) -> str:
    """SQL boolean: ``x`` is a unified social credit code with a valid check character.

    Mirrors :func:`cimlib.contracts.checkdigits.is_valid_uscc`.
    """
    alpha = lit(USCC_ALPHABET)
    total = " + ".join(
        f"(instr({alpha}, substr({x}, {i + 1}, 1)) - 1) * {w}" for i, w in enumerate(USCC_WEIGHTS)
    )
    return (
        f"(CASE WHEN NOT regexp_full_match({x}, '[0-9A-HJ-NP-RTUW-Y]{{18}}') THEN false "
        f"ELSE substr({alpha}, ((31 - ({total}) % 31) % 31) + 1, 1) = substr({x}, 18, 1) END)"
    )


def typed_sql(col: ColumnSpec, date_fmt: str, ts_fmt: str) -> str:
    """SQL parsing the raw value of ``col`` into its contract type (NULL when it does not parse)."""
    r = raw(col.name)
    if col.type == "varchar":
        return r
    if col.type == "date":
        return f"CAST(try_strptime({r}, {lit(date_fmt)}) AS DATE)"
    if col.type == "timestamp":
        return f"try_strptime({r}, {lit(ts_fmt)})"
    if col.type == "boolean":
        return f"TRY_CAST({r} AS BOOLEAN)"
    pattern = lit(_NUMERIC_RE[col.type])
    return f"TRY_CAST(CASE WHEN regexp_full_match({r}, {pattern}) THEN {r} END AS {col.sql_type})"


def _fail(reason: str, column: str | None, detail: str) -> str:
    col = lit(column) if column else "NULL"
    return f"{{'reason': {lit(reason)}, 'column_name': {col}, 'detail': {detail}}}"


def _num_lit(v: float) -> str:
    return repr(int(v)) if float(v).is_integer() else repr(v)


def row_checks(
    cols: list[ColumnSpec],
    codes: dict[str, list[str]],
    date_fmt: str,
    ts_fmt: str,
    checks: list[tuple[str, str, str]],
) -> list[tuple[str, str]]:
    """The ``(condition, failure struct)`` pairs of the row-level checks, in reason priority order.

    Conditions refer to raw values through :func:`raw` and to typed values by canonical name; they are
    meant to be the WHEN arms of one CASE so that each is evaluated only on rows that passed the earlier
    ones. ``checks`` are ``(name, sql, reason)`` contract checks.
    """
    arms: list[tuple[str, str]] = []
    for c in cols:
        if c.required:
            arms.append(
                (
                    f"{raw(c.name)} IS NULL",
                    _fail("missing_required", c.name, lit(f"required column {c.name} is empty")),
                )
            )
    for c in cols:
        if c.type == "varchar":
            continue
        what = {
            "date": f"a date in format {date_fmt}",
            "timestamp": f"a timestamp in format {ts_fmt}",
        }.get(c.type, f"a {c.type}")
        arms.append(
            (
                f"{raw(c.name)} IS NOT NULL AND {ident(c.name)} IS NULL",
                _fail(
                    "bad_type", c.name, f"{lit(c.name + ': ')} || {raw(c.name)} || {lit(' is not ' + what)}"
                ),
            )
        )
    for c in cols:
        if c.pattern:
            arms.append(
                (
                    f"NOT regexp_matches({ident(c.name)}, {lit(c.pattern)})",
                    _fail(
                        "bad_format",
                        c.name,
                        f"{lit(c.name + ': ')} || {ident(c.name)} || {lit(' does not match ' + c.pattern)}",
                    ),
                )
            )
    for c in cols:
        if c.codes:
            values = ", ".join(lit(v) for v in codes[c.codes])
            arms.append(
                (
                    f"{ident(c.name)} NOT IN ({values})",
                    _fail(
                        "unknown_code",
                        c.name,
                        f"{lit(c.name + ': ')} || {ident(c.name)} || "
                        f"{lit(' is not in code list ' + c.codes)}",
                    ),
                )
            )
    for c in cols:
        for bound, op, word in ((c.min, "<", "below the minimum"), (c.max, ">", "above the maximum")):
            if bound is None:
                continue
            arms.append(
                (
                    f"{ident(c.name)} {op} {_num_lit(bound)}",
                    _fail(
                        "out_of_range",
                        c.name,
                        f"{lit(c.name + ': ')} || CAST({ident(c.name)} AS VARCHAR) || "
                        f"{lit(f' is {word} {_num_lit(bound)}')}",
                    ),
                )
            )
    for c in cols:
        if c.check:
            fn = id_no_valid_sql if c.check == "id_no" else uscc_valid_sql
            label = "resident ID number" if c.check == "id_no" else "unified social credit code"
            arms.append(
                (
                    f"{ident(c.name)} IS NOT NULL AND NOT {fn(ident(c.name))}",
                    _fail(
                        "bad_check_digit",
                        c.name,
                        f"{lit(c.name + ': ')} || {ident(c.name)} || {lit(' is not a valid ' + label)}",
                    ),
                )
            )
    for name, sql, reason in checks:
        arms.append(
            (
                f"NOT COALESCE(({sql}), true)",
                _fail(reason, None, lit(f"check {name} failed: {' '.join(sql.split())}")),
            )
        )
    return arms
