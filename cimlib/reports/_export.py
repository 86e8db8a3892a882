"""Publish an executed report notebook: a self-contained HTML file, and a PDF printed from it by Chromium.

HTML
----
nbconvert's ``HTMLExporter`` with our template ``cim_report`` (``cimlib/reports/templates/cim_report/``).
The template extends ``lab/base.html.j2``, so cells and outputs have JupyterLab's markup, but it replaces the
whole ``<head>`` of ``lab/index.html.j2``. That head is what pulls the network in: require.js and MathJax
from cdnjs, Mermaid from cdnjs, and (for notebooks with widget state) the widget renderer from unpkg.
Ours has one inline stylesheet (``report.css``: screen and A4 print), no script at all, and a
Content-Security-Policy ``<meta>`` that forbids every fetch but ``data:`` images and fonts, so even a
stray reference could not reach the network, in a browser or in the Chromium that prints the PDF.
A template rather than post-processing, because removing ``<script>`` tags from generated HTML with
regular expressions is fragile, and the template also drops the 300 KB of JupyterLab CSS we do not need.

What the reader does not see:

- code cells' source and all prompts (``exclude_input``, ``exclude_input_prompt``,
  ``exclude_output_prompt``);
- cells tagged ``remove`` (developer notes), and the outputs of the ``parameters`` and
  ``injected-parameters`` cells (``TagRemovePreprocessor``);
- ``stderr`` streams (warnings, progress bars). Error outputs stay visible: a failed report is never
  published, and its HTML is then a debugging aid.

Charts are ``image/svg+xml`` outputs (``cimlib.charts.to_svg``), written inline: Chromium then prints their
labels as real text (an SVG inside an ``<img>`` is drawn without its text, so ``pdftotext`` found no digits
in it and read 月 as the Kangxi radical ⽉). Each chart's ids get a unique prefix (``cim_svg`` filter), so
the clip paths of two vl-convert charts cannot collide, and CSS scales the chart to the page width.
After rendering, :func:`external_refs` scans the HTML: any script, stylesheet link, ``@import``, ``url()``
or ``src`` that is not a ``data:`` URL is an :class:`ExportError` naming it, and so is an Altair chart
shown with a JavaScript renderer (it would be blank offline).

PDF
---
:func:`html_to_pdf` prints that HTML with Debian's Chromium, headless, straight through ``subprocess``
(no Playwright at run time). This closes nbconvert's open CJK gap: its ``--to pdf`` goes through LaTeX,
whose template sets up no CJK fonts (no xeCJK), so Chinese text disappears or the run fails; its
``--to webpdf`` needs Playwright's own Chromium download, which cannot be installed here. Chromium
lays the page out with HarfBuzz and finds fonts through fontconfig: with ``<html lang="zh-CN">`` and
the CSS font stack (``Noto Sans CJK SC`` first, from Debian's ``fonts-noto-cjk``), Han text is shaped and
the glyphs used are embedded in the PDF with a ToUnicode map, so it prints and searches anywhere.

One thing looks odd in ``pdffonts``: Skia, Chromium's PDF backend, embeds TrueType-outline fonts as named
``CID TrueType`` subsets but CFF-outline OpenType fonts, which Noto Sans CJK is, as ``Type 3`` fonts (the
glyph outlines as drawing procedures), and ``pdffonts`` prints their name as ``[none]``. Their
``/FontDescriptor`` still says ``/FontName /BAAAAA+NotoSansCJKsc-Regular``; the tests check that name, that
every font is embedded, and the text ``pdftotext`` extracts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cimlib.reports._params import ReportError

if TYPE_CHECKING:
    from nbformat import NotebookNode

log = logging.getLogger(__name__)

__all__ = [
    "CHROMIUM_PDF_FLAGS",
    "ExportError",
    "external_refs",
    "find_chromium",
    "html_to_pdf",
    "notebook_html",
    "write_html",
]

#: The nbconvert template directory (holds ``cim_report/``).
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "cim_report"

#: Cells dropped from the HTML, and cells whose outputs are dropped (Jupyter Book's spellings too).
REMOVE_CELL_TAGS = frozenset({"remove", "remove-cell", "remove_cell"})
REMOVE_OUTPUT_TAGS = frozenset({"parameters", "injected-parameters", "remove-output", "remove_output"})

#: What an output may be shown as, best first. No JavaScript, widget views or Mermaid: they need a CDN.
DISPLAY_PRIORITY = (
    "text/html",
    "text/markdown",
    "image/svg+xml",
    "image/png",
    "image/jpeg",
    "text/latex",
    "text/plain",
)

#: Headless print flags (shared/STACK.md's launch flags, plus no header/footer and a small /dev/shm).
CHROMIUM_PDF_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pdf-header-footer",
)

_LANG_RE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")
_VEGA_MIME = re.compile(r"application/vnd\.vega(?:lite)?\.v\d+\+json")
_EXTERNAL = re.compile(
    r"""
      <script\b                                                   # any script (the report has none)
    | <link\b[^>]*?\bhref\s*=\s*["']?+(?!data:)                   # a stylesheet or icon link
    | <(?:object|embed)\b                                         # plug-ins
    | <[a-z][^>]*?\s(?:src|srcset|poster|xlink:href)\s*=\s*["']?+(?!data:|\#)  # img, iframe ... not data:
    | @import\b
    | url\(\s*["']?+(?!data:|\#)                                  # CSS url() that is not data: or #id
    """,
    re.IGNORECASE | re.VERBOSE,
)


class ExportError(ReportError):
    """The report's HTML or PDF could not be produced (or would not be self-contained)."""


# ------------------------------------------------------------------------------------------------ HTML
def _html_lang(lang: str) -> str:
    if not isinstance(lang, str) or not _LANG_RE.fullmatch(lang):
        raise ExportError(f"lang must be a language tag such as 'zh_CN', 'zh-CN' or 'en', not {lang!r}")
    return lang.replace("_", "-")


def _load(nb: NotebookNode | str | os.PathLike[str]) -> tuple[Any, str]:
    """The notebook node, and the folder that relative image paths in markdown are resolved against."""
    import nbformat

    if isinstance(nb, str | os.PathLike):
        path = Path(nb)
        try:
            return nbformat.read(path, as_version=4), str(path.resolve().parent)
        except (OSError, ValueError) as exc:
            raise ExportError(f"cannot read notebook {path}: {exc}") from exc
    if isinstance(nb, dict) and not isinstance(nb, nbformat.NotebookNode):
        nb = nbformat.from_dict(nb)
    return nb, os.getcwd()


def _check_outputs(nb: Any) -> None:
    """Refuse outputs that would show blank offline: an Altair/Vega chart with no static image."""
    for index, cell in enumerate(nb.cells):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type != "code" or tags & (REMOVE_CELL_TAGS | REMOVE_OUTPUT_TAGS):
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if any(_VEGA_MIME.fullmatch(k) for k in data) and not (
                {"image/svg+xml", "image/png"} & data.keys()
            ):
                raise ExportError(
                    f"cell {index} shows an Altair chart with a JavaScript renderer, which is blank offline "
                    "and in the PDF: display it as SVG (cimlib.charts.to_svg / IPython.display.SVG)"
                )


_SVG_PROLOG = re.compile(r"\A\s*(?:<\?xml[^>]*\?>\s*)?(?:<!DOCTYPE[^>]*>\s*)?", re.IGNORECASE)
_SVG_ID = re.compile(r"""\bid\s*=\s*["']([^"']+)["']""")


def _svg_filter() -> Any:
    """A Jinja filter that makes one SVG output fit to inline: no XML prolog, ids unique in the page."""
    count = 0

    def cim_svg(svg: str | list[str]) -> str:
        nonlocal count
        count += 1
        text = _SVG_PROLOG.sub("", "".join(svg) if isinstance(svg, list) else str(svg))
        ids = set(_SVG_ID.findall(text))
        if not ids:
            return text
        prefix = f"cim{count}-"
        names = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
        ref = re.compile(rf"""(\bid\s*=\s*["']|url\(\s*["']?#|href\s*=\s*["']#)({names})(?=["')])""")
        return ref.sub(lambda m: m.group(1) + prefix + m.group(2), text)

    return cim_svg


def _quiet_preprocessor() -> Any:
    from nbconvert.preprocessors import Preprocessor

    class DropStderr(Preprocessor):  # type: ignore[misc]
        """Drop stderr streams (warnings, progress bars); error outputs stay."""

        def preprocess_cell(self, cell: Any, resources: Any, index: int) -> tuple[Any, Any]:
            if cell.cell_type == "code" and cell.get("outputs"):
                cell.outputs = [
                    o
                    for o in cell.outputs
                    if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
                ]
            return cell, resources

    return DropStderr()


def _exporter() -> Any:
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    c = Config()
    c.HTMLExporter.exclude_input = True
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    c.HTMLExporter.exclude_anchor_links = True
    c.HTMLExporter.embed_images = True  # markdown images become data: URLs
    c.NbConvertBase.display_data_priority = list(DISPLAY_PRIORITY)
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = set(REMOVE_CELL_TAGS)
    c.TagRemovePreprocessor.remove_all_outputs_tags = set(REMOVE_OUTPUT_TAGS)
    exporter = HTMLExporter(
        config=c, template_name=TEMPLATE_NAME, extra_template_basedirs=[str(TEMPLATES_DIR)]
    )
    exporter.register_preprocessor(_quiet_preprocessor(), enabled=True)
    exporter.register_filter("cim_svg", _svg_filter())
    return exporter


def external_refs(html: str) -> list[str]:
    """Find what would make ``html`` fetch anything: scripts, links, ``src``/``url()`` that are not ``data:``.

    Hyperlinks (``<a href>``) are allowed: following one is the reader's choice, not part of rendering.

    Parameters
    ----------
    html : str
        An HTML document.

    Returns
    -------
    list of str
        A short excerpt around each offending reference (empty when the document is self-contained).
    """
    return [html[max(0, m.start() - 40) : m.end() + 60].replace("\n", " ") for m in _EXTERNAL.finditer(html)]


def notebook_html(nb: NotebookNode | str | os.PathLike[str], *, lang: str, title: str) -> str:
    """Render an executed report notebook as one self-contained HTML document, without code.

    Parameters
    ----------
    nb : NotebookNode or path
        The executed notebook (nbformat v4), or the path of an ``.ipynb`` file.
    lang : str
        The report's locale (``"zh_CN"`` or ``"en"``); written as ``<html lang="zh-CN">`` so browsers and
        fontconfig pick Simplified Chinese glyphs.
    title : str
        The document ``<title>``.

    Returns
    -------
    str
        The HTML: no code, prompts, ``remove``-tagged cells, parameter outputs or stderr; charts as
        ``data:`` SVG images; one inline stylesheet with A4 print rules; no script and no external URL.

    Raises
    ------
    ExportError
        The notebook cannot be read, ``lang`` is not a language tag, an output is a JavaScript-rendered
        chart, or the result would reference anything outside itself (see :func:`external_refs`).
    """
    html_lang = _html_lang(lang)
    node, folder = _load(nb)
    _check_outputs(node)
    resources = {"cim": {"lang": html_lang, "title": str(title)}, "metadata": {"path": folder}}
    html, _ = _exporter().from_notebook_node(node, resources=resources)
    bad = external_refs(html)
    if bad:
        raise ExportError(
            f"the report HTML would not be self-contained ({len(bad)} external reference(s), first: "
            f"{bad[0]!r}); show charts as SVG and tables as plain HTML, without scripts or remote images"
        )
    return str(html)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_html(
    nb: NotebookNode | str | os.PathLike[str], path: str | os.PathLike[str], *, lang: str, title: str
) -> Path:
    """Write :func:`notebook_html` to ``path`` atomically (a temporary file, then ``os.replace``).

    Parameters
    ----------
    nb : NotebookNode or path
        The executed notebook or its path.
    path : path
        The HTML file to write (its folder must exist).
    lang : str
        The report's locale (``"zh_CN"`` or ``"en"``).
    title : str
        The document title.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ExportError
        As :func:`notebook_html`.
    """
    out = Path(path)
    _atomic_write(out, notebook_html(nb, lang=lang, title=title).encode("utf-8"))
    return out


# ------------------------------------------------------------------------------------------------ PDF
def find_chromium() -> str:
    """Find the Chromium that prints PDFs.

    ``$CIM_CHROMIUM`` first (a path or a command name; an invalid value is an error, not skipped), then
    :func:`cimlib.serve.chromium_path` (Debian's ``/usr/bin/chromium``, ``chromium`` on ``PATH``), then
    ``chromium-browser``, ``google-chrome`` and ``google-chrome-stable`` on ``PATH``.

    Returns
    -------
    str
        The executable's path.

    Raises
    ------
    ExportError
        ``$CIM_CHROMIUM`` is not an executable, or no Chromium is installed.
    """
    override = os.environ.get("CIM_CHROMIUM")
    if override:
        found = shutil.which(override)
        if not found:
            raise ExportError(f"CIM_CHROMIUM={override!r} is not an executable file")
        return found
    from cimlib.serve import chromium_path

    system = chromium_path()
    if system:
        return system
    for name in ("chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    raise ExportError(
        "no Chromium found to print the PDF: install Debian's chromium (apt-get install chromium) "
        "or set CIM_CHROMIUM to a Chromium or Chrome executable"
    )


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines)[-limit:]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _is_pdf(path: Path) -> bool:
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(5)
            fh.seek(max(0, size - 1024))
            tail = fh.read()
    except OSError:
        return False
    return head == b"%PDF-" and b"%%EOF" in tail


def html_to_pdf(
    html_path: str | os.PathLike[str], pdf_path: str | os.PathLike[str], *, timeout: float = 180
) -> Path:
    """Print an HTML file to PDF with headless Chromium (A4, the page's own print CSS, no header/footer).

    Chromium runs in its own process group with a fresh profile folder, and prints to a temporary file
    next to ``pdf_path``; the file must start with ``%PDF-`` and end with ``%%EOF`` before it is moved into
    place with ``os.replace``, so ``pdf_path`` is either the whole PDF or untouched.

    Parameters
    ----------
    html_path : path
        The HTML file (from :func:`write_html`).
    pdf_path : path
        The PDF to write (its folder must exist).
    timeout : float
        Seconds before Chromium, and everything it started, is killed.

    Returns
    -------
    Path
        ``pdf_path``.

    Raises
    ------
    ExportError
        No Chromium, a missing HTML file, a timeout, a non-zero exit or no valid PDF; the message carries
        the end of Chromium's stderr.
    """
    html = Path(html_path).resolve()
    out = Path(pdf_path)
    if not html.is_file():
        raise ExportError(f"no HTML file to print: {html}")
    chromium = find_chromium()
    tmp_pdf = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    work = Path(tempfile.mkdtemp(prefix="cim-chromium-"))
    err_path = work / "stderr.txt"
    cmd = [
        chromium,
        *CHROMIUM_PDF_FLAGS,
        f"--user-data-dir={work / 'profile'}",
        f"--print-to-pdf={tmp_pdf}",
        html.as_uri(),
    ]
    t0 = time.perf_counter()
    try:
        with err_path.open("wb") as err:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True
            )
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait()
                raise ExportError(
                    f"Chromium did not print {html.name} within {timeout:g} s and was killed; "
                    f"stderr:\n{_tail(err_path)}"
                ) from None
            finally:
                _kill_group(proc)  # helpers (crashpad, zygote) that outlive the browser
        if rc != 0:
            raise ExportError(f"Chromium exited with {rc} printing {html.name}; stderr:\n{_tail(err_path)}")
        if not _is_pdf(tmp_pdf):
            raise ExportError(
                f"Chromium wrote no valid PDF for {html.name} ({chromium}); stderr:\n{_tail(err_path)}"
            )
        os.replace(tmp_pdf, out)
    finally:
        tmp_pdf.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    log.debug(
        "printed PDF",
        extra={
            "event": "pdf",
            "html": str(html),
            "pdf": str(out),
            "seconds": round(time.perf_counter() - t0, 3),
        },
    )
    return out
