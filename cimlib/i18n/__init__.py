"""Labels and app text in English and Simplified Chinese, and locale-aware number formatting.

Text lives in ``locales/en.yaml`` and ``locales/zh_CN.yaml`` (both complete: a test compares their keys).
Code values (channels, wealth types, loan classes …) reuse the ``en``/``zh`` labels of the contracts'
``codes.yaml``, so there is one place for each code's name.
"""

from cimlib.i18n._i18n import (
    DEFAULT_LANG,
    LANGS,
    code_label,
    column_label,
    format_count,
    format_money,
    locale_keys,
    money_unit,
    t,
)

__all__ = [
    "DEFAULT_LANG",
    "LANGS",
    "code_label",
    "column_label",
    "format_count",
    "format_money",
    "locale_keys",
    "money_unit",
    "t",
]
