"""Altair charts: functions take data and return a chart object; export goes through vl-convert.

Charts never load anything from a CDN: the apps embed them as SVG rendered by vl-convert in the kernel,
and reports export PNG/SVG/PDF the same way. Chinese labels need a CJK font on the machine
(Debian: ``fonts-noto-cjk``).
"""

from cimlib.charts._charts import (
    CJK_FONT,
    assets_by_type,
    balance_trend,
    channel_mix,
    to_png,
    to_svg,
    warm_up,
)

__all__ = [
    "CJK_FONT",
    "assets_by_type",
    "balance_trend",
    "channel_mix",
    "to_png",
    "to_svg",
    "warm_up",
]
