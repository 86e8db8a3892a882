"""``cim report`` and ``cim run``: the schedulers' commands.

Exit codes (for cron and Airflow): 0 published (or already published), 1 a report failed (the partial
notebook is under ``failed/``), 2 bad input (nothing ran), 3 the data-quality gate refused to publish,
75 another run of the same report and period holds the lock (try again later).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cimlib.config import Home
from cimlib.reports._params import (
    EXIT_OK,
    EXIT_USAGE,
    ReportError,
    ReportParamsError,
    load_report_settings,
    parse_option,
)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _setup_logs(args: argparse.Namespace, home: Home) -> None:
    from cimlib.cli import CliError
    from cimlib.reports._log import setup_run_logging
    from cimlib.reports._runner import output_root

    try:  # reads parameters/reports/settings.yaml: the first place a broken settings file shows
        root = output_root(home)
    except ReportError as exc:
        raise CliError(str(exc), exc.exit_code) from None
    setup_run_logging(root / "_logs", to_stderr=bool(getattr(args, "log_json", False)))


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if getattr(args, "params_file", None):
        import yaml

        path = Path(args.params_file)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ReportParamsError(f"--params-file {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ReportParamsError(f"--params-file {path}: expected a mapping of options")
        opts.update(data)
    for text in args.param or []:
        k, v = parse_option(text)
        opts[k] = v
    return opts


def notify_summaries(
    home: Home,
    summaries: list[dict[str, Any]],
    *,
    outcome: str,
    lang: str,
    command: str,
    period: str | None,
    error: str | None = None,
    force: bool | None = None,
) -> dict[str, Any]:
    """Send the notification mails of a run (``cim report`` or ``cim run``); never raises.

    Parameters
    ----------
    home : Home
        The installation.
    summaries : list of dict
        :meth:`RunSummary.as_dict` of each report run.
    outcome : str
        ``success`` or ``failure``.
    lang : str
        The mail's language.
    command : str
        The command line, shown in the mail.
    period : str or None
        The period.
    error : str, optional
        Why the run failed, when it failed before any report.
    force : bool, optional
        Send even when the settings disable notification (``--notify``); False never sends.

    Returns
    -------
    dict
        ``sent``, ``recipients`` and ``skipped`` (why nothing was sent), or ``error``.
    """
    import logging

    from cimlib.reports._notify import NotifyError, notify_run
    from cimlib.reports._runner import output_root

    log = logging.getLogger("cimlib.reports")
    settings = load_report_settings(home).notify
    if force is False:
        return {"sent": 0, "recipients": [], "skipped": "--no-notify"}
    if force:
        settings = settings.model_copy(update={"enabled": True})
    reports: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    seconds = 0.0
    for s in summaries:
        seconds += float(s.get("seconds") or 0)
        for r in s.get("results", []):
            if r["status"] in ("published", "unchanged") and r.get("folder"):
                try:
                    m = json.loads((Path(r["folder"]) / "manifest.json").read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                reports.append({**m, "folder": r["folder"]})
            elif r["status"] == "failed":
                failures.append({"report": r["name"], "scope": r["scope"], "error": r.get("error")})
    if error:
        failures.append(
            {"report": summaries[0]["report"] if summaries else "-", "scope": "-", "error": error}
        )
    run = {
        "command": command,
        "period": period,
        "outcome": outcome,
        "reports": reports,
        "failures": failures,
        "index": str(output_root(home) / "index.html"),
        "seconds": round(seconds, 1),
    }
    from cimlib.reports._params import load_report

    scopes = sorted({r["scope"] for s in summaries for r in s.get("results", [])} | {"province"})
    titles = {}
    for s in summaries:
        with contextlib.suppress(ReportError):
            titles[s["report"]] = dict(load_report(s["report"], home).title)
    run["titles"] = titles
    try:
        out = notify_run(settings, outcome=outcome, run=run, lang=lang, scope_of_recipients=scopes)
    except NotifyError as exc:
        log.error("notification failed", extra={"event": "notify_failed", "error": str(exc)})
        return {"sent": 0, "error": str(exc)}
    log.info("notification", extra={"event": "notify", **{k: v for k, v in out.items() if k != "event"}})
    return out


# ------------------------------------------------------------------------------------------ cim report
def cmd_report(args: argparse.Namespace, home: Home) -> int:
    """``cim report NAME --period P --scope S | --burst county``."""
    from cimlib.cli import CliError, _emit
    from cimlib.reports._params import report_names
    from cimlib.reports._runner import (
        DataQualityGateError,
        Plan,
        ReportLocked,
        plan,
        run_report,
    )

    if args.list or not args.name:
        names = report_names(home)
        if not args.name:
            payload = {"reports": names}
            _emit(args, payload, lambda c: c.print("\n".join(names)))
            return EXIT_OK if args.list else EXIT_USAGE
    _setup_logs(args, home)
    err = _err()
    try:
        opts = _options(args)
        if args.dry_run:
            from cimlib.reports._runner import county_scopes

            scopes = county_scopes(home) if args.burst else [args.scope]
            if args.burst and args.burst != "county":
                raise ReportParamsError(f"--burst {args.burst!r}: only county is supported")
            pl: Plan = plan(
                args.name,
                period=args.period,
                scopes=scopes,
                locale=args.locale,
                options=opts,
                home=home,
                allow_dq_failures=args.allow_dq_failures,
                force=args.force,
                pdf=not args.no_pdf,
            )
            payload = {"dry_run": True, **pl.as_dict()}

            def human_plan(c: Console) -> None:
                c.print(
                    f"[bold]dry run[/]: {pl.name} {pl.period} (as of {pl.as_of}, snapshot {pl.snapshot_id})"
                )
                for chk in pl.gate.get("checks", []):
                    c.print(f"  gate {chk['name']}: {'ok' if chk['passed'] else 'FAIL'} - {chk['detail']}")
                for j in payload["jobs"]:
                    have = ", ".join(f"v{v}" for v in j["existing"]) or "none"
                    c.print(f"  {j['scope']:<15} -> {j['folder']} (published: {have})")

            _emit(args, payload, human_plan)
            return EXIT_OK
        progress = None
        task = None
        if args.burst and not args.json and err.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
            )

        def on_plan(pl: Any) -> None:
            nonlocal task
            if progress is not None:
                progress.start()
                task = progress.add_task(f"{pl.name} {pl.period}", total=len(pl.jobs))
            elif not args.json:
                err.print(f"{pl.name} {pl.period}: {len(pl.jobs)} report(s), snapshot {pl.snapshot_id}")

        def on_done(r: Any) -> None:
            if progress is not None and task is not None:
                progress.update(task, advance=1, description=f"{r.name} {r.period} {r.scope} {r.status}")
            elif not args.json:
                line = f"  {r.scope:<15} {r.status:<10} {r.seconds:6.1f} s  {r.folder or ''}"
                err.print(line, soft_wrap=True)
            if r.error and not args.json:
                err.print(f"  {r.scope}: {r.error}", soft_wrap=True, markup=False)

        try:
            summary = run_report(
                args.name,
                period=args.period,
                scope=args.scope,
                burst_by=args.burst,
                locale=args.locale,
                options=opts,
                home=home,
                allow_dq_failures=args.allow_dq_failures,
                force=args.force,
                pdf=not args.no_pdf,
                workers=args.workers,
                on_done=on_done,
                on_plan=on_plan,
            )
        finally:
            if progress is not None:
                progress.stop()
    except DataQualityGateError as exc:
        notify_summaries(
            home,
            [],
            outcome="failure",
            lang=args.locale,
            command=_command(),
            period=args.period,
            error=str(exc),
            force=args.notify,
        )
        raise CliError(str(exc), exc.exit_code) from None
    except (ReportParamsError, ReportLocked) as exc:
        raise CliError(str(exc), exc.exit_code) from None
    except ReportError as exc:
        raise CliError(str(exc), exc.exit_code) from None
    data = summary.as_dict()
    data["notify"] = notify_summaries(
        home,
        [data],
        outcome="success" if not summary.failed else "failure",
        lang=args.locale,
        command=_command(),
        period=summary.period,
        force=args.notify,
    )

    def human(c: Console) -> None:
        t = Table(
            title=f"{summary.report} {summary.period}: {data['published']} published, "
            f"{data['unchanged']} already published, {data['failed']} failed in {summary.seconds:.1f} s"
            + (f" ({summary.workers} workers)" if summary.workers > 1 else "")
        )
        for col in ("scope", "status", "version", "seconds", "folder / error"):
            t.add_column(col, overflow="fold")
        for r in summary.results:
            t.add_row(
                r.scope,
                r.status,
                f"v{r.version}" if r.version else "",
                f"{r.seconds:.1f}",
                r.error or r.folder or "",
            )
        c.print(t)
        if summary.dq.get("allowed"):
            c.print(
                "[yellow]published despite data-quality failures:[/] " + "; ".join(summary.dq["failures"])
            )
        if summary.index:
            c.print(f"index: {summary.index}")

    _emit(args, data, human)
    return summary.exit_code


def _command() -> str:
    return "cim " + " ".join(sys.argv[1:])


# --------------------------------------------------------------------------------------------- cim run
def cmd_run(args: argparse.Namespace, home: Home) -> int:
    """``cim run --period YYYY-MM``: the monthly job."""
    from cimlib.cli import CliError, _emit
    from cimlib.reports._monthly import STEPS, MonthlyRun

    _setup_logs(args, home)
    err = _err()
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    bad = sorted(set(only or []) - set(STEPS))
    if bad:
        raise CliError(f"--only: unknown step(s) {', '.join(bad)}; steps are {', '.join(STEPS)}", EXIT_USAGE)
    try:
        job = MonthlyRun(
            args.period,
            home=home,
            raw=Path(args.raw) if args.raw else None,
            locale=args.locale,
            force=args.force,
            refit=args.refit,
            allow_dq_failures=args.allow_dq_failures,
            incremental=True if args.incremental else None,
            workers=args.workers,
            pdf=not args.no_pdf,
            say=(lambda m: err.print(f"[{args.period}] {m}")) if not args.json else None,
        )
        if args.dry_run:
            payload = {
                "dry_run": True,
                "period": args.period,
                "state": str(job.path),
                "steps": {
                    s: ("skip" if job._done(s, job._key(s)) and not args.force else "run")
                    for s in STEPS
                    if not only or s in only
                },
            }
            _emit(
                args, payload, lambda c: c.print("\n".join(f"{k}: {v}" for k, v in payload["steps"].items()))
            )
            return EXIT_OK
        code = job.run(only)
    except ReportError as exc:
        raise CliError(str(exc), exc.exit_code) from None
    _emit(args, {"period": args.period, "exit_code": code, "state": job.state}, lambda c: None)
    return code


def add_report_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cim report`` and ``cim run`` to the ``cim`` parser."""
    r = sub.add_parser(
        "report",
        parents=[common],
        help="run a periodic report with Papermill into outputs/reports/",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("name", nargs="?", help="the report (parameters/reports/NAME.yaml); --list shows them")
    r.add_argument("--list", action="store_true", help="list the reports")
    r.add_argument("--period", help="YYYY-MM (default: the latest month of the published warehouse)")
    r.add_argument("--scope", default="province", help="province (default) or county:CODE")
    r.add_argument("--burst", choices=["county"], help="one report per county, in parallel")
    r.add_argument("--locale", default="zh_CN", choices=["zh_CN", "en"], help="the report's language")
    r.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="a report option (repeat)")
    r.add_argument("--params-file", help="a YAML file of report options")
    r.add_argument(
        "--allow-dq-failures",
        action="store_true",
        help="publish despite a failed data-quality gate (the first page says so)",
    )
    r.add_argument("--dry-run", action="store_true", help="check everything and show what would run")
    r.add_argument("--force", action="store_true", help="publish a new version even if this one exists")
    r.add_argument("--no-pdf", action="store_true", help="skip the PDF")
    r.add_argument("--workers", type=int, help="parallel reports of a burst (default: settings, auto=cores)")
    r.add_argument("--log-json", action="store_true", help="also write the JSON log lines to stderr")
    r.add_argument(
        "--notify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="send the notification mail (default: as parameters/reports/settings.yaml says)",
    )
    r.set_defaults(func=cmd_report)

    m = sub.add_parser("run", parents=[common], help="the monthly job: ingest, build, score, lists, reports")
    m.add_argument("--period", required=True, help="YYYY-MM: the month whose extracts arrived")
    m.add_argument("--raw", help="the extracts folder (default: HOME/data/raw)")
    m.add_argument("--locale", default="zh_CN", choices=["zh_CN", "en"], help="the reports' language")
    m.add_argument(
        "--only", help="comma-separated steps to run (ingest,build,params,churn,targets,reports,notify)"
    )
    m.add_argument("--force", action="store_true", help="run every step again")
    m.add_argument("--refit", action="store_true", help="fit the churn model again before scoring")
    m.add_argument(
        "--incremental", action="store_true", help="incremental build (see cim build --incremental)"
    )
    m.add_argument(
        "--allow-dq-failures", action="store_true", help="publish despite a failed data-quality gate"
    )
    m.add_argument("--dry-run", action="store_true", help="show which steps would run")
    m.add_argument("--workers", type=int, help="parallel county reports")
    m.add_argument("--no-pdf", action="store_true", help="skip the PDFs")
    m.add_argument("--log-json", action="store_true", help="also write the JSON log lines to stderr")
    m.set_defaults(func=cmd_run)
