"""The rule language: parse with sqlglot, check against the allow-list, compile to SQL.

A condition is one expression over the indicators of ``_catalogue``. sqlglot only parses it; the SQL is
written here, node by node, from fixed templates and catalogue entries. Literals become bound parameters,
so no text of a rule ever reaches the engine. Anything the checker does not know (a subquery, a cast, a
second statement, an unknown name or function) is an error that names the position in the expression,
with a "did you mean" suggestion for names.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from cimlib.targeting import _catalogue as K

MAX_EXPRESSION = 2000
_COMPARE = {exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
_ARITH = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/"}


class RuleError(ValueError):
    """A rule or condition that cannot be used, with where and why.

    Attributes
    ----------
    file, rule_id : str or None
        Where the rule comes from (None for an ad-hoc condition).
    position : int or None
        0-based character offset in the expression.
    message : str
        What is wrong.
    suggestion : str or None
        The closest allowed name, when the problem is an unknown one.
    """

    def __init__(
        self,
        message: str,
        *,
        expression: str = "",
        position: int | None = None,
        suggestion: str | None = None,
        file: str | None = None,
        rule_id: str | None = None,
        field: str = "condition",
    ) -> None:
        self.message, self.expression, self.position = message, expression, position
        self.suggestion, self.file, self.rule_id, self.field = suggestion, file, rule_id, field
        super().__init__(self._text())

    def located(
        self, *, file: str | None = None, rule_id: str | None = None, field: str | None = None
    ) -> RuleError:
        """The same error, naming the file, rule and field it was found in."""
        return RuleError(
            self.message,
            expression=self.expression,
            position=self.position,
            suggestion=self.suggestion,
            file=file or self.file,
            rule_id=rule_id or self.rule_id,
            field=field or self.field,
        )

    @property
    def line_col(self) -> tuple[int, int] | None:
        """1-based (line, column) of :attr:`position` in the expression."""
        if self.position is None:
            return None
        before = self.expression[: self.position]
        return before.count("\n") + 1, self.position - (before.rfind("\n") + 1) + 1

    def _text(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.rule_id:
            where.append(f"rule {self.rule_id}")
        lc = self.line_col
        where.append(f"{self.field}" + (f" at line {lc[0]}, column {lc[1]}" if lc else ""))
        msg = ": ".join([", ".join(where), self.message])
        if self.suggestion:
            msg += f"; did you mean {self.suggestion!r}?"
        if lc is not None and self.expression:
            line = self.expression.splitlines()[lc[0] - 1] if self.expression.splitlines() else ""
            msg += f"\n    {line}\n    {' ' * (lc[1] - 1)}^"
        return msg


def suggest(name: str, candidates: list[str] | set[str] | dict[str, Any]) -> str | None:
    """The allowed name closest to ``name``, if any is close."""
    by_lower = {str(c).lower(): str(c) for c in candidates}
    got = difflib.get_close_matches(name.lower(), sorted(by_lower), n=1, cutoff=0.6)
    return by_lower[got[0]] if got else None


HISTORY_MARK = re.compile(r"@H\((\w+),(\w*),(\d+)\)@")


def history_marker(fname: str, measure: str, n: int) -> str:
    """The placeholder of one history call in compiled SQL (resolved by the query builder)."""
    return f"@H({fname},{measure},{n})@"


@dataclass
class HistorySpec:
    """One aggregate of the customer-month history the compiled SQL reads as ``h.<alias>``."""

    alias: str
    sql: str
    months: int | None  # months back it needs (None: all history)


@dataclass
class CollectionSpec:
    """One ``any``/``all``/``count`` over a collection: a CTE keyed by customer."""

    alias: str
    collection: str
    kind: str
    condition_sql: str


@dataclass
class Compiled:
    """A checked, compiled expression."""

    expression: str
    customer_type: str
    sql: str
    type: str
    params: dict[str, Any]
    base: list[str] = field(default_factory=list)  # indicators the base relation must compute
    fin: bool = False
    calls: set[tuple[str, str, int]] = field(default_factory=set)  # history functions: (name, measure, n)
    collections: list[CollectionSpec] = field(default_factory=list)
    match_fields: set[str] = field(default_factory=set)  # fields of the first match a reason quotes
    money: bool = False  # the value is an amount of money (for reason formatting)
    fmt: str | None = None  # how a value of this expression reads best (pct_change: "pct")


@dataclass
class _Ctx:
    text: str
    ctype: str
    prefix: str
    params: dict[str, Any]
    out: Compiled
    collection: K.Collection | None = None
    allow_match: str | None = None  # alias of the first collection CTE, for reason placeholders


@lru_cache(maxsize=1)
def _codes() -> dict[str, frozenset[str]]:
    from cimlib.contracts import load_codes

    out = {k: frozenset(v) for k, v in load_codes().items()}
    out["customer_type"] = frozenset({"I", "C"})
    return out


# ---------------------------------------------------------------------------------------------- parsing
def _parse(text: str) -> exp.Expression:
    if not isinstance(text, str) or not text.strip():
        raise RuleError("the expression is empty", expression=str(text or ""))
    if len(text) > MAX_EXPRESSION:
        raise RuleError(f"the expression is longer than {MAX_EXPRESSION} characters", expression=text[:80])
    if ";" in text:
        raise RuleError("one expression only (';' is not allowed)", expression=text, position=text.index(";"))
    try:
        trees = sqlglot.parse(text, dialect="duckdb")
    except ParseError as exc:
        err = (exc.errors or [{}])[0]
        line, col = err.get("line"), err.get("col")
        pos = _offset(text, line, col) if line and col else None
        desc = str(err.get("description") or exc).split(". Line")[0]
        desc = re.sub(
            r"Required keyword: '(\w+)' missing for <class 'sqlglot\.expressions\.[\w.]*?(\w+)'>",
            r"incomplete \2 expression",
            desc,
        )
        raise RuleError(f"syntax error: {desc}", expression=text, position=pos) from None
    except TokenError as exc:
        raise RuleError(f"syntax error: {exc}", expression=text) from None
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        raise RuleError("one expression only", expression=text)
    return trees[0]


def _offset(text: str, line: int, col: int) -> int:
    lines = text.split("\n")
    return min(sum(len(x) + 1 for x in lines[: line - 1]) + max(col - 1, 0), max(len(text) - 1, 0))


def _pos(node: exp.Expression, text: str) -> int | None:
    """Best-effort offset of ``node`` in ``text``: identifiers carry it; functions are found by name."""
    for n in node.walk():
        meta = getattr(n, "meta", None) or {}
        if isinstance(n, exp.Identifier) and "start" in meta:
            if n is not node and isinstance(node, exp.Func | exp.Any):
                break
            return int(meta["start"])
    name = _call_name(node)
    if name:
        m = re.search(rf"\b{re.escape(name)}\s*\(", text, re.IGNORECASE)
        if m:
            return m.start()
    if isinstance(node, exp.Literal):
        i = text.find(f"'{node.this}" if node.is_string else str(node.this))
        return i if i >= 0 else None
    for n in node.walk():
        meta = getattr(n, "meta", None) or {}
        if "start" in meta:
            return int(meta["start"])
    return None


def _call_name(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    if isinstance(node, exp.Any):
        return "any"
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return None


def _call_args(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    if isinstance(node, exp.Any):
        inner = node.this
        if isinstance(inner, exp.Tuple):
            return list(inner.expressions)
        if isinstance(inner, exp.Paren):
            return [inner.this]
        return [inner]
    out = []
    for key in ("this", "expression"):
        v = node.args.get(key)
        if isinstance(v, exp.Expression):
            out.append(v)
    out += [e for e in node.args.get("expressions") or [] if isinstance(e, exp.Expression)]
    return out


# ---------------------------------------------------------------------------------------------- checking
def _err(ctx: _Ctx, node: exp.Expression, message: str, suggestion: str | None = None) -> RuleError:
    return RuleError(message, expression=ctx.text, position=_pos(node, ctx.text), suggestion=suggestion)


def _param(ctx: _Ctx, value: Any) -> str:
    name = f"{ctx.prefix}p{len(ctx.params)}"
    ctx.params[name] = value
    return f"${name}"


def _compatible(a: str, b: str) -> bool:
    if "null" in (a, b):
        return True
    ka, kb = a.split(":")[0], b.split(":")[0]
    text_like = {"text", "code"}
    return ka == kb or (ka in text_like and kb in text_like)


def _kind(t: str) -> str:
    return t.split(":")[0]


def _check_code(ctx: _Ctx, typ: str, lit: exp.Expression, value: Any) -> None:
    if _kind(typ) != "code" or not isinstance(value, str):
        return
    allowed = _codes().get(typ.split(":", 1)[1])
    if allowed is not None and value not in allowed:
        listed = ", ".join(sorted(allowed))
        raise _err(
            ctx, lit, f"{value!r} is not a code of {typ.split(':', 1)[1]} ({listed})", suggest(value, allowed)
        )


def _literal(ctx: _Ctx, node: exp.Expression) -> tuple[str, str, Any] | None:
    """(sql, type, value) of a literal node, else None."""
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        v = -_number(ctx, node.this)
        return _param(ctx, v), "number", v
    if isinstance(node, exp.Literal):
        if node.is_string:
            return _param(ctx, str(node.this)), "text", str(node.this)
        v = _number(ctx, node)
        return _param(ctx, v), "number", v
    if isinstance(node, exp.Boolean):
        return ("TRUE" if node.this else "FALSE"), "bool", bool(node.this)
    if isinstance(node, exp.Null):
        return "NULL", "null", None
    if (
        isinstance(node, exp.Cast)
        and isinstance(node.this, exp.Literal)
        and node.this.is_string
        and node.to.is_type("date")
    ):
        try:
            v = dt.date.fromisoformat(str(node.this.this))
        except ValueError:
            raise _err(ctx, node, f"not a date (YYYY-MM-DD): {node.this.this!r}") from None
        return f"CAST({_param(ctx, v)} AS DATE)", "date", v
    return None


def _number(ctx: _Ctx, node: exp.Literal) -> Any:
    try:
        d = Decimal(str(node.this).replace("_", ""))
    except InvalidOperation:
        raise _err(ctx, node, f"not a number: {node.this!r}") from None
    if not d.is_finite():
        raise _err(ctx, node, f"not a number: {node.this!r}")
    return int(d) if d == d.to_integral_value() and abs(d) < 10**18 else float(d)


def _int_arg(ctx: _Ctx, node: exp.Expression, fname: str, lo: int, hi: int) -> int:
    if not (isinstance(node, exp.Literal) and not node.is_string and str(node.this).isdigit()):
        raise _err(ctx, node, f"{fname}: the number of months must be a whole number from {lo} to {hi}")
    n = int(str(node.this))
    if not lo <= n <= hi:
        raise _err(ctx, node, f"{fname}: the number of months must be from {lo} to {hi}, not {n}")
    return n


def _column(ctx: _Ctx, node: exp.Column) -> tuple[str, str]:
    name = node.name.lower()
    qual = node.table.lower() if node.table else ""
    if node.args.get("db") or node.args.get("catalog"):
        raise _err(ctx, node, f"unknown name {node.sql()!r}")
    if qual:
        if qual == "match":
            coll = ctx.out.collections[0] if ctx.out.collections else None
            if coll is None or ctx.allow_match is None:
                raise _err(
                    ctx, node, "'match.<field>' (in a reason) needs an any(...) in the rule's condition"
                )
            c = K.COLLECTIONS[coll.collection]
            if name not in c.fields:
                raise _err(ctx, node, f"{c.name} have no field {name!r}", suggest(name, c.fields))
            ctx.out.money = name in c.money
            ctx.out.match_fields.add(name)
            return f"struct_extract({ctx.allow_match}.first, '{name}')", c.fields[name]
        raise _err(ctx, node, f"unknown name {node.sql()!r} (names are not qualified)")
    if ctx.collection is not None:
        c = ctx.collection
        if name in c.fields:
            ctx.out.money = name in c.money
            return f"c.{name}", c.fields[name]
        hint = suggest(name, c.fields)
        raise _err(
            ctx,
            node,
            f"{c.name} have no field {name!r}; inside {c.name} a condition uses only "
            f"{', '.join(sorted(c.fields))}",
            hint,
        )
    allowed = K.indicators_for(ctx.ctype)
    ind = allowed.get(name)
    if ind is None:
        other = K.INDICATORS.get(name)
        if other is not None:
            who = {"I": "individual", "C": "corporate"}[ctx.ctype]
            raise _err(ctx, node, f"indicator {name!r} does not apply to {who} customers")
        if name in K.COLLECTIONS:
            raise _err(ctx, node, f"{name!r} is a collection: use any({name}, ...) or all({name}, ...)")
        raise _err(ctx, node, f"unknown indicator {name!r}", suggest(name, allowed))
    ctx.out.money = ind.money
    if ind.source == "fin":
        ctx.out.fin = True
        return ind.sql, ind.type
    if ind.source == "hist":
        ctx.out.calls.add((name, "", 0))
        return history_marker(name, "", 0), ind.type
    if name not in ctx.out.base:
        ctx.out.base.append(name)
    return f"b.{name}", ind.type


def _history(ctx: _Ctx, node: exp.Expression, fname: str, args: list[exp.Expression]) -> tuple[str, str]:
    if ctx.collection is not None:
        raise _err(
            ctx,
            node,
            f"{fname}() reads the customer's monthly history; it cannot be used inside {ctx.collection.name}",
        )
    if len(args) != 2 or not isinstance(args[0], exp.Column) or args[0].table:
        raise _err(ctx, node, f"{fname}(measure, months) takes a monthly measure and a number of months")
    measure = args[0].name.lower()
    coded = measure in K.MONTHLY_CODED and fname == "prior"
    if measure not in K.MONTHLY and not coded:
        allowed = sorted(K.MONTHLY) + (sorted(K.MONTHLY_CODED) if fname == "prior" else [])
        raise _err(
            ctx, args[0], f"{fname}() needs a monthly measure, not {measure!r}", suggest(measure, allowed)
        )
    lo = 2 if fname == "zscore" else 1
    n = _int_arg(ctx, args[1], fname, lo, K.MAX_HISTORY_MONTHS)
    # The SQL depends on where the history is read (the wide table's month lists for the latest month,
    # else the monthly mart), which only the query knows: leave a marker that build_query resolves.
    if measure not in ctx.out.base:
        ctx.out.base.append(measure)
    ctx.out.calls.add((fname, measure, n))
    sql = history_marker(fname, measure, n)
    ind = K.INDICATORS.get(measure)
    ctx.out.money = bool(ind and ind.money and fname not in ("pct_change", "zscore"))
    ctx.out.fmt = "pct" if fname == "pct_change" else None
    typ = K.INDICATORS[measure].type if coded else "number"
    return sql, typ


def _collection_call(
    ctx: _Ctx, node: exp.Expression, fname: str, args: list[exp.Expression]
) -> tuple[str, str]:
    if ctx.collection is not None:
        raise _err(ctx, node, f"{fname}() cannot be nested inside {ctx.collection.name}")
    if len(args) != 2 or not isinstance(args[0], exp.Column) or args[0].table:
        raise _err(ctx, node, f"{fname}(collection, condition) takes a collection and a condition")
    cname = args[0].name.lower()
    allowed = K.collections_for(ctx.ctype)
    if cname not in allowed:
        if cname in K.COLLECTIONS:
            raise _err(ctx, args[0], f"{cname} do not apply to this customer type")
        raise _err(ctx, args[0], f"unknown collection {cname!r}", suggest(cname, allowed))
    inner = _Ctx(ctx.text, ctx.ctype, ctx.prefix, ctx.params, ctx.out, collection=allowed[cname])
    money = ctx.out.money
    cond, typ = _compile(inner, args[1])
    ctx.out.money = money
    if typ not in ("bool", "null"):
        raise _err(ctx, args[1], f"the condition of {fname}() must be true or false, not a {_kind(typ)}")
    alias = f"{ctx.prefix}a{len(ctx.out.collections)}"
    ctx.out.collections.append(CollectionSpec(alias, cname, fname, cond))
    if fname == "any":
        return f"(coalesce({alias}.n, 0) > 0)", "bool"
    if fname == "count":
        return f"coalesce({alias}.n, 0)", "number"
    return f"(coalesce({alias}.n_all, 0) > 0 AND {alias}.n = {alias}.n_all)", "bool"


def _function(ctx: _Ctx, node: exp.Expression) -> tuple[str, str]:
    fname = _call_name(node) or "?"
    args = _call_args(node)
    if fname not in K.FUNCTIONS:
        raise _err(ctx, node, f"unknown function {fname}()", suggest(fname, K.FUNCTIONS))
    if fname in K.HISTORY_FUNCTIONS:
        return _history(ctx, node, fname, args)
    if fname in ("any", "all", "count"):
        return _collection_call(ctx, node, fname, args)
    spec = K.FUNCTIONS[fname]
    if len(args) != len(spec.args):
        raise _err(ctx, node, f"{fname}() takes {len(spec.args)} argument(s), got {len(args)}")
    parts = [_compile(ctx, a) for a in args]
    for (_, t), want, a in zip(parts, spec.args, args, strict=True):
        if want in ("date", "number") and _kind(t) not in (want, "null"):
            raise _err(ctx, a, f"{fname}() expects a {want}, got a {_kind(t)}")
    s = [p[0] for p in parts]
    if fname == "days_until":
        return f"date_diff('day', $as_of, {s[0]})", "number"
    if fname == "days_since":
        return f"date_diff('day', {s[0]}, $as_of)", "number"
    if fname == "months_since":
        return f"date_sub('month', {s[0]}, $as_of)", "number"
    if fname == "abs":
        return f"abs({s[0]})", "number"
    if fname == "coalesce":
        if not _compatible(parts[0][1], parts[1][1]):
            raise _err(ctx, node, f"coalesce() of a {_kind(parts[0][1])} and a {_kind(parts[1][1])}")
        return f"coalesce({s[0]}, {s[1]})", parts[0][1] if parts[0][1] != "null" else parts[1][1]
    return f"{fname}({s[0]}, {s[1]})", "number"


def _compile(ctx: _Ctx, node: exp.Expression) -> tuple[str, str]:
    lit = _literal(ctx, node)
    if lit is not None:
        return lit[0], lit[1]
    if isinstance(node, exp.Paren):
        s, t = _compile(ctx, node.this)
        return f"({s})", t
    if isinstance(node, exp.And | exp.Or):
        a, ta = _compile(ctx, node.this)
        b, tb = _compile(ctx, node.expression)
        for t, n in ((ta, node.this), (tb, node.expression)):
            if t not in ("bool", "null"):
                raise _err(ctx, n, f"'{node.key}' needs true/false on both sides, this is a {_kind(t)}")
        return f"({a} {node.key.upper()} {b})", "bool"
    if isinstance(node, exp.Not):
        inner = node.this
        if isinstance(inner, exp.Is):
            s, _ = _compile(ctx, inner)
            return s[: -len(" IS NULL)")] + " IS NOT NULL)", "bool"
        s, t = _compile(ctx, inner)
        if t not in ("bool", "null"):
            raise _err(ctx, inner, f"'not' needs true/false, this is a {_kind(t)}")
        return f"(NOT {s})", "bool"
    if isinstance(node, exp.Is):
        if not isinstance(node.expression, exp.Null):
            raise _err(ctx, node, "only 'is null' and 'is not null' are allowed")
        s, _ = _compile(ctx, node.this)
        return f"({s} IS NULL)", "bool"
    if type(node) in _COMPARE:
        return _comparison(ctx, node)
    if isinstance(node, exp.Between):
        s, t = _compile(ctx, node.this)
        lo, tlo = _operand(ctx, node.args["low"], t)
        hi, thi = _operand(ctx, node.args["high"], t)
        for tt, n in ((tlo, node.args["low"]), (thi, node.args["high"])):
            if not _compatible(t, tt) or _kind(t) not in ("number", "date"):
                raise _err(
                    ctx, n, f"between needs numbers or dates of one kind, got {_kind(t)} and {_kind(tt)}"
                )
        return f"({s} BETWEEN {lo} AND {hi})", "bool"
    if isinstance(node, exp.In):
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise _err(ctx, node, "'in' takes a list of values, e.g. x in ('A', 'B')")
        s, t = _compile(ctx, node.this)
        items = []
        for e in node.expressions:
            got = _literal(ctx, e)
            if got is None or got[1] == "null":
                raise _err(ctx, e, "'in' takes a list of literal values")
            if not _compatible(t, got[1]):
                raise _err(ctx, e, f"cannot compare a {_kind(t)} with a {_kind(got[1])}")
            _check_code(ctx, t, e, got[2])
            items.append(got[0])
        if not items:
            raise _err(ctx, node, "'in' needs at least one value")
        return f"({s} IN ({', '.join(items)}))", "bool"
    if type(node) in _ARITH or isinstance(node, exp.Neg):
        if isinstance(node, exp.Neg):
            s, t = _compile(ctx, node.this)
            if _kind(t) not in ("number", "null"):
                raise _err(ctx, node, f"'-' needs a number, got a {_kind(t)}")
            return f"(-{s})", "number"
        a, ta = _compile(ctx, node.this)
        b, tb = _compile(ctx, node.expression)
        for t, n in ((ta, node.this), (tb, node.expression)):
            if _kind(t) not in ("number", "null"):
                raise _err(ctx, n, f"arithmetic needs numbers, this is a {_kind(t)}")
        op = _ARITH[type(node)]
        if op == "/":
            return f"(CAST({a} AS DOUBLE) / nullif({b}, 0))", "number"
        return f"({a} {op} {b})", "number"
    if isinstance(node, exp.Column):
        return _column(ctx, node)
    if isinstance(node, exp.Func | exp.Any) and not isinstance(node, exp.Cast):
        return _function(ctx, node)
    what = {
        exp.Subquery: "a subquery",
        exp.Select: "a query",
        exp.Union: "a query",
        exp.Exists: "a subquery",
        exp.Cast: "a cast",
        exp.Star: "'*'",
        exp.Like: "'like'",
        exp.DPipe: "'||'",
    }.get(type(node), f"'{node.key}'")
    raise _err(ctx, node, f"{what} is not allowed in a rule")


def _operand(ctx: _Ctx, node: exp.Expression, other: str) -> tuple[str, str]:
    got = _literal(ctx, node)
    if got is not None:
        _check_code(ctx, other, node, got[2])
        return got[0], got[1]
    return _compile(ctx, node)


def _comparison(ctx: _Ctx, node: exp.Expression) -> tuple[str, str]:
    op = _COMPARE[type(node)]
    left, right = node.this, node.expression
    if isinstance(left, exp.Null) or isinstance(right, exp.Null):
        raise _err(ctx, node, "compare with null using 'is null' or 'is not null'")
    money = ctx.out.money
    a, ta = _compile(ctx, left) if _literal_free(left) else (None, None)
    b, tb = _operand(ctx, right, ta or "null")
    if a is None:
        a, ta = _operand(ctx, left, tb)
    ctx.out.money = money
    assert ta is not None
    if not _compatible(ta, tb):
        raise _err(ctx, node, f"cannot compare a {_kind(ta)} with a {_kind(tb)}")
    if _kind(ta) == "bool" and op not in ("=", "<>"):
        raise _err(ctx, node, "true/false values compare only with = or <>")
    return f"({a} {op} {b})", "bool"


def _literal_free(node: exp.Expression) -> bool:
    return not isinstance(node, exp.Literal | exp.Neg | exp.Boolean | exp.Null)


# ---------------------------------------------------------------------------------------------- API
def compile_expression(
    text: str, customer_type: str, *, prefix: str = "", want: str = "bool", match_alias: str | None = None,
    into: Compiled | None = None,
) -> Compiled:  # fmt: skip
    """Parse, check and compile one expression.

    Parameters
    ----------
    text : str
        The expression, e.g. ``aum >= 500000 and n_products >= 3``.
    customer_type : {"I", "C"}
        Whose indicators it may use.
    prefix : str
        Prefix of parameter and CTE names, unique per rule when several rules share one query.
    want : {"bool", "value"}
        A condition (true/false) or a value (for reason placeholders and output columns).
    match_alias : str, optional
        Allows ``match.<field>``: the first matching item of the rule's first collection call.
    into : Compiled, optional
        Add the parameters, history and collections to this compiled rule (reason placeholders).

    Returns
    -------
    Compiled

    Raises
    ------
    RuleError
        A syntax error, an unknown name or function (with a suggestion), a type error, or anything not
        on the allow-list, with its position.
    """
    if customer_type not in ("I", "C"):
        raise ValueError(f"customer_type must be 'I' or 'C', not {customer_type!r}")
    tree = _parse(text)
    out = into or Compiled(text, customer_type, "", "", {})
    start = len(out.params)
    ctx = _Ctx(text, customer_type, prefix, out.params, out, allow_match=match_alias)
    out.money, out.fmt = False, None
    sql, typ = _compile(ctx, tree)
    del start
    if want == "bool" and typ not in ("bool",):
        raise RuleError(
            f"a condition must be true or false, this is a {_kind(typ)}", expression=text, position=0
        )
    if into is None:
        out.sql, out.type = sql, typ
        return out
    top = tree.unnest() if isinstance(tree, exp.Paren) else tree
    simple = isinstance(top, exp.Column | exp.Func | exp.Any)  # a unit of a name or call, not a computation
    return Compiled(
        text, customer_type, sql, typ, out.params, money=out.money and simple, fmt=out.fmt if simple else None
    )


def compile_condition(text: str, customer_type: str) -> Compiled:
    """Compile an ad-hoc condition (what the app's condition builder and the CLI use).

    Parameters
    ----------
    text : str
        The condition.
    customer_type : {"I", "C"}
        Individual or corporate customers.

    Returns
    -------
    Compiled
        ``sql`` (with ``$name`` parameters) and ``params``; see :func:`compile_expression`.
    """
    return compile_expression(text, customer_type)
