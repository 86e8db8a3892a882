"""The published report index: ``outputs/reports/index.html``.

The index lists every published report edition by period (newest first), report title and scope (the
province first, then the counties by code). For each edition it shows the latest version prominently (links
to its HTML, PDF, attachments and manifest; snapshot, as-of date, publication time and parameter hash; a
warning badge when it was published despite data-quality failures) and the older versions compactly. A
second section lists the failed runs kept under ``failed/`` for debugging.

The page is self-contained (inline CSS, no script, no external URL) and every link is relative, so the
folder can be copied or served as it is. Every value read from a manifest is HTML-escaped, and a corrupt or
half-written manifest is skipped with a logged warning: it never breaks the index.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from cimlib.i18n import t
from cimlib.reports._params import PERIOD_RE, SCOPE_RE, scope_dir_name

log = logging.getLogger(__name__)

INDEX_NAME = "index.html"
_VERSION_DIR = re.compile(r"^v([1-9]\d*)$")
_LANGS = ("zh_CN", "en")
_HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}


# ------------------------------------------------------------------------------------------------ reading
def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or ``None`` (with a warning) when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("report index: skipping unreadable %s: %s", path, exc, extra={"path": str(path)})
        return None
    if not isinstance(data, dict):
        log.warning("report index: skipping %s: not a JSON object", path, extra={"path": str(path)})
        return None
    return data


def _safe_rel(name: Any) -> str | None:
    """A file name of a manifest as a safe relative POSIX path (no absolute path, no ``..``), or None."""
    if not isinstance(name, str) or not name or "\\" in name:
        return None
    p = PurePosixPath(name)
    if p.is_absolute() or any(part in ("..", ".", "") for part in p.parts):
        return None
    return p.as_posix()


def _href(rel: str) -> str:
    """A relative URL for a POSIX path below the index (percent-encoded, ``/`` kept)."""
    return quote(rel, safe="/")


def _scope_key(scope: str) -> tuple[int, str]:
    kind, _, code = scope.partition(":")
    return (0, "") if kind == "province" else (1, code)


def _version_links(folder: Path, rel_folder: str, manifest: dict[str, Any]) -> list[dict[str, str]]:
    """Links to an edition's HTML, PDF, attachments and manifest that exist on disk."""
    files = [f for f in (_safe_rel(k) for k in _dict(manifest.get("files"))) if f]
    for name in _dict(manifest.get("files")):
        if _safe_rel(name) is None:
            log.warning("report index: %s lists an unsafe file name %r; not linked", rel_folder, name)
    html_files = sorted(f for f in files if "/" not in f and f.endswith(".html"))
    pdf_files = sorted(f for f in files if "/" not in f and f.endswith(".pdf"))
    attachments = sorted(f for f in files if f.startswith("attachments/"))
    out: list[dict[str, str]] = []
    for kind, names in (("html", html_files), ("pdf", pdf_files), ("attachment", attachments)):
        for name in names:
            if (folder / name).is_file():
                out.append({"kind": kind, "name": name, "href": _href(f"{rel_folder}/{name}")})
            else:
                log.warning("report index: %s/%s is listed in the manifest but missing", rel_folder, name)
    out.append({"kind": "manifest", "name": "manifest.json", "href": _href(f"{rel_folder}/manifest.json")})
    return out


def _version(root: Path, path: Path) -> dict[str, Any] | None:
    """One published version from ``NAME/PERIOD/SCOPE_DIR/vN/manifest.json``, or None when unusable."""
    rel = path.relative_to(root)
    name, period, scope_dir, vdir = rel.parts[:4]
    m = _VERSION_DIR.match(vdir)
    if not m or not PERIOD_RE.match(period):
        log.warning("report index: skipping %s: not NAME/YYYY-MM/SCOPE/vN", rel, extra={"path": str(path)})
        return None
    manifest = _read_json(path)
    if manifest is None:
        return None
    scope = manifest.get("scope")
    problems = []
    if manifest.get("report") != name:
        problems.append(f"report {manifest.get('report')!r} is not the folder's {name!r}")
    if manifest.get("period") != period:
        problems.append(f"period {manifest.get('period')!r} is not the folder's {period!r}")
    if not isinstance(scope, str) or not SCOPE_RE.match(scope) or scope_dir_name(scope) != scope_dir:
        problems.append(f"scope {scope!r} is not the folder's {scope_dir!r}")
    if manifest.get("version") != int(m.group(1)):
        problems.append(f"version {manifest.get('version')!r} is not the folder's {vdir!r}")
    if manifest.get("status", "published") != "published":
        problems.append(f"status is {manifest.get('status')!r}, not 'published'")
    if problems:
        log.warning("report index: skipping %s: %s", rel, "; ".join(problems), extra={"path": str(path)})
        return None
    dq = _dict(manifest.get("dq"))
    failures = dq.get("failures") if isinstance(dq.get("failures"), list) else []
    rel_folder = PurePosixPath(*rel.parts[:4]).as_posix()
    return {
        "version": int(m.group(1)),
        "path": rel_folder,
        "snapshot_id": manifest.get("snapshot_id"),
        "as_of": manifest.get("as_of"),
        "created_at": manifest.get("created_at"),
        "params_hash": manifest.get("params_hash"),
        "locale": manifest.get("locale"),
        "dq_allowed": dq.get("allowed") is True,
        "dq_failures": [str(f) for f in failures],
        "links": _version_links(path.parent, rel_folder, manifest),
        "manifest": manifest,
    }


def index_entries(root: Path, *, lang: str = "zh_CN") -> list[dict[str, Any]]:
    """The published report editions under ``root``, parsed and sorted as the index shows them.

    Parameters
    ----------
    root : Path
        The published reports folder (``outputs/reports``); a missing folder gives no entries.
    lang : str
        ``"zh_CN"`` or ``"en"``: the language whose report titles decide the order within a period.

    Returns
    -------
    list of dict
        One dict per (report, period, scope), ordered by period (newest first), report title, then scope
        (``province`` first, then counties by code), with keys ``report``, ``period``, ``scope``,
        ``scope_dir``, ``scope_label``, ``title`` (``{"en": ..., "zh_CN": ...}``), ``latest`` (the highest
        version) and ``older`` (the other versions, newest first). Each version is a dict with ``version``,
        ``path`` (the folder relative to ``root``), ``snapshot_id``, ``as_of``, ``created_at``,
        ``params_hash``, ``locale``, ``dq_allowed``, ``dq_failures``, ``links`` (``kind``, ``name`` and a
        relative ``href`` for each existing HTML, PDF, attachment and the manifest) and ``manifest`` (the
        parsed ``manifest.json``). A corrupt manifest, or one that contradicts its folder, is skipped with a
        logged warning.
    """
    root = Path(root)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    if root.is_dir():
        for path in sorted(root.glob("*/*/*/v*/manifest.json")):
            v = _version(root, path)
            if v is not None:
                name, period, scope_dir = path.relative_to(root).parts[:3]
                groups.setdefault((name, period, scope_dir), []).append(v)
    entries = []
    for (name, period, scope_dir), versions in groups.items():
        versions.sort(key=lambda v: v["version"], reverse=True)
        latest = versions[0]["manifest"]
        title = {k: str(v) for k, v in _dict(latest.get("title")).items() if k in _LANGS and v}
        entries.append(
            {
                "report": name,
                "period": period,
                "scope": latest["scope"],
                "scope_dir": scope_dir,
                "scope_label": str(latest.get("scope_label") or latest["scope"]),
                "title": title,
                "latest": versions[0],
                "older": versions[1:],
            }
        )
    entries.sort(key=lambda e: (_title(e, lang), e["report"], _scope_key(e["scope"])))
    entries.sort(key=lambda e: e["period"], reverse=True)
    return entries


def failed_runs(root: Path) -> list[dict[str, Any]]:
    """The failed runs kept under ``NAME/PERIOD/SCOPE_DIR/failed/STAMP/error.json``, newest first.

    Parameters
    ----------
    root : Path
        The published reports folder (``outputs/reports``).

    Returns
    -------
    list of dict
        The fields of each ``error.json`` (``report``, ``period``, ``scope``, ``cell_index``, ``ename``,
        ``evalue``, ``created_at``; the folder's report, period and scope fill a missing one), with ``path``
        (the folder relative to ``root``) and ``links`` (``error.json`` and each partial notebook). An
        unreadable ``error.json`` is skipped with a logged warning.
    """
    root = Path(root)
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for path in sorted(root.glob("*/*/*/failed/*/error.json")):
        rel = path.relative_to(root)
        name, period, scope_dir = rel.parts[:3]
        err = _read_json(path)
        if err is None:
            continue
        rel_folder = PurePosixPath(*rel.parts[:5]).as_posix()
        links = [{"kind": "error", "name": "error.json", "href": _href(f"{rel_folder}/error.json")}]
        links += [
            {"kind": "notebook", "name": nb.name, "href": _href(f"{rel_folder}/{nb.name}")}
            for nb in sorted(path.parent.glob("*.ipynb"))
        ]
        scope = err.get("scope") if isinstance(err.get("scope"), str) else scope_dir.replace("-", ":", 1)
        out.append(
            {
                "report": str(err.get("report") or name),
                "period": str(err.get("period") or period),
                "scope": scope,
                "cell_index": err.get("cell_index"),
                "ename": err.get("ename"),
                "evalue": err.get("evalue"),
                "created_at": err.get("created_at") or rel.parts[4],
                "path": rel_folder,
                "links": links,
            }
        )
    out.sort(key=lambda f: str(f["created_at"]), reverse=True)
    return out


# ------------------------------------------------------------------------------------------------ writing
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _title(entry: dict[str, Any], lang: str) -> str:
    title = entry["title"]
    return str(title.get(lang) or next(iter(title.values()), None) or entry["report"])


def _other_title(entry: dict[str, Any], lang: str) -> tuple[str, str] | None:
    other = next(x for x in _LANGS if x != lang)
    text = entry["title"].get(other)
    return (other, text) if text and text != _title(entry, lang) else None


def _when(value: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM UTC`` (the raw text when it is not one)."""
    if not isinstance(value, str):
        return "" if value is None else str(value)
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if stamp.tzinfo is None:
        return f"{stamp:%Y-%m-%d %H:%M}"
    return f"{stamp.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _scope_label(entry: dict[str, Any], lang: str) -> str:
    return t("report_index.province", lang) if entry["scope"] == "province" else entry["scope_label"]


def _link_label(link: dict[str, str], lang: str) -> str:
    if link["kind"] in ("html", "pdf", "manifest"):
        return t(f"report_index.{link['kind']}", lang)
    return link["name"].removeprefix("attachments/")


def _links_html(links: list[dict[str, str]], lang: str) -> str:
    return " ".join(
        f'<a class="f f-{_e(k["kind"])}" href="{_e(k["href"])}">{_e(_link_label(k, lang))}</a>' for k in links
    )


def _dq_badge(version: dict[str, Any], lang: str) -> str:
    if not version["dq_allowed"]:
        return ""
    tip = t("report_index.dq_failures", lang, failures="; ".join(version["dq_failures"]) or "-")
    return f' <span class="badge warn" title="{_e(tip)}">⚠ {_e(t("report_index.dq_allowed", lang))}</span>'


def _older_html(older: list[dict[str, Any]], lang: str) -> str:
    if not older:
        return f'<span class="muted">{_e(t("report_index.no_older", lang))}</span>'
    items = "".join(
        f'<li><span class="v">v{v["version"]}</span> <span class="muted">{_e(_when(v["created_at"]))} · '
        f'{_e(v["snapshot_id"])}</span>{_dq_badge(v, lang)} {_links_html(v["links"], lang)}</li>'
        for v in older
    )
    summary = _e(t("report_index.older_count", lang, n=len(older)))
    return f"<details><summary>{summary}</summary><ul class=\"older\">{items}</ul></details>"


def _entry_row(entry: dict[str, Any], lang: str) -> str:
    v = entry["latest"]
    return (
        f'<tr id="{_e(entry["report"])}-{_e(entry["period"])}-{_e(entry["scope_dir"])}">'
        f'<td class="scope">{_e(_scope_label(entry, lang))}</td>'
        f'<td class="latest"><span class="v vl">v{v["version"]}</span>{_dq_badge(v, lang)}'
        f'<div class="links">{_links_html(v["links"], lang)}</div></td>'
        f'<td><code>{_e(v["snapshot_id"])}</code></td>'
        f'<td class="nw">{_e(v["as_of"])}</td>'
        f"<td>{_e(_when(v['created_at']))}</td>"
        f'<td><code>{_e(v["params_hash"])}</code></td>'
        f"<td>{_older_html(entry['older'], lang)}</td></tr>"
    )


def _report_table(entries: list[dict[str, Any]], lang: str) -> str:
    first = entries[0]
    other = _other_title(first, lang)
    alt = f' <span class="alt" lang="{_HTML_LANG[other[0]]}">{_e(other[1])}</span>' if other else ""
    heads = ("scope", "latest", "snapshot", "as_of", "created", "params_hash", "older")
    head = "".join(f"<th>{_e(t(f'report_index.{h}', lang))}</th>" for h in heads)
    rows = "".join(_entry_row(e, lang) for e in entries)
    name = _e(t("report_index.report_name", lang, name=first["report"]))
    return (
        f'<section class="report"><h3>{_e(_title(first, lang))}{alt} <small class="muted">{name}</small></h3>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _failed_html(failed: list[dict[str, Any]], lang: str) -> str:
    heading = f'<section id="failed"><h2>{_e(t("report_index.failed_heading", lang))}</h2>'
    if not failed:
        return f'{heading}<p class="muted">{_e(t("report_index.failed_none", lang))}</p></section>'
    heads = ("failed_when", "failed_report", "failed_period", "scope", "failed_cell", "failed_error",
             "failed_files")
    head = "".join(f"<th>{_e(t(f'report_index.{h}', lang))}</th>" for h in heads)
    rows = []
    for f in failed:
        error = ": ".join(str(x) for x in (f["ename"], f["evalue"]) if x not in (None, ""))
        short = error if len(error) <= 300 else error[:299] + "…"
        links = " ".join(
            f'<a class="f" href="{_e(k["href"])}">'
            f'{_e(t("report_index.notebook", lang) if k["kind"] == "notebook" else k["name"])}</a>'
            for k in f["links"]
        )
        scope = t("report_index.province", lang) if f["scope"] == "province" else f["scope"]
        rows.append(
            f"<tr><td>{_e(_when(f['created_at']))}</td><td>{_e(f['report'])}</td><td>{_e(f['period'])}</td>"
            f"<td>{_e(scope)}</td><td>{_e(f['cell_index'])}</td>"
            f'<td class="err" title="{_e(error)}">{_e(short)}</td><td>{links}</td></tr>'
        )
    note = f'<p class="muted">{_e(t("report_index.failed_note", lang))}</p>'
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f"{heading}{note}{table}</section>"


_CSS = """
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","Microsoft YaHei","PingFang SC",system-ui,sans-serif;
margin:0 auto;max-width:1200px;padding:1rem 1.5rem;color:#1f2933;background:#fff;line-height:1.45}
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.3rem;border-bottom:2px solid #1f6feb;padding-bottom:.2rem;
margin-top:2rem}h3{font-size:1.1rem;margin:1.2rem 0 .4rem}
.alt{font-weight:normal;color:#52606d;margin-left:.5rem}
.muted{color:#7b8794}small.muted{font-weight:normal;font-size:.8rem;margin-left:.5rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border:1px solid #d9e2ec;padding:.35rem .5rem;
text-align:left;vertical-align:top}th{background:#f0f4f8;font-weight:600}td.scope{font-weight:600}
.v{display:inline-block;font-family:monospace;background:#e4e7eb;border-radius:3px;padding:0 .3rem}
.vl{background:#1f6feb;color:#fff;font-weight:bold}.links{margin-top:.25rem}
a.f{display:inline-block;margin:0 .35rem .15rem 0;color:#1f6feb;text-decoration:none;border:1px solid #bcccdc;
border-radius:3px;padding:0 .35rem}a.f:hover{background:#f0f4f8}a.f-html{font-weight:bold}
.badge{display:inline-block;border-radius:3px;padding:0 .4rem;margin-left:.4rem;font-size:.8rem;cursor:help}
.warn{background:#fff3c4;color:#8d2b0b;border:1px solid #f0b429}ul.older{margin:.3rem 0;padding-left:1rem}
nav a{margin-right:.6rem}td.err{font-family:monospace;font-size:.8rem;max-width:30rem;word-break:break-word}
footer{margin-top:2rem;font-size:.8rem;color:#7b8794}.nw{white-space:nowrap}code{word-break:break-all;font-size:.8rem}
.report table{table-layout:fixed}.report th:nth-child(1){width:17%}.report th:nth-child(2){width:22%}
.report th:nth-child(3){width:17%}.report th:nth-child(4){width:9%}.report th:nth-child(5){width:12%}
.report th:nth-child(6){width:11%}.report th:nth-child(7){width:12%}
@media print{details{display:block}details>summary{display:none}a.f{border:none}}
"""


def render_index(entries: list[dict[str, Any]], failed: list[dict[str, Any]], *, lang: str = "zh_CN") -> str:
    """The HTML of the index page for :func:`index_entries` and :func:`failed_runs`.

    Parameters
    ----------
    entries : list of dict
        From :func:`index_entries`, in order.
    failed : list of dict
        From :func:`failed_runs`.
    lang : str
        ``"zh_CN"`` or ``"en"``: the page's language (each report's title in the other language is shown
        beside it).

    Returns
    -------
    str
        A self-contained HTML document: inline CSS, no script, no external URL, relative links only.
    """
    if lang not in _LANGS:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(_LANGS)}")
    periods: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        periods.setdefault(e["period"], []).append(e)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    body = [
        f'<header><h1>{_e(t("report_index.heading", lang))}</h1>',
        f'<p class="muted">{_e(t("report_index.generated", lang, when=_when(now)))} · '
        + _e(t("report_index.summary", lang, editions=len(entries), periods=len(periods), failed=len(failed)))
        + "</p>",
    ]
    if periods:
        nav = " ".join(f'<a href="#p-{_e(p)}">{_e(p)}</a>' for p in periods)
        fail_link = f' <a href="#failed">{_e(t("report_index.failed_heading", lang))}</a>' if failed else ""
        body.append(f"<nav><strong>{_e(t('report_index.periods', lang))}:</strong> {nav}{fail_link}</nav>")
    body.append("</header><main>")
    if not periods:
        body.append(f'<p class="muted">{_e(t("report_index.empty", lang))}</p>')
    for period, items in periods.items():
        body.append(f'<section class="period" id="p-{_e(period)}">')
        body.append(f"<h2>{_e(t('report_index.period', lang, period=period))}</h2>")
        by_report: dict[str, list[dict[str, Any]]] = {}
        for e in items:
            by_report.setdefault(e["report"], []).append(e)
        body.extend(_report_table(group, lang) for group in by_report.values())
        body.append("</section>")
    body.append(_failed_html(failed, lang))
    body.append(f"</main><footer>{_e(t('report_index.footer', lang))}</footer>")
    return (
        f'<!DOCTYPE html>\n<html lang="{_HTML_LANG[lang]}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(t('report_index.title', lang))}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def build_index(root: Path, *, lang: str = "zh_CN") -> Path:
    """Write ``root/index.html``, the published report index, atomically.

    Parameters
    ----------
    root : Path
        The published reports folder (``outputs/reports``); created when missing.
    lang : str
        ``"zh_CN"`` (default) or ``"en"``.

    Returns
    -------
    Path
        The index file. It is written to a temporary file in ``root`` and renamed over the old index, so a
        reader never sees a half-written page and concurrent builders never interleave.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries = index_entries(root, lang=lang)
    failed = failed_runs(root)
    text = render_index(entries, failed, lang=lang)
    target = root / INDEX_NAME
    fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".html.tmp", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("report index written", extra={"path": str(target), "editions": len(entries),
                                            "failed": len(failed)})
    return target
