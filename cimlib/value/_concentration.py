"""The 80/20 analysis (集中度): top-k and top-p% shares, the share of customers making up 80%, the Lorenz
curve (the whale curve for contribution) and the Gini coefficient, by org, product and customer type.

Two layers:

* **Pure and exact core** on numpy arrays (:func:`concentration_stats`, :func:`gini`,
  :func:`lorenz_points`, :func:`pareto_bins`). One ``np.lexsort`` by (group, value descending) and one
  cumulative sum serve every table of every group; no Python loop runs over customers. Integer inputs
  (the warehouse passes money as int64 fen) give exact sums, exact ``top_*`` numerators and an exact
  80% cut (compared in integers: ``cum * den >= num * total``).
* **Warehouse level** (:func:`concentration`, :func:`lorenz`, :func:`pareto`, :func:`concentration_trend`):
  one DuckDB query per month pulls the month's per-customer values and group keys (limited to the
  principal's scope) as Arrow, then everything is numpy.

Definitions (see ``docs/concentration.md``):

* customers are ranked by value, **descending**; ties are broken arbitrarily, which changes nothing
  because every figure is a sum (or, for the Gini, symmetric in tied values);
* ``top_k_share`` = (sum of the top ``min(k, n)`` values) / total;
* ``top_p_share`` with ``k = ceil(p * n)`` computed exactly (``p`` taken as the decimal it is written as);
* ``customers_for_80`` = the smallest ``k`` with cumulative >= 0.8 x total, ``share_for_80 = k / n``;
* ``gini`` = sum_i (2i - n - 1) x_(i) / (n (T+ + T-)), x ascending, T+ the sum of the positive values and
  T- the absolute sum of the negative ones: the population Gini for non-negative values and the
  Raffinetti, Siletti & Vernizzi (2015) normalisation when some are negative (always in [0, (n-1)/n]);
* zero values are customers holding nothing; **negative values** (loss-making customers' contribution)
  stay in: shares are of the **net** total (the bank's "whale curve" rises above 100% and comes back to
  100%), ``peak_share = T+ / total`` is the top of the whale, and ``n_negative`` / ``negative_total``
  report the loss-makers. A net total that is not positive leaves the shares NaN with a ``note``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cimlib.access import NotPermitted, Principal, named_scope
from cimlib.config import Home

#: Default top-k customer counts and top-p shares of customers.
TOP_K: tuple[int, ...] = (10, 100, 1000)
TOP_P: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20, 0.50)
#: The "80" of 80/20.
TARGET = 0.8

#: Measures: name -> SQL expression on ``mart_customer_month`` aliased ``m`` (yuan, DECIMAL(18,2)); the
#: first four are the issue's, the last three month-end variants for comparison. ``contribution`` comes
#: from :func:`cimlib.value.contribution_sql`.
MEASURE_SQL: dict[str, str | None] = {
    "deposits": "m.deposit_adb",
    "aum": "m.deposit_adb + m.wealth_aum",
    "loans": "m.loan_adb",
    "contribution": None,
    "deposit_balance": "m.deposit_balance",
    "aum_balance": "m.aum",
    "loan_balance": "m.loan_balance",
}
MEASURES: tuple[str, ...] = ("deposits", "aum", "loans", "contribution")

#: Product lines of ``by="product"``: id -> (measure family, SQL on the mart ``m`` or None when it comes
#: from the loan or contribution queries).
PRODUCT_LINES: dict[str, tuple[str, str | None]] = {
    "DEMAND": ("deposits", "m.demand_adb"),
    "TIME": ("deposits", "m.deposit_adb - m.demand_adb"),
    "WMP": ("aum", "m.wmp_value"),
    "FUND": ("aum", "m.fund_value"),
    "INSURANCE": ("aum", "m.insurance_value"),
    "BOND": ("aum", "m.bond_value"),
    "GOLD": ("aum", "m.gold_value"),
}
LOAN_SUBTYPES = ("CONSUMER", "BUSINESS", "MORTGAGE", "AGRI", "CORPORATE")
_LABELS: dict[str, tuple[str, str]] = {
    "ALL": ("All customers", "全部客户"),
    "deposits": ("Deposits (ADB)", "存款日均"),
    "aum": ("AUM", "金融资产(AUM)"),
    "loans": ("Loans (ADB)", "贷款日均"),
    "contribution": ("Contribution", "贡献度"),
    "deposit_balance": ("Deposit balance", "存款余额"),
    "aum_balance": ("AUM (month-end)", "金融资产(月末)"),
    "loan_balance": ("Loan balance", "贷款余额"),
    "DEMAND": ("Demand deposits", "活期存款"),
    "TIME": ("Time deposits", "定期存款"),
    "WMP": ("Wealth management", "理财"),
    "FUND": ("Funds", "基金"),
    "INSURANCE": ("Insurance", "保险"),
    "BOND": ("Treasury bonds", "国债"),
    "GOLD": ("Gold", "贵金属"),
    "CONSUMER": ("Consumer loans", "消费贷款"),
    "BUSINESS": ("Business loans", "经营贷款"),
    "MORTGAGE": ("Mortgages", "住房按揭贷款"),
    "AGRI": ("Agricultural loans", "涉农贷款"),
    "CORPORATE": ("Corporate loans", "对公贷款"),
    "OTHER": ("Other", "其他"),
}
By = Literal["org", "county", "branch", "product", "customer_type"]


def label(code: str, lang: str = "en") -> str:
    """The English or Chinese label of a measure or product line (the code itself when unknown)."""
    pair = _LABELS.get(str(code))
    return pair[1 if str(lang).startswith("zh") else 0] if pair else str(code)


# --------------------------------------------------------------------------------------------- the core
def _frac(x: float) -> Fraction:
    """``x`` as the decimal it is written as (0.2 -> 1/5, not the binary float's 3602879701896397/2**54)."""
    return Fraction(str(x))


def _ceil_mul(p: float, n: np.ndarray) -> np.ndarray:
    """``ceil(p * n)`` exactly, for an array of integers ``n``."""
    f = _frac(p)
    return -((-f.numerator * n.astype(np.int64)) // f.denominator)


def _col(prefix: str, x: float, suffix: str) -> str:
    return f"{prefix}{x:g}{suffix}"


def topk_column(k: int) -> str:
    """The column name of the top-``k`` share (``top_100_share``)."""
    return f"top_{int(k)}_share"


def topp_column(p: float) -> str:
    """The column name of the top-``p`` share (``top_20pct_share`` for 0.2)."""
    return _col("top_", float(_frac(p) * 100), "pct_share")


class _Sorted:
    """Values sorted by (group, value descending) with per-group cumulative sums: the shared work."""

    def __init__(self, values: Any, codes: np.ndarray | None, n_groups: int | None = None,
                 value_order: np.ndarray | None = None) -> None:  # fmt: skip
        v = np.asarray(values)
        if v.dtype.kind not in "iuf":
            v = v.astype(np.float64)
        if v.dtype.kind == "u":
            v = v.astype(np.int64)
        if v.dtype.kind == "f" and np.isnan(v).any():
            raise ValueError("values contain NaN: give missing values as 0 or drop them")
        self.exact = v.dtype.kind == "i"
        if self.exact:
            v = v.astype(np.int64, copy=False)
        c = np.zeros(len(v), dtype=np.int64) if codes is None else np.asarray(codes, dtype=np.int64)
        if len(c) != len(v):
            raise ValueError(f"{len(v)} values but {len(c)} group keys")
        g = int(n_groups if n_groups is not None else (c.max() + 1 if len(c) else 1))
        self.G = max(g, 1)
        # One argsort by value (descending), reusable across groupings, then a stable sort by group
        # (a radix sort on small integer keys): the same order as np.lexsort((-v, c)), 3x faster.
        order = np.argsort(-v, kind="stable") if value_order is None else value_order
        if codes is not None and len(v):
            cv = c[order]
            key = cv.astype(np.int16) if self.G < 2**15 else cv
            order = order[np.argsort(key, kind="stable")]
        self.v = v[order]
        self.c = c[order]
        self.n = np.bincount(c, minlength=self.G).astype(np.int64)
        self.start = np.concatenate(([0], np.cumsum(self.n)[:-1])).astype(np.int64)
        self.cs = np.cumsum(self.v)
        zero = self.v.dtype.type(0)
        self.base = np.where(self.start > 0, self.cs[np.maximum(self.start - 1, 0)] if len(v) else zero, zero)
        self.total = self.cum(np.arange(self.G), self.n)
        pos = np.where(self.v > 0, self.v, zero)
        self.pos_total = self._sums(pos)
        self.neg_total = self.pos_total - self.total  # T- = T+ - T (exact for integers)

    def _sums(self, x: np.ndarray) -> np.ndarray:
        """Per-group sums of ``x`` (in the sorted order) by prefix sums: exact for integers."""
        cs = np.concatenate((np.zeros(1, dtype=x.dtype), np.cumsum(x)))
        return cs[self.start + self.n] - cs[self.start]

    def cum(self, g: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The sum of the top ``k`` values of group ``g`` (``k`` clipped to ``[0, n]``)."""
        g = np.asarray(g, dtype=np.int64)
        k = np.clip(np.asarray(k, dtype=np.int64), 0, self.n[g])
        if not len(self.v):
            return np.zeros(np.broadcast(g, k).shape, dtype=self.v.dtype)
        at = np.where(k > 0, self.cs[np.clip(self.start[g] + k - 1, 0, len(self.cs) - 1)] - self.base[g], 0)
        return at.astype(self.v.dtype)

    def cum_real(self, g: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The cumulative sum at a real number of customers ``x`` (linear between customers: exact on the
        piecewise-linear Lorenz curve)."""
        lo = np.floor(x).astype(np.int64)
        frac = x - lo
        a = self.cum(g, lo).astype(np.float64)
        b = self.cum(g, lo + 1).astype(np.float64)
        return a + frac * (b - a)

    def first_reaching(self, target: float) -> np.ndarray:
        """Per group, the smallest ``k`` whose top-``k`` sum is >= ``target`` x total (0 when none)."""
        out = np.zeros(self.G, dtype=np.int64)
        if not len(self.v):
            return out
        tot = self.total[self.c]
        run = self.cs - self.base[self.c]
        f = _frac(target)
        big = float(np.abs(self.total).max(initial=0)) * max(f.numerator, f.denominator)
        if self.exact and big < 2.0**62:
            hit = run * f.denominator >= f.numerator * tot
        else:
            hit = run.astype(np.float64) >= float(f) * tot.astype(np.float64)
        hit &= tot > 0
        idx = np.flatnonzero(hit)
        if len(idx):
            groups, first = np.unique(self.c[idx], return_index=True)
            out[groups] = idx[first] - self.start[groups] + 1
        return out

    def gini(self) -> np.ndarray:
        """Per group: sum (2i - n - 1) x_(i) / (n (T+ + T-)), NaN when n = 0 or every value is 0."""
        if not len(self.v):
            return np.full(self.G, np.nan)
        rank = np.arange(len(self.v), dtype=np.int64) - self.start[self.c] + 1  # 1 = the largest
        w = (self.n[self.c] + 1 - 2 * rank).astype(np.float64)  # = 2i - n - 1 with i the ascending rank
        num = np.bincount(self.c, weights=w * self.v.astype(np.float64), minlength=self.G)
        den = self.n.astype(np.float64) * (
            self.pos_total.astype(np.float64) + self.neg_total.astype(np.float64)
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _notes(n: np.ndarray, total: np.ndarray, any_mass: np.ndarray) -> list[str]:
    out = []
    for ni, ti, mi in zip(n.tolist(), total.tolist(), any_mass.tolist(), strict=True):
        if ni == 0:
            out.append("no customers")
        elif not mi:
            out.append("every value is zero")
        elif ti <= 0:
            out.append("net total is not positive: shares undefined")
        else:
            out.append("")
    return out


def _stats(
    s: _Sorted, top_k: Sequence[int], top_p: Sequence[float], target: float, scale: float = 1.0
) -> pd.DataFrame:
    g = np.arange(s.G)
    total = s.total
    ok = total > 0
    tot_f = np.where(ok, total, 1).astype(np.float64)

    def share(num: np.ndarray) -> np.ndarray:
        return np.where(ok, num.astype(np.float64) / tot_f, np.nan)

    out: dict[str, Any] = {
        "n": s.n,
        "n_positive": np.bincount(s.c, weights=(s.v > 0), minlength=s.G).astype(np.int64),
        "n_zero": np.bincount(s.c, weights=(s.v == 0), minlength=s.G).astype(np.int64),
        "n_negative": np.bincount(s.c, weights=(s.v < 0), minlength=s.G).astype(np.int64),
        "total": total.astype(np.float64) / scale,
        "positive_total": s.pos_total.astype(np.float64) / scale,
        "negative_total": 0.0 - s.neg_total.astype(np.float64) / scale,
    }
    for k in top_k:
        out[topk_column(k)] = share(s.cum(g, np.full(s.G, int(k))))
    for p in top_p:
        if not 0 < float(p) <= 1:
            raise ValueError(f"top_p values must be in (0, 1], got {p!r}")
        out[topp_column(p)] = share(s.cum(g, _ceil_mul(p, s.n)))
    k80 = s.first_reaching(target)
    out["customers_for_80"] = np.where(ok, k80, 0).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["share_for_80"] = np.where(ok & (s.n > 0), k80 / np.maximum(s.n, 1), np.nan)
    out["peak_share"] = share(s.pos_total)
    out["gini"] = s.gini()
    out["note"] = _notes(s.n, total, (s.pos_total + s.neg_total) > 0)
    return pd.DataFrame(out)


def _codes(groups: Any) -> tuple[np.ndarray | None, list[Any]]:
    if groups is None:
        return None, [None]
    codes, uniques = pd.factorize(pd.Series(groups), sort=True, use_na_sentinel=False)
    return codes.astype(np.int64), list(uniques)


def concentration_stats(
    values: Any,
    groups: Any = None,
    *,
    top_k: Sequence[int] = TOP_K,
    top_p: Sequence[float] = TOP_P,
    target: float = TARGET,
) -> pd.DataFrame:
    """The 80/20 figures of a vector of values, overall or per group.

    Parameters
    ----------
    values : array-like of numbers
        One value per customer (integers, e.g. fen, give exact sums and an exact 80% cut). Zero is a
        customer holding nothing; negative values are kept (see the module docstring). NaN is refused.
    groups : array-like, optional
        A group key per customer; one row per distinct key (sorted). None: one row, ``group`` None.
    top_k : sequence of int
        Customer counts; ``top_<k>_share`` is the share of the top ``min(k, n)``.
    top_p : sequence of float
        Shares of customers in (0, 1]; ``top_<100p>pct_share`` takes the top ``ceil(p * n)``.
    target : float
        The share of the total of ``customers_for_80`` / ``share_for_80`` (0.8).

    Returns
    -------
    pandas.DataFrame
        ``group, n, n_positive, n_zero, n_negative, total, positive_total, negative_total``, the top-k and
        top-p shares, ``customers_for_80, share_for_80, peak_share, gini, note``. Shares are of the net
        total and NaN (with ``note``) when it is not positive; ``gini`` is NaN when every value is 0.
    """
    codes, uniques = _codes(groups)
    s = _Sorted(values, codes, len(uniques))
    df = _stats(s, top_k, top_p, target)
    df.insert(0, "group", uniques)
    return df


def gini(values: Any) -> float:
    """The Gini coefficient of ``values`` (O(n log n), exact formula on the sorted values).

    ``G = sum_i (2i - n - 1) x_(i) / (n (T+ + T-))`` with ``x`` ascending: the population Gini
    (``sum_ij |x_i - x_j| / (2 n^2 mean)``) for non-negative values, and the Raffinetti, Siletti &
    Vernizzi (2015) normalisation when some are negative, so it stays in ``[0, (n - 1) / n]``.

    Returns
    -------
    float
        NaN for an empty vector or one of zeros only.
    """
    return float(_Sorted(values, None).gini()[0])


def _grid(points: int, keys: Iterable[float]) -> np.ndarray:
    return np.unique(np.concatenate([np.linspace(0.0, 1.0, int(points) + 1), np.asarray(list(keys), float)]))


def lorenz_points(
    values: Any,
    groups: Any = None,
    *,
    points: int = 100,
    key_shares: Sequence[float] = TOP_P,
    target: float = TARGET,
) -> pd.DataFrame:
    """Points of the concentration (whale) and Lorenz curves, downsampled for charts.

    For each group: ``customer_share`` p on a grid of ``points + 1`` steps, plus the exact points
    ``ceil(q n) / n`` for every ``q`` of ``key_shares`` and ``customers_for_80 / n``, where the curve
    equals the table's figures exactly.

    Returns
    -------
    pandas.DataFrame
        ``group, customer_share, top_share, lorenz``: ``top_share`` = the share of the net total held by
        the top ``p`` (the 80/20 curve; rises above 1 and returns to 1 with negative values: the whale
        curve); ``lorenz`` = the share held by the bottom ``p`` (the Lorenz curve; ``1 - top_share(1-p)``).
        Linear between customers. Groups with a non-positive net total have NaN shares.
    """
    codes, uniques = _codes(groups)
    s = _Sorted(values, codes, len(uniques))
    return _lorenz(s, uniques, points, key_shares, target).drop(columns="_k")


def _lorenz(s: _Sorted, uniques: list[Any], points: int, key_shares: Sequence[float], target: float
            ) -> pd.DataFrame:  # fmt: skip
    base = _grid(points, [])
    k80 = s.first_reaching(target)
    frames = []
    for gi in range(s.G):
        n = int(s.n[gi])
        if n:
            keys = [int(_ceil_mul(q, np.array([n]))[0]) / n for q in key_shares] + [k80[gi] / n]
            p = np.unique(np.concatenate([base, np.asarray(keys, float)]))
        else:
            p = base
        g = np.full(len(p), gi)
        tot = float(s.total[gi])
        if tot > 0 and n:
            top = s.cum_real(g, p * n) / tot
            low = 1.0 - s.cum_real(g, (1.0 - p) * n) / tot
        else:
            top = low = np.full(len(p), np.nan)
        frames.append(pd.DataFrame({"group": [uniques[gi]] * len(p), "customer_share": p,
                                    "top_share": top, "lorenz": low, "_k": p * n}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def pareto_bins(values: Any, groups: Any = None, *, bins: int = 20) -> pd.DataFrame:
    """Customers ranked by value in ``bins`` equal percentile bins: each bin's share and the running share.

    Bin ``b`` (1 = the top) holds ranks ``ceil((b-1) n / bins) + 1 .. ceil(b n / bins)``, so bin ends
    agree with the top-p shares.

    Returns
    -------
    pandas.DataFrame
        ``group, bin, customer_from, customer_to`` (shares of customers), ``customers, value, share,
        cumulative_share`` (shares of the net total; NaN when it is not positive).
    """
    codes, uniques = _codes(groups)
    s = _Sorted(values, codes, len(uniques))
    return _pareto(s, uniques, bins).drop(columns=["_lo", "_hi", "_n"])


def _pareto(s: _Sorted, uniques: list[Any], bins: int, scale: float = 1.0) -> pd.DataFrame:
    b = np.arange(1, int(bins) + 1)
    g = np.repeat(np.arange(s.G), len(b))
    bb = np.tile(b, s.G)
    n = s.n[g]
    hi = -((-bb * n) // int(bins))
    lo = -((-(bb - 1) * n) // int(bins))
    c_hi, c_lo = s.cum(g, hi), s.cum(g, lo)
    tot = s.total[g].astype(np.float64)
    ok = tot > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(ok, (c_hi - c_lo) / np.where(ok, tot, 1.0), np.nan)
        cum = np.where(ok, c_hi / np.where(ok, tot, 1.0), np.nan)
    return pd.DataFrame({
        "group": [uniques[i] for i in g], "bin": bb,
        "customer_from": (bb - 1) / bins, "customer_to": bb / bins,
        "customers": (hi - lo).astype(np.int64), "value": (c_hi - c_lo).astype(np.float64) / scale,
        "share": share, "cumulative_share": cum, "_lo": lo, "_hi": hi, "_n": n,
    })  # fmt: skip


# ------------------------------------------------------------------------------------------- warehouse
def _home(home: Any) -> Home:
    from cimlib.customer import _data as D

    return D.resolve_home(home)


def _check(principal: Principal, measures: Sequence[str], by: Any) -> None:
    if principal.scope == "none":
        raise NotPermitted(f"role {principal.role} has no access to customer data")
    bad = [m for m in measures if m not in MEASURE_SQL]
    if bad or not measures:
        raise ValueError(f"unknown measure(s) {bad}; choose from {', '.join(MEASURE_SQL)}")


def _org_level(principal: Principal, by: str) -> str:
    """``org`` is the level below the principal's scope: counties for the province, else branches."""
    if by == "org":
        return "county" if principal.scope == "all" else "branch"
    return by


def _fen(expr: str) -> str:
    return f"CAST(({expr}) * 100 AS BIGINT)"


def _subtype_table(home: Home, snap: Any, day: dt.date) -> Path:
    """Contribution per customer and product subtype of ``day`` (fen), cached like the value frame."""
    import os

    import pyarrow.parquet as pq

    from cimlib.value._contribution import contribution_by_product_sql
    from cimlib.value._tiers import value_params, value_path

    params = value_params(home)
    base = value_path(home, snap.snapshot_id, params, day)
    path = base.with_name(f"{day:%Y-%m}-by-subtype.parquet")
    if path.exists():
        return path
    sql = (
        f"SELECT c.customer_id, c.subtype AS line, {_fen('sum(c.contribution)')} AS v "
        f"FROM ({contribution_by_product_sql(params)}) AS c WHERE c.subtype IS NOT NULL GROUP BY ALL"
    )
    table = snap.arrow(sql, {"as_of": day})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return path


class _Pull:
    """One month's per-customer values in scope (int64 fen) and group keys, from one query."""

    def __init__(self, principal: Principal, day: dt.date, measures: Sequence[str], bys: Sequence[str | None],
                 snap: Any, home: Home) -> None:  # fmt: skip
        import pyarrow.compute as pc

        cond, named = named_scope(principal, "d", "s")
        cols = ["m.customer_type", "d.county_code", "d.home_org_code"]
        mart = [m for m in measures if MEASURE_SQL[m] is not None]
        cols += [f"{_fen(MEASURE_SQL[m] or '')} AS {m}" for m in mart]
        products = "product" in bys
        if products:
            fams = set(measures)
            cols += [
                f"{_fen(sql or '')} AS p_{pid}" for pid, (fam, sql) in PRODUCT_LINES.items() if fam in fams
            ]
        joins = ""
        want_contrib = "contribution" in measures and any(b != "product" for b in bys)
        if want_contrib:
            # the month's contribution per customer, from the value cache beside the snapshot (computed
            # once per snapshot, parameters and month; 0.1 s to read at 1M customers against 1-2 s)
            from cimlib.value._tiers import _pq, value_params, value_table

            path = value_table(home, snap, value_params(home), day)
            joins = f"LEFT JOIN {_pq(path)} AS cv ON cv.customer_id = m.customer_id"
            cols.append(f"{_fen('coalesce(cv.contribution, 0)')} AS contribution")
        query = (
            f"SELECT {', '.join(cols)} FROM mart_customer_month AS m "
            f"JOIN dim_customer AS d ON d.customer_id = m.customer_id {joins} "
            f"WHERE m.as_of_date = $as_of AND ({cond})"
        )
        params = {"as_of": day, **named}
        self.table = snap.arrow(query, params)
        self.cols: dict[str, np.ndarray] = {}
        for name in self.table.column_names:
            if name in ("customer_type", "county_code", "home_org_code"):
                continue
            self.cols[name] = self.table.column(name).to_numpy(zero_copy_only=False)
        self.keys: dict[str, tuple[np.ndarray, list[Any]]] = {}
        for key in ("customer_type", "county_code", "home_org_code"):
            enc = pc.dictionary_encode(self.table.column(key)).combine_chunks()
            idx = enc.indices.to_numpy(zero_copy_only=False)
            idx = np.where(np.isnan(idx), -1, idx) if idx.dtype.kind == "f" else idx
            dic = enc.dictionary.to_pylist()
            codes = np.asarray(idx, dtype=np.int64)
            if (codes < 0).any():  # a NULL key is a group of its own
                codes = np.where(codes < 0, len(dic), codes)
                dic = [*dic, None]
            rank = sorted(range(len(dic)), key=lambda i: (dic[i] is None, str(dic[i])))  # groups by code
            remap = np.empty(len(dic), dtype=np.int64)
            remap[rank] = np.arange(len(dic))
            self.keys[key] = (remap[codes] if len(dic) else codes, [dic[i] for i in rank])
        self.long: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
        self._order: dict[str, np.ndarray] = {}
        if products and "loans" in measures:
            self.long["loans"] = self._long(
                snap,
                "SELECT l.customer_id, coalesce(p.subtype, 'OTHER') AS line, "
                f"{_fen('sum(l.accum_balance) / EXTRACT(DAY FROM $as_of)')} AS v "
                "FROM core_loan_month AS l LEFT JOIN core_product AS p ON p.product_code = l.product_code "
                "WHERE l.as_of_date = $as_of AND l.status <> 'WRITTEN_OFF' GROUP BY ALL",
                params,
                cond,
            )
        if products and "contribution" in measures:
            from cimlib.value._tiers import _pq

            path = _subtype_table(home, snap, day)
            self.long["contribution"] = self._long(
                snap,
                f"SELECT c.customer_id, c.line, c.v FROM {_pq(path)} AS c",
                params,
                cond,
            )

    @staticmethod
    def _long(
        snap: Any, inner: str, params: dict[str, Any], cond: str
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        import pyarrow.compute as pc

        if cond.strip() == "TRUE":
            # the whole bank: every row of the month's facts is a customer of the month (the joins to
            # dim_customer and the mart only scope; skipping them halves the product tables' time)
            used = {k: v for k, v in params.items() if f"${k}" in inner}
            t = snap.arrow(f"SELECT x.line, x.v FROM ({inner}) AS x WHERE x.v <> 0", used)
        else:
            t = snap.arrow(
                f"SELECT x.line, x.v FROM ({inner}) AS x "
                "JOIN dim_customer AS d ON d.customer_id = x.customer_id "
                "JOIN mart_customer_month AS m ON m.customer_id = x.customer_id AND m.as_of_date = $as_of "
                f"WHERE ({cond}) AND x.v <> 0",
                params,
            )
        enc = pc.dictionary_encode(t.column("line")).combine_chunks()
        codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        vals = t.column("v").to_numpy(zero_copy_only=False).astype(np.int64)
        return codes, vals, enc.dictionary.to_pylist()

    def series(self, measures: Sequence[str], by: str | None, population: str
               ) -> Iterable[tuple[str, np.ndarray, Any, list[Any], Any]]:  # fmt: skip
        """(measure, values, group codes, group keys, value order or None) for each table."""
        if by == "product":
            for fam in measures:
                lines = [pid for pid, (f, _) in PRODUCT_LINES.items() if f == fam]
                if lines:
                    vals = np.concatenate([self.cols[f"p_{pid}"] for pid in lines])
                    codes = np.repeat(np.arange(len(lines)), [len(self.cols[f"p_{pid}"]) for pid in lines])
                    keep = vals != 0
                    yield fam, vals[keep], codes[keep], lines, None
                if fam in self.long:
                    codes, vals, dic = self.long[fam]
                    order = sorted(range(len(dic)), key=lambda i: (_sub_rank(dic[i]), str(dic[i])))
                    remap = np.empty(len(dic), dtype=np.int64)
                    remap[order] = np.arange(len(dic))
                    yield fam, vals, remap[codes], [dic[i] for i in order], None
            return
        key = {"county": "county_code", "branch": "home_org_code", "customer_type": "customer_type"}.get(
            by or ""
        )
        codes, dic = self.keys[key] if key else (None, ["ALL"])
        for m in measures:
            v = self.cols[m]
            if population == "holders":
                keep = v != 0
                yield m, v[keep], (codes[keep] if codes is not None else None), dic, None
            else:
                if m not in self._order:  # one value sort per measure serves every grouping
                    self._order[m] = np.argsort(-v, kind="stable")
                yield m, v, codes, dic, self._order[m]


def _sub_rank(s: Any) -> int:
    order = ("DEMAND", "TIME", *LOAN_SUBTYPES)
    return order.index(s) if s in order else len(order)


def _suppress(
    df: pd.DataFrame, principal: Principal, count: str = "n", within: str = "measure"
) -> pd.DataFrame:
    """Blank groups of fewer than ``min_cell`` customers for roles without detail (and, when one group of
    a measure is small, the next smallest too, so it cannot be derived from the overall figures)."""
    df["suppressed"] = False
    if principal.can_view_detail or not len(df):
        return df
    k = int(principal.min_cell or 5)
    small = (df[count] > 0) & (df[count] < k)
    for _, idx in df.groupby(["by", within], sort=False).groups.items():
        sub = small.loc[idx]
        if int(sub.sum()) == 1 and len(idx) > 1:
            rest = df.loc[idx, count][(~sub) & (df.loc[idx, count] > 0)]
            if len(rest):
                small.loc[rest.idxmin()] = True
    if small.any():
        num = [c for c in df.select_dtypes("number").columns]
        df[num] = df[num].astype(float)
        df.loc[small, num] = math.nan
    df.loc[small, "note"] = f"fewer than {k} customers: suppressed"
    df["suppressed"] = small.to_numpy()
    # a top-k share with k below the minimum cell reveals a few customers' holdings
    for c in [c for c in df.columns if c.startswith("top_") and not c.endswith("pct_share")]:
        if int(c.split("_")[1]) < k:
            df[c] = math.nan
    return df


def _group_labels(by: str | None, keys: list[Any], lang: str, snap: Any) -> list[str]:
    if by in ("county", "branch"):
        names = snap.cache.get("org_names")
        if names is None:
            _, rows = snap.query("SELECT org_code, org_name FROM core_org")
            names = snap.cache["org_names"] = dict(rows)
        return [str(names.get(k, k)) if k is not None else "?" for k in keys]
    if by == "customer_type":
        from cimlib.i18n import code_label

        ui = "zh_CN" if str(lang).startswith("zh") else "en"
        return [code_label("customer_type", k, ui) if k is not None else "?" for k in keys]
    return [label(k, lang) if k is not None else "?" for k in keys]


def _resolve(principal: Principal, as_of: Any, home: Any) -> tuple[Any, dt.date, Home]:
    from cimlib.customer import _data as D

    h = _home(home)
    snap = D.snapshot(h)
    return snap, D.resolve_as_of(snap, as_of), h


def _bys(principal: Principal, by: Any) -> list[str | None]:
    many = [by] if by is None or isinstance(by, str) else list(by)
    for b in many:
        if b not in (None, "org", "county", "branch", "product", "customer_type"):
            raise ValueError(f"by must be None, org, county, branch, product or customer_type, not {b!r}")
    return list(dict.fromkeys(_org_level(principal, b) if b else None for b in many))


def _tables(
    principal: Principal,
    snap: Any,
    day: dt.date,
    h: Home,
    measures: Sequence[str],
    by: Any,
    population: str | None,
    make: Callable[[_Sorted, list[Any]], pd.DataFrame],
    lang: str,
) -> pd.DataFrame:
    if population not in (None, "customers", "holders"):
        raise ValueError(f"population must be customers or holders, not {population!r}")
    bys = _bys(principal, by)
    pull = _Pull(principal, day, measures, bys, snap, h)
    frames = []
    for level in bys:
        pop = "holders" if level == "product" else (population or "customers")
        for m, vals, codes, keys, order in pull.series(measures, level, pop):
            s = _Sorted(vals, codes, len(keys), order)
            f = make(s, keys)
            lab = dict(zip(keys, _group_labels(level, keys, lang, snap), strict=True))
            f.insert(0, "as_of", day.isoformat())
            f.insert(1, "by", level or "all")
            f.insert(3, "label", [lab.get(k, str(k)) for k in f["group"]])
            f.insert(4, "measure", m)
            f.insert(5, "measure_label", label(m, lang))
            f.insert(6, "population", pop)
            frames.append(f)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out.attrs.update(as_of=day.isoformat(), snapshot_id=snap.snapshot_id, by=[b or "all" for b in bys],
                     min_cell=principal.min_cell, scope=principal.scope_label)  # fmt: skip
    return out


def concentration(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    measures: Sequence[str] = MEASURES,
    by: By | Sequence[By | None] | None = None,
    population: Literal["customers", "holders"] | None = None,
    top_k: Sequence[int] = TOP_K,
    top_p: Sequence[float] = TOP_P,
    target: float = TARGET,
    home: Home | str | Path | None = None,
    lang: str = "en",
) -> pd.DataFrame:
    """The 80/20 table of one month within the principal's scope: one row per group and measure.

    Parameters
    ----------
    principal : Principal
        Who asks; customers are limited to their scope. A role with scope ``none`` is refused. For a role
        without single-customer detail, groups of fewer than ``principal.min_cell`` customers are blanked
        (``suppressed``), as are top-k shares with ``k < min_cell``.
    as_of : str, date or None
        The month (``YYYY-MM``); the latest when None.
    measures : sequence of str
        From :data:`MEASURE_SQL`: ``deposits`` (deposit ADB), ``aum`` (deposit ADB + wealth market value),
        ``loans`` (loan ADB), ``contribution`` (FTP, the month), and the month-end ``deposit_balance``,
        ``aum_balance``, ``loan_balance``.
    by : {None, "org", "county", "branch", "product", "customer_type"}
        ``org`` is one level below the scope (counties for the province, branches for a county). ``product``
        takes each product line's holders (demand/time deposits by ADB; WMP, funds, insurance, bonds,
        gold by value; loans by subtype by ADB; contribution by product subtype), ``measure`` the family.
    population : {"customers", "holders"}, optional
        ``customers``: every customer of the month, zeros included; ``holders``: value != 0 only. Default
        ``customers``. ``by="product"`` always takes holders.
    top_k, top_p, target
        As :func:`concentration_stats`.
    home : Home, str, Path or None
        The installation.
    lang : str
        Labels: ``"en"`` or ``"zh_CN"``.

    Returns
    -------
    pandas.DataFrame
        ``as_of, by, group, label, measure, measure_label`` then :func:`concentration_stats`'s columns
        (totals in yuan) and ``suppressed``; ``attrs`` hold ``as_of, snapshot_id, by, population``.

    Raises
    ------
    NotPermitted
        When the role has no access to customer data.
    """
    _check(principal, measures, by)
    snap, day, h = _resolve(principal, as_of, home)

    def make(s: _Sorted, keys: list[Any]) -> pd.DataFrame:
        f = _stats(s, top_k, top_p, target, scale=100.0)
        f.insert(0, "group", keys)
        return f

    out = _tables(principal, snap, day, h, measures, by, population, make, lang)
    return _suppress(out, principal)


def lorenz(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    measures: Sequence[str] = MEASURES,
    by: By | Sequence[By | None] | None = None,
    population: Literal["customers", "holders"] | None = None,
    points: int = 100,
    home: Home | str | Path | None = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Lorenz and whale-curve points of one month per group and measure (see :func:`lorenz_points`).

    For a role without detail, groups of fewer than ``min_cell`` customers are left out, and so are
    points within ``min_cell`` customers of either end (they would reveal a few customers' holdings).

    Returns
    -------
    pandas.DataFrame
        ``as_of, by, group, label, measure, measure_label, customer_share, top_share, lorenz, gini``;
        ``attrs`` as :func:`concentration`.
    """
    _check(principal, measures, by)
    snap, day, h = _resolve(principal, as_of, home)

    def make(s: _Sorted, keys: list[Any]) -> pd.DataFrame:
        f = _lorenz(s, keys, points, TOP_P, TARGET)
        gi = dict(zip(keys, s.gini(), strict=True))
        nn = dict(zip(keys, s.n, strict=True))
        f["gini"] = [gi[k] for k in f["group"]]
        f["_n"] = [nn[k] for k in f["group"]]
        return f

    out = _tables(principal, snap, day, h, measures, by, population, make, lang)
    return _private_points(out, principal, "_k").drop(columns=["_k", "_n"], errors="ignore")


def pareto(
    principal: Principal,
    as_of: str | dt.date | None = None,
    *,
    measures: Sequence[str] = MEASURES,
    by: By | Sequence[By | None] | None = None,
    population: Literal["customers", "holders"] | None = None,
    bins: int = 20,
    home: Home | str | Path | None = None,
    lang: str = "en",
) -> pd.DataFrame:
    """Pareto bins of one month per group and measure (see :func:`pareto_bins`); values in yuan.

    For a role without detail, groups of fewer than ``min_cell`` customers are left out and bins of fewer
    than ``min_cell`` customers have their value blanked.

    Returns
    -------
    pandas.DataFrame
        ``as_of, by, group, label, measure, measure_label, bin, customer_from, customer_to, customers,
        value, share, cumulative_share``; ``attrs`` as :func:`concentration`.
    """
    _check(principal, measures, by)
    snap, day, h = _resolve(principal, as_of, home)
    out = _tables(principal, snap, day, h, measures, by, population,
                  lambda s, keys: _pareto(s, keys, bins, scale=100.0), lang)  # fmt: skip
    if not principal.can_view_detail and len(out):
        k = int(principal.min_cell or 5)
        out = out[out["_n"] >= k].copy()
        small = out["customers"] < k
        out.loc[small, ["value", "share"]] = math.nan
    return out.drop(columns=["_lo", "_hi", "_n"]).reset_index(drop=True)


def _private_points(df: pd.DataFrame, principal: Principal, kcol: str) -> pd.DataFrame:
    if principal.can_view_detail or not len(df):
        return df.reset_index(drop=True)
    k = int(principal.min_cell or 5)
    kk, n = df[kcol].to_numpy(float), df["_n"].to_numpy(float)
    inner = ((kk <= 0) | (kk >= k)) & ((kk >= n) | (n - kk >= k))
    return df[(n >= k) & inner].reset_index(drop=True)


def concentration_trend(
    principal: Principal,
    months: int | Sequence[str | dt.date] | None = None,
    *,
    measures: Sequence[str] = MEASURES,
    by: By | Sequence[By | None] | None = None,
    population: Literal["customers", "holders"] | None = None,
    top_k: Sequence[int] = TOP_K,
    top_p: Sequence[float] = TOP_P,
    target: float = TARGET,
    home: Home | str | Path | None = None,
    lang: str = "en",
) -> pd.DataFrame:
    """:func:`concentration` for several months, stacked (``as_of`` ascending): the trend.

    Parameters
    ----------
    months : int, sequence or None
        The last ``months`` months of the warehouse (an int), these months (``YYYY-MM``), or all months.
    Other parameters as :func:`concentration`.

    Returns
    -------
    pandas.DataFrame
        :func:`concentration`'s rows for every month.
    """
    from cimlib.customer import _data as D

    _check(principal, measures, by)
    snap = D.snapshot(_home(home))
    days = D.as_of_dates(snap)
    if months is None:
        picked: list[Any] = list(days)
    elif isinstance(months, int):
        if months < 1:
            raise ValueError("months must be at least 1")
        picked = list(days[-months:])
    else:
        picked = list(months)
    frames = [
        concentration(principal, d, measures=measures, by=by, population=population, top_k=top_k,
                      top_p=top_p, target=target, home=home, lang=lang)
        for d in picked
    ]  # fmt: skip
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frames:
        out.attrs.update({k: v for k, v in frames[-1].attrs.items() if k != "as_of"})
        out.attrs["months"] = [f.attrs["as_of"] for f in frames]
    return out
