from __future__ import annotations

import logging
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

LANGS: tuple[str, ...] = ("zh_CN", "en")
DEFAULT_LANG = "zh_CN"
_LOCALES = Path(__file__).resolve().parent / "locales"
_CODE_LANG = {"zh_CN": "zh", "en": "en"}


def _flatten(prefix: str, node: Any, out: dict[str, str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = str(node)


@cache
def _catalog(lang: str) -> dict[str, str]:
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(LANGS)}")
    # locales/<lang>.yaml, then the module catalogues locales/<lang>/*.yaml (e.g. reports.yaml), which
    # may not redefine a key
    out: dict[str, str] = {}
    for path in [_LOCALES / f"{lang}.yaml", *sorted((_LOCALES / lang).glob("*.yaml"))]:
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        part: dict[str, str] = {}
        _flatten("", data, part)
        clash = sorted(set(part) & set(out))
        if clash:
            raise ValueError(f"{path}: keys already defined in another locale file: {', '.join(clash[:5])}")
        out.update(part)
    return out


def locale_keys(lang: str) -> set[str]:
    """Return every message key of a locale file.

    Parameters
    ----------
    lang : str
        ``"zh_CN"`` or ``"en"``.

    Returns
    -------
    set of str
        The dotted keys, e.g. ``"app.search_button"``.
    """
    return set(_catalog(lang))


def t(key: str, lang: str = DEFAULT_LANG, **fmt: Any) -> str:
    """Translate a message key, filling ``{name}`` placeholders.

    Parameters
    ----------
    key : str
        Dotted key into the locale file, e.g. ``"tabs.overview"``.
    lang : str
        ``"zh_CN"`` (default) or ``"en"``.
    **fmt
        Values for the message's ``{placeholders}``.

    Returns
    -------
    str
        The message; a missing key raises ``KeyError`` (both locales are complete by test).
    """
    text = _catalog(lang)[key]
    return text.format(**fmt) if fmt else text


@cache
def _codes() -> dict[str, dict[str, dict[str, Any]]]:
    from cimlib.contracts import load_codes

    return load_codes()


def code_label(domain: str, code: Any, lang: str = DEFAULT_LANG) -> str:
    """Return the display name of a code value.

    Looks in the locale file (``codes.<domain>.<code>``) first, then in the contracts' ``codes.yaml``.

    Parameters
    ----------
    domain : str
        The code list, e.g. ``"channel"`` or ``"wealth_type"``.
    code : Any
        The code value; ``None`` gives an empty string.
    lang : str
        ``"zh_CN"`` or ``"en"``.

    Returns
    -------
    str
        The label, or the code itself when no label is known.
    """
    if code is None or (isinstance(code, float) and code != code):
        return ""
    key = f"codes.{domain}.{code}"
    cat = _catalog(lang)
    if key in cat:
        return cat[key]
    entry = _codes().get(domain, {}).get(str(code))
    if isinstance(entry, dict) and _CODE_LANG[lang] in entry:
        return str(entry[_CODE_LANG[lang]])
    return str(code)


def column_label(column: str, lang: str = DEFAULT_LANG) -> str:
    """Return the header of a data column (``columns.<name>``), or the column name when it has none.

    Parameters
    ----------
    column : str
        The frame's column name.
    lang : str
        ``"zh_CN"`` or ``"en"``.

    Returns
    -------
    str
        The localized header.
    """
    return _catalog(lang).get(f"columns.{column}", column)


def money_unit(lang: str = DEFAULT_LANG) -> str:
    """Return the unit that :func:`format_money` shows amounts in (万元 in Chinese, CNY in English)."""
    return t("money.unit", lang)


def format_money(amount: Any, lang: str = DEFAULT_LANG, *, unit: bool = False) -> str:
    """Format a CNY amount for display.

    Chinese shows 万元 (10,000 yuan) with two decimals; English shows yuan with thousands separators.

    Parameters
    ----------
    amount : number or Decimal or None
        The amount in yuan. ``None``/NaN gives ``"-"``.
    lang : str
        ``"zh_CN"`` or ``"en"``.
    unit : bool
        Append the unit (``万元`` / ``CNY``).

    Returns
    -------
    str
        E.g. ``"12.35"`` (zh_CN, for 123,456.00) or ``"123,456.00"`` (en).
    """
    if amount is None:
        return "-"
    try:
        value = Decimal(str(amount))
    except Exception:
        return str(amount)
    if value.is_nan():
        return "-"
    text = f"{value / Decimal(10000):,.2f}" if lang == "zh_CN" else f"{value:,.2f}"
    return f"{text} {money_unit(lang)}" if unit else text


def format_count(n: Any, lang: str = DEFAULT_LANG) -> str:
    """Format a count with thousands separators (both locales use ``,`` grouping).

    Parameters
    ----------
    n : int or None
        The count.
    lang : str
        ``"zh_CN"`` or ``"en"`` (same output; kept for symmetry with :func:`format_money`).

    Returns
    -------
    str
        E.g. ``"1,234"``; ``"-"`` for ``None``.
    """
    if n is None:
        return "-"
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError):
        return str(n)
