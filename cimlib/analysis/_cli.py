"""``cim analysis NAME``: each provincial analysis on the command line (see :func:`add_analysis_parser`).

Each analysis is one entry of :data:`REGISTRY`; its options come from the function's own keyword
parameters (so the CLI cannot drift from the library): ``--months 6``, ``--groups dim:aum_band``,
``--kind BRANCH``, ``--by-txn-type`` ... Every call runs as ``--as USER`` with that user's scope, masking
and audit, for ``--as-of YYYY-MM`` and ``--org CODE`` (a county or branch within the scope). ``--out``
writes the frame (.xlsx or .csv), ``--chart`` the chart (.png, .svg or .html), ``--json`` prints rows.

``cim analysis tieout`` exits 3 (data problem) when a GL difference is above tolerance, so a scheduler
sees the failure.
"""

# ruff: noqa: E501  (the registry below is a table: one analysis per line reads better than wrapped)
from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cimlib.config import Home

#: Parameters every analysis takes that the CLI sets itself.
_COMMON = {"principal", "as_of", "org", "home", "lang", "app_url"}


@dataclass(frozen=True)
class Entry:
    """One ``cim analysis`` command: the function, its chart and a line of help."""

    function: str
    chart: str | None
    help: str

    def load(self) -> Any:
        """The analysis function."""
        mod, _, name = self.function.partition(":")
        return getattr(importlib.import_module(f"cimlib.analysis.{mod}"), name)

    def load_chart(self) -> Any:
        """The chart function (or None)."""
        if not self.chart:
            return None
        mod, _, name = self.chart.partition(":")
        return getattr(importlib.import_module(f"cimlib.analysis.{mod}"), name)


#: Every analysis of the CLI, by module (macro, groups, product, channel, performance).
REGISTRY: dict[str, Entry] = {
    # macro and general ledger
    "overview": Entry("_macro:overview", None, "key figures vs previous month, last year, start of year"),
    "trend": Entry("_macro:overview_trend", "_macro_charts:kpi_trend_chart", "key figures over the months"),
    "overview-customers": Entry("_macro:overview_customers", None, "the customers behind a key figure (drill)"),
    "gl": Entry("_gl:gl_balances", None, "GL balances by subject and org over the months"),
    "gl-structure": Entry("_gl:gl_structure", "_macro_charts:gl_structure_chart",
                          "deposit and loan structure by subject and org"),
    "tieout": Entry("_gl:gl_tieout", "_macro_charts:tieout_chart",
                    "customer-level sums vs the GL per org and subject (exit 3 on a failure)"),
    "focus": Entry("_focus:key_focus", "_macro_charts:key_focus_chart",
                   "key focus: the largest movements with their drivers"),
    # customer groups
    "group-value": Entry("_groups:group_value", "_groups_charts:group_value_chart", "AUM and contribution by group"),
    "group-activity": Entry("_groups:group_activity", None, "active and dormant customers by group"),
    "group-channels": Entry("_groups:group_channels", "_groups_charts:group_channel_chart", "channel use by group"),
    "group-rfm": Entry("_groups:group_rfm", "_groups_charts:group_rfm_chart", "RFM segments by group"),
    "group-structure": Entry("_groups:group_structure", "_groups_charts:group_structure_chart",
                             "mix by type, tier, age and industry"),
    "group-fund-flow": Entry("_groups:group_fund_flow", "_groups_charts:group_fund_flow_chart",
                             "inflows and outflows by counterparty, large transfers out"),
    "group-risk": Entry("_groups:group_risk", "_groups_charts:group_risk_chart", "churn and credit risk by group"),
    "group-concentration": Entry("_groups:group_concentration", "_groups_charts:group_concentration_chart",
                                 "80/20 by group"),
    "group-customers": Entry("_groups:group_customers", None, "the customers of a group (drill)"),
    # product
    "product-lifecycle": Entry("_product:product_lifecycle", "_product_charts:lifecycle_chart",
                               "new, active, closed accounts and balances; lifecycle stage"),
    "product-structure": Entry("_product:product_structure", "_product_charts:structure_chart",
                               "balance and customer mix"),
    "product-income": Entry("_product:product_income", None, "fees, net interest contribution, per account"),
    "loan-risk": Entry("_product:loan_risk", "_product_charts:npl_chart", "NPL ratio by loan product"),
    "five-class": Entry("_product:five_class_mix", "_product_charts:five_class_chart", "five-class mix by product"),
    "product-composition": Entry("_product:product_composition", None, "which segments hold each product"),
    "products-per-customer": Entry("_product:products_per_customer", "_product_charts:products_per_customer_chart",
                                   "products-per-customer distribution"),
    "product-pairs": Entry("_product:product_pairs", "_product_charts:cross_holding_chart",
                           "products held together (lift)"),
    "next-product": Entry("_product:next_product", None, "next-product affinity"),
    "product-customers": Entry("_product:product_customers", None, "the holders of a product (drill)"),
    # channel
    "channel-volume": Entry("_channel:channel_volume", "_channel_charts:channel_volume_chart",
                            "counts and amounts by channel (and type), shares"),
    "channel-trend": Entry("_channel:channel_trend", "_channel_charts:channel_share_chart", "channel shares over time"),
    "channel-migration": Entry("_channel:channel_migration", "_channel_charts:migration_chart",
                               "counter-to-digital migration by county, branch or age"),
    "card-usage": Entry("_channel:card_usage", "_channel_charts:card_usage_chart", "on-us vs other-bank devices"),
    "channel-cost": Entry("_channel:channel_cost", "_channel_charts:cost_chart", "cost by channel and org"),
    "channel-saving": Entry("_channel:channel_saving", None, "cost saved by the move to digital"),
    "underused": Entry("_channel:underused_devices", None, "under-used ATMs or branches (撤、并、迁)"),
    "underused-trend": Entry("_channel:underused_trend", "_channel_charts:underused_chart",
                             "monthly volume of the under-used devices"),
    "channel-customers": Entry("_channel:channel_customers", None, "counter-only or newly digital customers (drill)"),
    # performance
    "managers": Entry("_performance:manager_performance", "_performance_charts:manager_performance_chart",
                      "customer managers: 管户 volume, contribution, quality"),
    "tellers": Entry("_performance:teller_performance", None, "tellers: counter business and cross-bank share"),
    "branches": Entry("_performance:branch_performance", None, "branches: volume, contribution, quality"),
    "league": Entry("_performance:league_table", "_performance_charts:league_table_chart",
                    "league table within peer groups"),
    "league-trend": Entry("_performance:league_trend", "_performance_charts:league_trend_chart", "ranks over time"),
    "performance-customers": Entry("_performance:performance_customers", None,
                                   "the customers behind a manager's or branch's figure (drill)"),
}  # fmt: skip


def _kind(param: inspect.Parameter) -> tuple[str, Any]:
    """How a keyword parameter is parsed: ``flag``, ``list``, ``int``, ``float``, ``intstr`` or ``str``."""
    d, ann = param.default, str(param.annotation)
    if isinstance(d, bool):
        return "flag", d
    if isinstance(d, tuple):
        return "list", d
    if isinstance(d, int) and "str" in ann:
        return "intstr", d
    if isinstance(d, int):
        return "int", d
    if isinstance(d, float):
        return "float", d
    if "str | int" in ann or "int | str" in ann:
        return "intstr", d
    if "Mapping" in ann or "dict" in ann:
        return "skip", d
    if "int" in ann and "str" not in ann:
        return "int", d
    if "float" in ann and "str" not in ann:
        return "float", d
    return "str", d


def _intstr(v: str) -> int | str:
    return int(v) if v.strip().isdigit() else v


def _options(fn: Any) -> list[tuple[str, str, Any, bool]]:
    """``(name, kind, default, required)`` of the function's own parameters."""
    out = []
    for name, p in inspect.signature(fn).parameters.items():
        if name in _COMMON:
            continue
        kind, default = _kind(p)
        if kind == "skip":
            continue
        out.append((name, kind, default, p.default is inspect.Parameter.empty))
    return out


def add_analysis_parser(sub: Any, common: argparse.ArgumentParser, argv: Sequence[str] = ()) -> None:
    """Register ``cim analysis`` and one sub-command per :data:`REGISTRY` entry.

    Only the analysis named on the command line (``argv``) gets its function-specific options: reading
    them imports the analysis module (Altair, pandas ...), which every other ``cim`` command must not pay.
    """
    args = list(argv)
    chosen = args[args.index("analysis") + 1] if "analysis" in args[:-1] else None
    an = sub.add_parser("analysis", parents=[common], help="provincial analyses: macro/GL, groups, product, "
                        "channel, performance")  # fmt: skip
    asub = an.add_subparsers(dest="analysis", metavar="NAME", required=True)
    for name, entry in REGISTRY.items():
        p = asub.add_parser(name, parents=[common], help=entry.help, description=entry.help)
        p.add_argument("--as", dest="as_user", required=True, metavar="USER", help="user id from access.yaml")
        p.add_argument("--as-of", help="the month, YYYY-MM (default: the latest)")
        p.add_argument("--org", help="focus org: a county or branch within your scope (default: your org)")
        p.add_argument("--lang", choices=["en", "zh_CN"], default="en", help="labels' language")
        p.add_argument("--out", metavar="F.xlsx|F.csv", help="write the whole frame to a file")
        if entry.chart:
            p.add_argument("--chart", metavar="F.png|F.svg|F.html", help="also save the chart")
        p.add_argument("--rows", type=int, default=40, help="rows shown on screen (default 40)")
        p.add_argument("--columns", help="columns shown on screen, comma-separated (default: a readable few)")
        p.add_argument("--app-url", help="base URL of cim serve for the 360 links of a drill")
        for opt, kind, default, required in _options(entry.load()) if name == chosen else ():
            flag = "--" + opt.replace("_", "-")
            if kind == "flag":
                p.add_argument(flag, dest=f"opt_{opt}", action="store_true", default=None,
                               help=f"(default {'on' if default else 'off'})")  # fmt: skip
                if default:
                    p.add_argument("--no-" + opt.replace("_", "-"), dest=f"opt_{opt}", action="store_false")
                continue
            conv = {"int": int, "float": float, "intstr": _intstr, "list": str, "str": str}[kind]
            shown = ",".join(map(str, default)) if kind == "list" else default
            p.add_argument(flag, dest=f"opt_{opt}", type=conv, required=required, metavar=opt.upper(),
                           help="(required)" if required else f"(default {shown})")  # fmt: skip
        p.set_defaults(func=_cmd, entry=entry)


def _cmd(args: argparse.Namespace, home: Home) -> int:
    from cimlib.access import AccessError
    from cimlib.cli import (
        EXIT_DATA,
        EXIT_ERROR,
        EXIT_OK,
        EXIT_USAGE,
        CliError,
        _emit,
        _principal,
        _value_chart,
    )
    from cimlib.customer import AsOfError
    from cimlib.customer._data import json_safe

    entry: Entry = args.entry
    fn = entry.load()
    who = _principal(args, home)
    kwargs: dict[str, Any] = {}
    for opt, kind, _default, _req in _options(fn):
        v = getattr(args, f"opt_{opt}", None)
        if v is None:
            continue
        kwargs[opt] = tuple(x.strip() for x in v.split(",") if x.strip()) if kind == "list" else v
    params = inspect.signature(fn).parameters
    if "app_url" in params:
        kwargs["app_url"] = args.app_url or os.environ.get("CIM_APP_URL")
    try:
        frame = fn(who, as_of=args.as_of, org=args.org, home=home, lang=args.lang, **kwargs)
    except (AsOfError, ValueError, TypeError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except AccessError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc
    files: list[str] = []
    if args.out:
        out = Path(args.out)
        if out.suffix == ".xlsx":
            frame.to_excel(out, index=False)
        elif out.suffix == ".csv":
            frame.to_csv(out, index=False, encoding="utf-8-sig")
        else:
            raise CliError(f"--out: expected a .xlsx or .csv file, got {args.out!r}", EXIT_USAGE)
        files.append(str(out))
    if getattr(args, "chart", None):
        _value_chart(entry.load_chart()(frame, lang=args.lang), args.chart)
        files.append(args.chart)
    failed = int(frame.attrs.get("n_failed", 0) or 0) if args.analysis == "tieout" else 0
    attrs = {k: v for k, v in frame.attrs.items() if isinstance(v, str | int | float | bool) or v is None}
    payload = {"analysis": args.analysis, "attrs": json_safe(attrs), "files": files, "rows": json_safe(frame)}

    def human(c: Any) -> None:
        from rich.table import Table

        title = frame.attrs.get("title") or args.analysis
        c.print(f"[bold]{title}[/] · {frame.attrs.get('as_of', '')} · {who.display_name} [{who.scope_label}]"
                f" · {len(frame):,} rows")  # fmt: skip
        t = Table(show_lines=False)
        cols = _screen_columns(frame, args.columns)
        for col in cols:
            t.add_column(str(col), overflow="fold")
        for row in frame[cols].head(args.rows).itertuples(index=False):
            t.add_row(*[_cell(v) for v in row])
        c.print(t)
        if len(frame) > args.rows:
            c.print(f"… {len(frame) - args.rows:,} more rows (--rows, --out)")
        if args.analysis == "tieout":
            c.print(f"[red]{failed} GL tie-out failure(s) above tolerance[/]" if failed
                    else "[green]GL ties out within tolerance[/]")  # fmt: skip
        for f in files:
            c.print(f"written: {f}")

    _emit(args, payload, human)
    return EXIT_DATA if failed else EXIT_OK


#: Columns a screen table leaves out by default (still in --out and --json).
_QUIET = {"as_of", "as_of_date", "suppressed", "side", "kind", "edition", "link", "stage_basis"}


def _screen_columns(frame: Any, wanted: str | None, limit: int = 8) -> list[str]:
    """The columns of the on-screen table: ``wanted`` (checked), else labels first and a few figures."""
    from cimlib.cli import EXIT_USAGE, CliError

    if wanted:
        cols = [c.strip() for c in wanted.split(",") if c.strip()]
        bad = [c for c in cols if c not in frame.columns]
        if bad:
            raise CliError(f"--columns: unknown {bad}; the frame has {list(frame.columns)}", EXIT_USAGE)
        return cols
    has_label = any(str(c) == "label" or str(c).endswith("_label") for c in frame.columns)
    out = []
    for c in frame.columns:
        name = str(c)
        if name.startswith("_") or name in _QUIET or (has_label and name.endswith("_code")):
            continue
        if frame[c].isna().all():
            continue
        out.append(name)
    return out[:limit]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.2f}"
    return str(v)
