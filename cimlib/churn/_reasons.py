"""Per-customer churn reasons in plain words, by occlusion attribution.

**Method.** For a customer with features ``x`` and a fitted model ``f`` (the churn probability), the
contribution of a feature (or of a group of features replaced together) is::

    c_g(x) = f(x) - f(x with the features of g set to their reference values)

The reference is a "typical stayer": the median (numeric) or most frequent level (categorical) of each
feature among the training rows that did not churn, stored by :class:`~cimlib.churn._model.ChurnModel` as
``reference_``. A positive ``c_g`` is how many points of churn probability the customer's own value of
``g`` adds compared with a typical stayer; the reasons are the groups with the largest positive
contributions, phrased by a template table passed in by the caller.

**Cost.** One ``predict_proba`` over the batch per group (plus one for ``f(x)``), vectorised; with a
:class:`ChurnModel` the rows are encoded once and only the booster runs per group.

**Limits.** Occlusion is one feature (group) at a time: effects that only show when two features move
together are split between them or missed, and the contributions do not add up to ``f(x) - f(reference)``
(unlike SHAP values). Correlated features (ADB level and ADB change, say) each look small when replaced
alone: put them in one group. The reference is a point, not a distribution, so a customer whose value is
unusual in a direction the model finds *safe* gets a negative contribution, which is never shown as a
reason. Contributions explain the model, not the customer's real motives.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cimlib.i18n import DEFAULT_LANG, column_label, format_money

log = logging.getLogger(__name__)

#: A reason template: ``{"en": "...", "zh_CN": "..."}`` (``str.format`` fields, see :func:`format_reason`),
#: one string for every language, or a callable ``(fields, lang) -> str``.
Template = Mapping[str, str] | str | Callable[[Mapping[str, Any], str], str]

#: Phrase for a feature without a template.
GENERIC_TEMPLATE: dict[str, str] = {
    "en": "{label} is {text} (typical {ref_text})",
    "zh_CN": "{label}为{text}（一般客户{ref_text}）",
}
_MISSING = {"en": "missing", "zh_CN": "缺失"}
_JOIN = {"en": "; ", "zh_CN": "；"}


def reference_values(X: pd.DataFrame, y: Any, *, stayed_label: Any = 0) -> dict[str, Any]:
    """Reference ("typical stayer") values for the occlusion: median or most frequent level per column.

    Use it for models other than :class:`ChurnModel`, which stores the same as ``reference_`` at fit time.

    Parameters
    ----------
    X : DataFrame
        Training rows.
    y : array-like
        Their labels.
    stayed_label : scalar
        The label of customers who did not churn.

    Returns
    -------
    dict
        Column name to value (float median for numeric and boolean columns, the most frequent level
        otherwise; ``None`` when a column has no value).
    """
    mask = np.asarray(y) == stayed_label
    rows = X.loc[mask] if mask.any() else X
    out: dict[str, Any] = {}
    for name in X.columns:
        col = rows[name]
        dtype = col.dtype
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            numeric = col.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
            out[str(name)] = float(np.nanmedian(numeric)) if np.isfinite(numeric).any() else None
        else:
            mode = col.dropna().mode()
            out[str(name)] = mode.iloc[0] if len(mode) else None
    return out


def _resolve_groups(
    columns: Sequence[str], groups: Mapping[str, Sequence[str]] | None
) -> dict[str, list[str]]:
    """Groups to occlude: the given ones plus every remaining column on its own."""
    result: dict[str, list[str]] = {}
    used: set[str] = set()
    for name, cols in (groups or {}).items():
        cols = [str(c) for c in cols]
        unknown = [c for c in cols if c not in columns]
        if unknown:
            raise ValueError(f"group {name!r} names columns that are not in X: {unknown}")
        overlap = used.intersection(cols)
        if overlap:
            raise ValueError(f"columns {sorted(overlap)} are in more than one group")
        used.update(cols)
        result[str(name)] = cols
    for col in columns:
        if col not in used:
            result[col] = [col]
    return result


def _positive_index(model: Any, positive_class: Any) -> int:
    classes = list(getattr(model, "classes_", [0, 1]))
    if positive_class is None:
        return len(classes) - 1
    if positive_class not in classes:
        raise ValueError(f"positive_class {positive_class!r} is not among the model's classes {classes}")
    return classes.index(positive_class)


def _fast_contributions(
    model: Any,
    X: pd.DataFrame,
    reference: Mapping[str, Any],
    groups: dict[str, list[str]],
    k: int,
    batch_size: int,
) -> np.ndarray:
    """ChurnModel path: encode once, then run only the booster per group."""
    names = [str(c) for c in X.columns]
    cats = set(model.categorical_features_)
    ref_frame = pd.DataFrame(
        {c: pd.Series([reference.get(c)], dtype=object if c in cats else "float64") for c in names}
    )
    ref_frame.columns = X.columns
    ref_row = model._encode(ref_frame)[0]
    positions = model._encoded_positions()
    col_pos = {name: positions[i] for i, name in enumerate(names)}
    out = np.empty((len(X), len(groups)), dtype=np.float64)
    for start in range(0, len(X), batch_size):
        Z = model._encode(X.iloc[start : start + batch_size])
        base = model._proba_encoded(Z)[:, k]
        for j, cols in enumerate(groups.values()):
            pos = [col_pos[c] for c in cols]
            # rows already at the reference (a stayer's typical value, or both missing) change nothing:
            # predict only the others (often most rows for flags and counts)
            ref = ref_row[pos]
            cur = Z[:, pos]
            same = ((cur == ref) | (np.isnan(cur) & np.isnan(ref))).all(axis=1)
            rows = np.flatnonzero(~same)
            col = np.zeros(len(Z))
            if len(rows):
                sub = Z[rows]
                sub[:, pos] = ref
                col[rows] = base[rows] - model._proba_encoded(sub)[:, k]
            out[start : start + len(Z), j] = col
    return out


def _generic_contributions(
    model: Any,
    X: pd.DataFrame,
    reference: Mapping[str, Any],
    groups: dict[str, list[str]],
    k: int,
    batch_size: int,
) -> np.ndarray:
    """Any estimator with ``predict_proba`` on frames: one copy of the batch per group."""
    out = np.empty((len(X), len(groups)), dtype=np.float64)
    for start in range(0, len(X), batch_size):
        chunk = X.iloc[start : start + batch_size]
        base = model.predict_proba(chunk)[:, k]
        for j, cols in enumerate(groups.values()):
            occluded = chunk.copy()
            for c in cols:
                value = reference.get(c)
                dtype = occluded[c].dtype
                if isinstance(dtype, pd.CategoricalDtype) and value not in dtype.categories:
                    occluded[c] = occluded[c].astype(object)
                occluded[c] = np.nan if value is None else value
            out[start : start + len(chunk), j] = base - model.predict_proba(occluded)[:, k]
    return out


def occlusion_contributions(
    model: Any,
    X: pd.DataFrame,
    *,
    reference: Mapping[str, Any] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    positive_class: Any = None,
    batch_size: int = 200_000,
) -> pd.DataFrame:
    """Occlusion contribution of each feature group to each row's churn probability.

    Parameters
    ----------
    model : fitted classifier
        A :class:`ChurnModel` (fast path) or any estimator with ``predict_proba`` on frames.
    X : DataFrame
        Rows to explain, with the columns the model was fitted on.
    reference : mapping, optional
        Column to reference value; default the model's ``reference_`` (see :func:`reference_values`).
    groups : mapping of str to list of str, optional
        Columns replaced together, by group name (e.g. ``{"adb": ["adb", "adb_change_3m"]}``); every other
        column is its own group named after it.
    positive_class : scalar, optional
        The churn class (default the last of ``model.classes_``).
    batch_size : int
        Rows per batch (bounds memory).

    Returns
    -------
    DataFrame
        Index of ``X``, one column per group: ``f(x) - f(x with the group at its reference)``, in
        probability points (positive = the customer's value raises the risk).
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError("X must be a pandas DataFrame with the model's column names")
    if reference is None:
        reference = getattr(model, "reference_", None)
        if reference is None:
            raise ValueError("the model has no reference_; pass reference=reference_values(X_train, y_train)")
    names = [str(c) for c in X.columns]
    missing = [c for c in names if c not in reference]
    if missing:
        raise ValueError(f"no reference value for columns {missing}")
    resolved = _resolve_groups(names, groups)
    k = _positive_index(model, positive_class)
    if len(X) == 0:
        return pd.DataFrame(np.empty((0, len(resolved))), index=X.index, columns=list(resolved))
    from cimlib.churn._model import ChurnModel

    fast = isinstance(model, ChurnModel) and getattr(model, "feature_names_in_", None) is not None
    compute = _fast_contributions if fast else _generic_contributions
    values = compute(model, X, reference, resolved, k, max(1, int(batch_size)))
    return pd.DataFrame(values, index=X.index, columns=list(resolved))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _number(value: Any, fmt: str, lang: str) -> str:
    if _is_missing(value):
        return _MISSING[lang]
    try:
        return fmt.format(float(value))
    except (TypeError, ValueError):
        return str(value)


def _plain_value(value: Any, lang: str) -> str:
    if _is_missing(value):
        return _MISSING[lang]
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower() if lang == "en" else ("是" if value else "否")
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if float(value).is_integer():
            return f"{float(value):,.0f}"
        return f"{float(value):,.2f}".rstrip("0").rstrip(".")
    return str(value)


def _label(name: str, lang: str) -> str:
    return column_label(name, lang) if lang in ("en", "zh_CN") else name


def _money(value: Any, lang: str) -> str:
    if _is_missing(value):
        return _MISSING[lang]
    return format_money(value, lang, unit=True)


def reason_fields(feature: str, value: Any, reference: Any, lang: str) -> dict[str, Any]:
    """The ``str.format`` fields a template can use for one feature value.

    Parameters
    ----------
    feature : str
        Column name.
    value : Any
        The customer's value.
    reference : Any
        The reference value of the column.
    lang : str
        ``"en"`` or ``"zh_CN"``.

    Returns
    -------
    dict
        ``feature`` (name), ``label`` (the locale's column header, else the name), ``value`` (the value
        itself, so format specs work: ``{value:.0f}``), ``text`` (plainly formatted: ``"1,234.5"``),
        ``pct``/``pct_abs``/``ratio`` (absolute value as a percent: ``-0.62`` -> ``"62%"``),
        ``pct_signed`` (``"-62%"``), ``days``/``count`` (whole number), ``money`` (yuan:
        ``"123,456.00 CNY"``, or ``"12.35 万元"`` in Chinese), ``abs`` (plain absolute value), and the same
        with a ``ref_`` prefix for the reference value (``ref_text``, ``ref_pct`` …).
    """
    return dict(_Fields(feature, value, reference, lang).full())


def _field(name: str, v: Any, lang: str) -> Any:
    """One template field of a value (see :func:`reason_fields`)."""
    numeric = not _is_missing(v) and isinstance(v, int | float)
    if name == "value":
        return v
    if name == "text":
        return _plain_value(v, lang)
    if name in ("pct", "pct_abs", "ratio"):
        return _number(abs(v) * 100 if numeric else v, "{:.0f}%", lang)
    if name == "pct_signed":
        return _number(v * 100 if numeric else v, "{:+.0f}%", lang)
    if name in ("days", "count"):
        return _number(v, "{:,.0f}", lang)
    if name == "money":
        return _money(v, lang) if numeric else _plain_value(v, lang)
    if name == "abs":
        return _plain_value(abs(v) if numeric else v, lang)
    raise KeyError(name)


_FIELD_NAMES = ("value", "text", "pct", "pct_abs", "ratio", "pct_signed", "days", "count", "money", "abs")


class _Fields(dict):
    """Template fields computed on first use (``str.format_map``): phrasing 100,000 rows stays cheap."""

    def __init__(self, feature: str, value: Any, reference: Any, lang: str) -> None:
        super().__init__(feature=feature)
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(reference, np.generic):
            reference = reference.item()
        if isinstance(value, bool) and reference in (0, 1) and not isinstance(reference, bool):
            reference = bool(reference)  # a boolean column's median reads as true/false
        self._value, self._reference, self._lang = value, reference, lang

    def __missing__(self, key: str) -> Any:
        if key == "label":
            out = _label(self["feature"], self._lang)
        elif key.startswith("ref_"):
            out = _field(key[4:], self._reference, self._lang)
        else:
            out = _field(key, self._value, self._lang)
        self[key] = out
        return out

    def full(self) -> _Fields:
        for name in ("label", *_FIELD_NAMES, *(f"ref_{n}" for n in _FIELD_NAMES)):
            self[name]
        return self


def format_reason(
    key: str,
    values: Mapping[str, Any],
    reference: Mapping[str, Any],
    template: Template | None,
    lang: str = DEFAULT_LANG,
) -> str:
    """Phrase one reason.

    Parameters
    ----------
    key : str
        The feature or group name.
    values : mapping
        The customer's values of the group's columns (the first one feeds the template's fields).
    reference : mapping
        Reference values of the same columns.
    template : Template or None
        A ``{"en": ..., "zh_CN": ...}`` mapping of ``str.format`` strings with the fields of
        :func:`reason_fields` (plus ``group`` = ``key``), a single string, or a callable
        ``(fields, lang) -> str`` that also receives ``values`` and ``reference`` in ``fields``. ``None``,
        a missing language, or a missing customer value (for string templates) uses
        :data:`GENERIC_TEMPLATE`; a group of several columns without a
        template lists each column's generic phrase after the group's name.
    lang : str
        ``"zh_CN"`` (default) or ``"en"``.

    Returns
    -------
    str
        The reason text. A string template that cannot be filled (unknown field, format spec that does not
        fit the value) logs a warning and falls back to the generic phrase.
    """
    if lang not in _JOIN:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(_JOIN)}")
    first = next(iter(values))
    fields = _Fields(first, values[first], reference.get(first), lang)
    fields["group"] = key
    if template is None and len(values) > 1:
        parts = [format_reason(c, {c: v}, reference, None, lang) for c, v in values.items()]
        sep = "，" if lang == "zh_CN" else ", "
        return (
            f"{_label(key, lang)}：{sep.join(parts)}"
            if lang == "zh_CN"
            else f"{_label(key, lang)}: " + sep.join(parts)
        )
    if _is_missing(values[first]) and not callable(template):
        template = None  # "ADB fell missing%" reads badly: say the value is missing instead
    if callable(template):
        # the lazy field dict itself: a callable reads only the fields it needs (computing all of them
        # for each of 150,000 reasons cost 2 s)
        fields["values"], fields["reference"] = dict(values), dict(reference)
        return str(template(fields, lang))
    if isinstance(template, str):
        text = template
    elif isinstance(template, Mapping) and lang in template:
        text = template[lang]
    else:
        text = GENERIC_TEMPLATE.get(lang, GENERIC_TEMPLATE["en"])
    try:
        return text.format_map(fields)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        if text is GENERIC_TEMPLATE.get(lang):
            raise
        log.warning(
            "reason template for %r (%s) cannot be filled (%s); using the generic phrase", key, lang, exc
        )
        return GENERIC_TEMPLATE[lang].format_map(fields)


def explain(
    model: Any,
    X: pd.DataFrame,
    *,
    templates: Mapping[str, Template] | None = None,
    n: int = 3,
    lang: str = DEFAULT_LANG,
    reference: Mapping[str, Any] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    min_contribution: float = 0.005,
    contributions: pd.DataFrame | None = None,
    positive_class: Any = None,
) -> pd.DataFrame:
    """The top ``n`` reasons of each row's churn risk, in plain words and as (feature, contribution) pairs.

    Parameters
    ----------
    model : fitted classifier
        See :func:`occlusion_contributions`.
    X : DataFrame
        Rows to explain (index = customer id, kept in the output).
    templates : mapping, optional
        Feature or group name to :data:`Template`; names without a template get the generic phrase.
    n : int
        Reasons per row.
    lang : str
        ``"zh_CN"`` (default) or ``"en"``.
    reference : mapping, optional
        Reference values (default ``model.reference_``).
    groups : mapping, optional
        Columns occluded and phrased together (see :func:`occlusion_contributions`).
    min_contribution : float
        Smallest contribution (in probability points, 0.005 = half a point) shown as a reason; only
        features that push the risk *up* are ever shown.
    contributions : DataFrame, optional
        Precomputed :func:`occlusion_contributions` (or any attribution of the same shape) to phrase.
    positive_class : scalar, optional
        The churn class (default the last of ``model.classes_``).

    Returns
    -------
    DataFrame
        Index of ``X``; ``reason_1`` … ``reason_n`` (text or ``None``), ``feature_1`` … ``feature_n``
        (group names), ``contribution_1`` … ``contribution_n`` (floats, NaN when absent) and ``reasons``
        (the texts joined by ``"; "``, ``"；"`` in Chinese). Rows with no positive contribution above
        ``min_contribution`` get no reason.
    """
    if lang not in _JOIN:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(_JOIN)}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    ref = reference if reference is not None else getattr(model, "reference_", None)
    if contributions is None:
        contributions = occlusion_contributions(
            model, X, reference=ref, groups=groups, positive_class=positive_class
        )
    if ref is None:
        raise ValueError("no reference values: pass reference=")
    resolved = _resolve_groups([str(c) for c in X.columns], groups)
    keys = list(contributions.columns)
    C = contributions.to_numpy(dtype=np.float64)
    m = min(n, C.shape[1])
    order = np.argsort(-C, axis=1, kind="stable")[:, :m]
    top = np.take_along_axis(C, order, axis=1)
    keep = top > min_contribution
    templates = templates or {}
    columns = {str(c): X[c].to_numpy(dtype=object) for c in X.columns}
    texts: list[list[str | None]] = [[None] * len(X) for _ in range(n)]
    feats: list[list[str | None]] = [[None] * len(X) for _ in range(n)]
    contribs = np.full((len(X), n), math.nan)
    rows, ranks = np.nonzero(keep)
    for i, r in zip(rows.tolist(), ranks.tolist(), strict=True):
        key = keys[order[i, r]]
        cols = resolved.get(key, [key])
        values = {c: columns[c][i] for c in cols}
        texts[r][i] = format_reason(key, values, {c: ref.get(c) for c in cols}, templates.get(key), lang)
        feats[r][i] = key
        contribs[i, r] = top[i, r]
    out = pd.DataFrame(index=X.index)
    for r in range(n):
        out[f"reason_{r + 1}"] = pd.Series(texts[r], index=X.index, dtype=object)
    for r in range(n):
        out[f"feature_{r + 1}"] = pd.Series(feats[r], index=X.index, dtype=object)
    for r in range(n):
        out[f"contribution_{r + 1}"] = contribs[:, r]
    joined = [_JOIN[lang].join(t for t in row if t) or None for row in zip(*texts, strict=True)]
    out["reasons"] = pd.Series(joined, index=X.index, dtype=object)
    return out
