"""``cim churn``: labels, backtest, score, watchlist and analysis (registered by :func:`add_churn_parser`)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from rich.console import Console
from rich.table import Table

from cimlib.config import Home


def _call(fn: Any) -> Any:
    """Run a churn call, turning its errors into CLI errors with the right exit codes."""
    from cimlib.access import AccessError
    from cimlib.churn._backtest import BacktestError
    from cimlib.churn._params import ChurnParamsError
    from cimlib.cli import EXIT_ERROR, EXIT_USAGE, CliError
    from cimlib.customer import AsOfError

    try:
        return fn()
    except (AsOfError, ChurnParamsError, BacktestError, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except FileNotFoundError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc
    except AccessError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc


def _pct(v: Any) -> str:
    return "" if v is None or v != v else f"{100 * float(v):.1f}%"


def cmd_labels(args: argparse.Namespace, home: Home) -> int:
    """``cim churn labels``: eligible customers and churners per scoring month, definitions side by side."""
    from cimlib.churn import label_counts
    from cimlib.cli import EXIT_OK, _emit, _principal

    who = _principal(args, home)
    frame = _call(lambda: label_counts(who, args.definition, home=home))

    def human(c: Console) -> None:
        c.print(f"[bold]Churn labels[/] for {who.display_name} [{who.scope_label}]: each scoring month's "
                "eligible customers and those who churned in its outcome window")  # fmt: skip
        t = Table()
        for col in ("definition", "as_of", "outcome_months", "eligible", "churned", "rate"):
            t.add_column(col, justify="left" if col in ("definition", "as_of") else "right")
        for r in frame.itertuples(index=False):
            t.add_row(r.definition, str(r.as_of), str(r.outcome_months), f"{r.eligible:,}", f"{r.churned:,}",
                      _pct(r.rate))  # fmt: skip
        c.print(t)

    from cimlib.customer._data import json_safe

    _emit(args, {"rows": json_safe(frame)}, human)
    return EXIT_OK


def cmd_backtest(args: argparse.Namespace, home: Home) -> int:
    """``cim churn backtest``: out-of-time backtest, baselines, model card and the production model."""
    from cimlib.churn import backtest
    from cimlib.cli import EXIT_OK, _emit, _principal

    who = _principal(args, home)
    c0 = Console(stderr=True, highlight=False)
    if not args.json:
        c0.print(f"backtesting definition {args.definition or '(the model default)'} ...")
    bt = _call(lambda: backtest(who, args.definition, home=home, lang=args.lang))
    payload = {
        "definition": bt.definition,
        "train_months": [m.isoformat() for m in bt.train_months],
        "test_months": [m.isoformat() for m in bt.test_months],
        "final_months": [m.isoformat() for m in bt.final_months],
        "n_train": bt.n_train, "n_test": bt.n_test,
        "metrics": bt.metrics, "model_dir": str(bt.model_dir),
        "charts": {k: str(v) for k, v in bt.charts.items()},
        "deciles": bt.deciles.to_dict(orient="records"),
        "seconds": {k: round(v, 3) for k, v in bt.seconds.items()},
    }  # fmt: skip

    def human(c: Console) -> None:
        c.print(f"[bold]Churn backtest[/] of {bt.definition}: trained on "
                f"{', '.join(f'{m:%Y-%m}' for m in bt.train_months)} ({bt.n_train:,} rows), tested on "
                f"{', '.join(f'{m:%Y-%m}' for m in bt.test_months)} ({bt.n_test:,} rows)")  # fmt: skip
        t = Table(title="Out-of-time test")
        for col in ("model", "ROC AUC", "PR AUC", "base rate", "top-decile lift", "top-decile capture"):
            t.add_column(col, justify="left" if col == "model" else "right")
        for name, m in bt.metrics.items():
            t.add_row(name, f"{m.get('roc_auc', float('nan')):.3f}", f"{m.get('pr_auc', float('nan')):.3f}",
                      _pct(m.get("base_rate")), f"{m.get('top_decile_lift', float('nan')):.2f}",
                      _pct(m.get("top_decile_capture")))  # fmt: skip
        c.print(t)
        c.print(f"model and card: {bt.model_dir}")
        for k, p in bt.charts.items():
            c.print(f"{k} chart: {p}")

    _emit(args, payload, human)
    return EXIT_OK


def cmd_score(args: argparse.Namespace, home: Home) -> int:
    """``cim churn score``: score a month with the latest model and write the scores to the warehouse."""
    from cimlib.churn import score
    from cimlib.cli import EXIT_OK, _emit, _principal

    who = _principal(args, home)
    err = Console(stderr=True, highlight=False)
    progress = None if args.json else (lambda msg: err.print(f"  {msg} ..."))
    out = _call(lambda: score(who, args.as_of, args.definition, home=home, progress=progress))

    def human(c: Console) -> None:
        c.print(f"[bold]Scored[/] {out['n_scored']:,} customers of {out['as_of'][:7]} with model "
                f"{out['model_version']} ({out['definition']}); "
                f"reasons for {out['n_with_reasons']:,}")  # fmt: skip
        c.print(f"wrote {out['path']}")
        c.print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in out["seconds"].items()))

    _emit(args, out, human)
    return EXIT_OK


def cmd_watchlist(args: argparse.Namespace, home: Home) -> int:
    """``cim churn watchlist``: important customers ranked by risk x value per branch or manager."""
    from cimlib.churn import watchlist
    from cimlib.cli import EXIT_OK, EXIT_USAGE, CliError, _emit, _frame_table, _principal
    from cimlib.customer._data import json_safe
    from cimlib.targeting._export import ExportError, write_list

    who = _principal(args, home)
    app_url = args.app_url or os.environ.get("CIM_APP_URL")
    frame = _call(lambda: watchlist(who, args.as_of, args.definition, by=args.by, limit=args.limit,
                                    lang=args.lang, home=home, app_url=app_url))  # fmt: skip
    written: list[str] = []
    if args.out:
        try:
            written = [str(p) for p in write_list(frame, args.out, split=args.split, lang=args.lang)]
        except ExportError as exc:
            raise CliError(str(exc), EXIT_USAGE) from exc
    elif args.split:
        raise CliError("--split needs --out FILE.xlsx or FILE.csv", EXIT_USAGE)
    attrs = dict(frame.attrs)

    def human(c: Console) -> None:
        c.print(f"[bold]Churn watchlist[/] ({attrs.get('definition')}, model "
                f"{attrs.get('model_version')}) as of "
                f"{attrs.get('as_of')} for {who.display_name} [{who.scope_label}]: {len(frame):,} customers, "
                f"ranked by risk x value per {args.by}")  # fmt: skip
        # one table per branch (or manager): the group is the title, so the rows keep room for reasons
        key, title = (("home_org_code", "home_org_name") if args.by == "branch"
                      else ("manager_no", "manager_name"))  # fmt: skip
        other = "manager_name" if args.by == "branch" else "home_org_name"
        cols = ["rank", "customer_id", "cust_name", other, "churn_score", "value", "reasons"]
        shown = 0
        for _, part in frame.groupby(frame[key].fillna(""), sort=False):
            if shown >= 30:
                c.print(f"... {len(frame) - shown:,} more (--out FILE writes them all)")
                break
            show = part[cols].head(30 - shown).copy()
            show["churn_score"] = show["churn_score"].map(lambda v: f"{100 * v:.1f}%")
            show["value"] = show["value"].map(lambda v: f"{v:,.0f}")
            show = show.rename(columns={"rank": "#", "customer_id": "customer", "cust_name": "name",
                                        "manager_name": "manager", "home_org_name": "branch",
                                        "churn_score": "risk", "value": "ADB 3m"})  # fmt: skip
            label = part[title].iloc[0] or ("no customer manager" if args.by == "manager" else "")
            _frame_table(c, f"{part[key].iloc[0] or ''} {label}".strip(), show, 30)
            shown += len(show)
        for f in written:
            c.print(f"wrote {f}")

    _emit(args, {**{k: attrs.get(k) for k in ("definition", "model_version", "as_of", "snapshot_id", "by")},
                 "n": len(frame), "files": written, "rows": json_safe(frame)}, human)  # fmt: skip
    return EXIT_OK


def add_churn_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cim churn`` and its sub-commands to the ``cim`` parser."""
    ch = sub.add_parser("churn", parents=[common], help="churn: labels, backtested model, scores, watchlist")
    chs = ch.add_subparsers(dest="churn_command", required=True, metavar="ACTION")
    lb = chs.add_parser("labels", parents=[common], help="eligible and churned customers per scoring month")
    lb.add_argument("--definition", help="one definition of parameters/churn.yaml (default: all)")
    lb.add_argument("--as", dest="as_user", required=True, metavar="USER")
    lb.set_defaults(func=cmd_labels)
    bt = chs.add_parser("backtest", parents=[common],
                        help="train on earlier months, test on later ones; save the model and its card")
    bt.add_argument("--definition", help="a definition of parameters/churn.yaml (default: model.definition)")
    bt.add_argument("--as", dest="as_user", required=True, metavar="USER")
    bt.add_argument("--lang", choices=("zh_CN", "en"), default="zh_CN", help="language of the charts")
    bt.set_defaults(func=cmd_backtest)
    sc = chs.add_parser("score", parents=[common], help="score a month and write the scores to the warehouse")
    sc.add_argument("--as-of", metavar="YYYY-MM", help="the month (default: the latest)")
    sc.add_argument("--definition", help="a definition (default: model.definition)")
    sc.add_argument("--as", dest="as_user", required=True, metavar="USER")
    sc.set_defaults(func=cmd_score)
    wl = chs.add_parser("watchlist", parents=[common],
                        help="important customers by risk x value, per branch or manager (scoped, masked)")
    wl.add_argument("--as-of", metavar="YYYY-MM", help="the scored month (default: the latest)")
    wl.add_argument("--definition", help="a definition (default: model.definition)")
    wl.add_argument("--as", dest="as_user", required=True, metavar="USER")
    wl.add_argument("--by", choices=("branch", "manager"), default="branch")
    wl.add_argument("--limit", type=int, help="the top N of each branch or manager")
    wl.add_argument("--out", metavar="FILE", help="write the list to FILE.xlsx or FILE.csv")
    wl.add_argument("--split", choices=("branch", "manager"), help="one sheet or file per branch or manager")
    wl.add_argument("--lang", choices=("en", "zh_CN"), default="en")
    wl.add_argument("--app-url", help="base URL of cim serve for the 360 links ($CIM_APP_URL)")
    wl.set_defaults(func=cmd_watchlist)
    try:
        from cimlib.churn._analysis import add_analysis_parser
    except ImportError:  # pragma: no cover - the analysis module is optional while it is being written
        return
    add_analysis_parser(chs, common)
