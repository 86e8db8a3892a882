"""The report's self-contained HTML (nbconvert, our template) and its PDF (headless Chromium, Chinese text).

No kernel: the notebook is built with nbformat and outputs written directly. The PDF tests need Debian's
chromium, fonts-noto-cjk and poppler-utils (pdftotext, pdffonts, pdfinfo); CI installs them, so a missing
tool fails here rather than skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import altair as alt
import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cimlib.charts import CJK_FONT, to_svg
from cimlib.reports._export import (
    ExportError,
    external_refs,
    find_chromium,
    html_to_pdf,
    notebook_html,
    write_html,
)
from cimlib.reports._params import ReportError

REPORT_TITLE = "月度经营管理报告 2026-10"
CHART_TITLE = "各县存款余额趋势"
TABLE_HEADER = "机构名称"
DEV_NOTE = "DEVNOTE-7f3a 开发者备注"
CODE_MARKERS = ("rep.secret_title_marker()", "rep.secret_table_marker()", "print('hidden source')")


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: apt-get install -y poppler-utils (CI's .ci/run installs it)"
    return path


def _chart_svg(title: str = CHART_TITLE, *, width: int = 460) -> str:
    df = pd.DataFrame(
        {
            "月份": ["2026-08", "2026-09", "2026-10"] * 2,
            "机构": ["桐庐县"] * 3 + ["淳安县"] * 3,
            "存款余额": [1.0, 2.0, 3.5, 2.0, 2.5, 2.8],
        }
    )
    chart = (
        alt.Chart(df, title=title)
        .mark_line(point=True, clip=True)
        .encode(x="月份:O", y="存款余额:Q", color="机构:N")
        .properties(width=width, height=200)
        .configure(font=CJK_FONT)
    )
    return to_svg(chart)


def _report_notebook(svg: str) -> Any:
    nb = new_notebook()
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        new_markdown_cell(f"# {DEV_NOTE}\nSections call cimlib; see docs.", metadata={"tags": ["remove"]}),
        new_code_cell(
            "period = None\nscope = 'province'",
            metadata={"tags": ["parameters"]},
            outputs=[new_output("stream", name="stdout", text="PARAMS-OUTPUT\n")],
        ),
        new_code_cell(
            'period = "2026-10"',
            metadata={"tags": ["injected-parameters"]},
            outputs=[new_output("stream", name="stdout", text="INJECTED-OUTPUT\n")],
        ),
        new_code_cell(
            CODE_MARKERS[0],
            execution_count=3,
            outputs=[new_output("display_data", data={"text/html": f"<h1>{REPORT_TITLE}</h1>"})],
        ),
        new_code_cell(
            CODE_MARKERS[1],
            execution_count=4,
            outputs=[
                new_output(
                    "display_data",
                    data={
                        "text/html": (
                            f'<table><thead><tr><th>{TABLE_HEADER}</th><th class="num">存款余额(万元)</th>'
                            '</tr></thead><tbody><tr><td>桐庐县</td><td class="num">1,234.56</td></tr>'
                            '<tr><td>淳安县</td><td class="num">987.65</td></tr></tbody></table>'
                        ),
                        "text/plain": "<table>",
                    },
                )
            ],
        ),
        new_code_cell(
            "rep.chart()",
            execution_count=5,
            outputs=[new_output("display_data", data={"image/svg+xml": svg, "text/plain": "<Chart>"})],
        ),
        new_code_cell(
            CODE_MARKERS[2],
            execution_count=6,
            outputs=[
                new_output("stream", name="stdout", text="STDOUT-KEPT 正常输出\n"),
                new_output("stream", name="stderr", text="STDERR-NOISE FutureWarning\n"),
            ],
        ),
    ]
    return nb


@pytest.fixture(scope="module")
def chart_svg() -> str:
    return _chart_svg()


@pytest.fixture(scope="module")
def report_nb(chart_svg: str) -> Any:
    return _report_notebook(chart_svg)


@pytest.fixture(scope="module")
def exported(report_nb: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The HTML and the PDF of the sample report, made once (Chromium takes a second or two)."""
    folder = tmp_path_factory.mktemp("export")
    saved = os.environ.pop("CIM_CHROMIUM", None)
    try:
        t0 = time.perf_counter()
        html = write_html(report_nb, folder / "monthly_pack.html", lang="zh_CN", title=REPORT_TITLE)
        t1 = time.perf_counter()
        pdf = html_to_pdf(html, folder / "monthly_pack.pdf", timeout=120)
        t2 = time.perf_counter()
    finally:
        if saved is not None:
            os.environ["CIM_CHROMIUM"] = saved
    return {
        "folder": folder,
        "html": html,
        "text": html.read_text(encoding="utf-8"),
        "pdf": pdf,
        "seconds": {"html": t1 - t0, "pdf": t2 - t1},
    }


# ------------------------------------------------------------------------------------------------ HTML
def test_html_shows_outputs_without_code(exported: dict[str, Any]) -> None:
    text = exported["text"]
    for marker in CODE_MARKERS:
        assert marker not in text
    assert "period = None" not in text and "In&nbsp;[" not in text and "Out[" not in text
    assert DEV_NOTE not in text and "DEVNOTE" not in text  # remove-tagged markdown cell
    assert "PARAMS-OUTPUT" not in text and "INJECTED-OUTPUT" not in text
    assert "STDERR-NOISE" not in text
    assert "STDOUT-KEPT 正常输出" in text
    assert f"<h1>{REPORT_TITLE}</h1>" in text
    assert TABLE_HEADER in text and 'class="num"' in text
    assert CHART_TITLE in text  # the chart is inline SVG: its title is text in the page


def test_html_is_self_contained(exported: dict[str, Any]) -> None:
    text = exported["text"]
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)
    assert "<script" not in text.lower()
    for link in re.findall(r"<link\b[^>]*>", text, re.I):
        assert not re.search(r"href\s*=\s*[\"']?(https?:)?//", link, re.I), link
    assert "@import" not in text.lower()
    assert not re.search(r"url\(\s*[\"']?\s*(https?:)?//", text, re.I)
    assert not re.search(r"\b(src|href)\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert "cdn" not in text.lower() and "unpkg" not in text.lower()
    assert external_refs(text) == []
    assert 'http-equiv="Content-Security-Policy"' in text and "default-src 'none'" in text


def test_html_lang_title_and_print_css(exported: dict[str, Any], report_nb: Any) -> None:
    text = exported["text"]
    assert text.lstrip().startswith("<!DOCTYPE html>")
    assert '<html lang="zh-CN">' in text
    assert f"<title>{REPORT_TITLE}</title>" in text
    assert "size: A4 portrait" in text and "margin: 15mm" in text
    assert "break-inside: avoid" in text and "table-header-group" in text
    assert '"Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei"' in text
    assert "break-before: page" not in text and "page-break-before" not in text
    en = notebook_html(report_nb, lang="en", title="Monthly <pack> & more")
    assert '<html lang="en">' in en
    assert "<title>Monthly &lt;pack&gt; &amp; more</title>" in en


def test_notebook_html_reads_a_path_and_is_deterministic(report_nb: Any, tmp_path: Path) -> None:
    path = tmp_path / "report.ipynb"
    nbformat.write(report_nb, path)
    from_path = notebook_html(path, lang="zh_CN", title=REPORT_TITLE)
    from_node = notebook_html(report_nb, lang="zh_CN", title=REPORT_TITLE)
    assert from_path == from_node  # same bytes for the same notebook: the manifest's checksums are stable
    assert report_nb.cells[0].metadata["tags"] == ["remove"]  # the caller's notebook is not modified
    assert report_nb.cells[6].outputs[1]["name"] == "stderr"
    with pytest.raises(ExportError, match="cannot read notebook"):
        notebook_html(tmp_path / "missing.ipynb", lang="en", title="x")


def test_svg_ids_are_unique_and_resolve(report_nb: Any) -> None:
    """Two vl-convert charts both use ids like clip1; inlined, they are prefixed per chart."""
    nb = _report_notebook(_chart_svg("第一张图"))
    nb.cells.append(
        new_code_cell(
            "rep.chart2()",
            outputs=[new_output("display_data", data={"image/svg+xml": _chart_svg("第二张图", width=1400)})],
        )
    )
    raw_ids = re.findall(r'\bid="([^"]+)"', _chart_svg("x"))
    assert raw_ids, "vl-convert's SVG no longer has ids: this test needs a chart that clips"
    text = notebook_html(nb, lang="zh_CN", title="t")
    svgs = re.findall(r"<svg\b.*?</svg>", text, re.S)
    assert len(svgs) == 2
    ids = re.findall(r'\bid="([^"]+)"', "".join(svgs))
    assert len(ids) == len(set(ids)) == 2 * len(raw_ids)
    refs = re.findall(r"url\(#([^)]+)\)", "".join(svgs))
    assert refs and set(refs) <= set(ids)
    assert "<?xml" not in text


@pytest.mark.parametrize(
    "html",
    [
        '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>',
        "<script>import('https://cdn.jsdelivr.net/npm/vega-embed@6')</script>",
        '<img src="http://intranet.example/logo.png">',
        '<img src="//cdn.example/x.png">',
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Noto+Sans+SC">',
        "<style>@import 'theme.css';</style>",
        '<div style="background: url(https://example.com/bg.png)">x</div>',
        '<iframe src="report2.html"></iframe>',
    ],
)
def test_external_references_are_refused(html: str) -> None:
    nb = new_notebook()
    nb.cells = [new_code_cell("x", outputs=[new_output("display_data", data={"text/html": html})])]
    assert external_refs(html)
    with pytest.raises(ExportError, match="not be self-contained"):
        notebook_html(nb, lang="en", title="t")


def test_links_and_data_urls_are_allowed() -> None:
    html = (
        '<p><a href="https://bank.example/help">help</a> <a href="#s2">§2</a></p>'
        '<img alt="dot" src="data:image/png;base64,iVBORw0KGgo=">'
        '<p style="background: url(data:image/png;base64,iVBORw0KGgo=)">ok</p>'
    )
    nb = new_notebook()
    nb.cells = [new_code_cell("x", outputs=[new_output("display_data", data={"text/html": html})])]
    text = notebook_html(nb, lang="en", title="t")
    assert "https://bank.example/help" in text
    assert external_refs(text) == []


def test_javascript_chart_is_refused() -> None:
    """An Altair chart left on a JavaScript renderer is blank offline: say which cell, before rendering."""
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("note", metadata={"tags": ["remove"]}),
        new_code_cell(
            "chart",
            outputs=[
                new_output(
                    "display_data",
                    data={
                        "application/vnd.vegalite.v5+json": {"mark": "bar"},
                        "text/plain": "alt.Chart(...)",
                    },
                )
            ],
        ),
    ]
    with pytest.raises(ExportError, match=r"cell 1 .*SVG"):
        notebook_html(nb, lang="en", title="t")
    # a widget view or JavaScript falls back to its text; nothing executable reaches the page
    nb.cells[1].outputs = [
        new_output(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2},
                "application/javascript": "alert(1)",
                "text/plain": "IntSlider(value=3)",
            },
        )
    ]
    text = notebook_html(nb, lang="en", title="t")
    assert "IntSlider(value=3)" in text and "alert(1)" not in text and "<script" not in text


def test_error_outputs_stay_visible() -> None:
    nb = new_notebook()
    nb.cells = [
        new_code_cell(
            "1/0",
            outputs=[
                new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=["Trace"])
            ],
        )
    ]
    text = notebook_html(nb, lang="en", title="t")
    assert "Trace" in text and "application/vnd.jupyter.stderr" in text


def test_bad_lang_is_refused(report_nb: Any) -> None:
    for lang in ("", "zh CN", "../en", "中文"):
        with pytest.raises(ExportError, match="language tag"):
            notebook_html(report_nb, lang=lang, title="t")


def test_write_html_is_atomic(report_nb: Any, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("OLD", encoding="utf-8")
    assert write_html(report_nb, out, lang="zh_CN", title=REPORT_TITLE) == out
    assert out.read_text(encoding="utf-8") == notebook_html(report_nb, lang="zh_CN", title=REPORT_TITLE)
    bad = new_notebook()
    bad.cells = [
        new_code_cell("x", outputs=[new_output("display_data", data={"text/html": "<script></script>"})])
    ]
    before = out.read_bytes()
    with pytest.raises(ExportError):
        write_html(bad, out, lang="en", title="t")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary file left behind


def test_export_error_is_a_report_error() -> None:
    assert issubclass(ExportError, ReportError)
    assert ExportError("x").exit_code == ReportError.exit_code


# ------------------------------------------------------------------------------------------------ PDF
def _pdftext(pdf: Path, mode: str = "-layout") -> str:
    out = subprocess.run(
        [_tool("pdftotext"), mode, "-enc", "UTF-8", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return re.sub(r"\s+", "", out)


def _pdffonts(pdf: Path) -> list[dict[str, str]]:
    out = subprocess.run(
        [_tool("pdffonts"), str(pdf)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    rows = []
    for line in out.splitlines()[2:]:
        # name, type (may hold spaces), encoding, emb, sub, uni, object, ID: parse from the right
        parts = line.split()
        if len(parts) >= 7:
            rows.append(
                {"name": parts[0], "emb": parts[-5], "sub": parts[-4], "uni": parts[-3], "line": line}
            )
    return rows


def test_pdf_is_a4_with_chinese_text(exported: dict[str, Any]) -> None:
    pdf: Path = exported["pdf"]
    assert pdf.read_bytes()[:5] == b"%PDF-"
    text = _pdftext(pdf)
    for words in (REPORT_TITLE, CHART_TITLE, TABLE_HEADER, "存款余额(万元)", "桐庐县", "1,234.56", "月份"):
        assert re.sub(r"\s+", "", words) in text, words
    # the chart's axis labels are text too, digits included (rotated, so read in content order)
    assert "2026-08" in _pdftext(pdf, "-raw")
    for hidden in (*CODE_MARKERS, "DEVNOTE", "STDERR-NOISE", "PARAMS-OUTPUT"):
        assert re.sub(r"\s+", "", hidden) not in text
    info = subprocess.run(
        [_tool("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "(A4)" in info, info
    assert not list(pdf.parent.glob(".*.tmp"))


def test_pdf_embeds_the_cjk_font(exported: dict[str, Any]) -> None:
    """Every font is embedded; the CJK glyphs come from Noto Sans CJK SC.

    Chromium (Skia) embeds a CFF-outline OpenType font such as Noto Sans CJK as ``Type 3`` fonts, whose
    name ``pdffonts`` prints as ``[none]``; the font descriptor still names the font it was made from.
    """
    pdf: Path = exported["pdf"]
    fonts = _pdffonts(pdf)
    assert fonts, "pdffonts lists no font"
    assert all(f["emb"] == "yes" for f in fonts), [f["line"] for f in fonts if f["emb"] != "yes"]
    assert all(f["uni"] == "yes" for f in fonts)  # a ToUnicode map: the text can be searched and copied
    names = set(re.findall(rb"/FontName\s*/(?:[A-Z]{6}\+)?([A-Za-z0-9-]+)", pdf.read_bytes()))
    assert any(n.startswith(b"NotoSansCJK") for n in names), names


def test_pdf_times(exported: dict[str, Any]) -> None:
    """A small report: well under the render timeout (a 20-table, 15-chart report takes ~0.4 s + ~2 s)."""
    assert exported["seconds"]["html"] < 10
    assert exported["seconds"]["pdf"] < 60


# ------------------------------------------------------------------------------------------- Chromium
def _fake(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake-chromium"
    script.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    script.chmod(0o755)
    return script


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_find_chromium_finds_debian_chromium(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIM_CHROMIUM", raising=False)
    path = find_chromium()
    assert Path(path).is_file() and os.access(path, os.X_OK)


def test_find_chromium_honours_cim_chromium(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _fake(tmp_path, "exit 0\n")
    monkeypatch.setenv("CIM_CHROMIUM", str(fake))
    assert find_chromium() == str(fake)
    monkeypatch.setenv("CIM_CHROMIUM", str(tmp_path / "no-such-browser"))
    with pytest.raises(ExportError, match="CIM_CHROMIUM"):
        find_chromium()


def test_find_chromium_explains_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import cimlib.serve

    monkeypatch.delenv("CIM_CHROMIUM", raising=False)
    monkeypatch.setattr(cimlib.serve, "chromium_path", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ExportError, match=r"apt-get install chromium.*CIM_CHROMIUM"):
        find_chromium()


def test_hanging_chromium_is_killed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, exported: dict[str, Any]
) -> None:
    pids = tmp_path / "pids"
    fake = _fake(
        tmp_path,
        f'echo "fake chromium: waiting for a GPU that never comes" >&2\n'
        f"sleep 300 &\necho $$ $! > {pids}\nwait\n",
    )
    monkeypatch.setenv("CIM_CHROMIUM", str(fake))
    out = tmp_path / "r.pdf"
    t0 = time.perf_counter()
    with pytest.raises(ExportError) as err:
        html_to_pdf(exported["html"], out, timeout=2)
    assert time.perf_counter() - t0 < 15
    assert "within 2 s" in str(err.value)
    assert "waiting for a GPU that never comes" in str(err.value)
    shell, child = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 5
    while (_alive(shell) or _alive(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(shell) and not _alive(child), "the process group was not killed"
    assert not out.exists() and list(tmp_path.glob(".*.tmp")) == []


def test_failing_chromium_reports_its_stderr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, exported: dict[str, Any]
) -> None:
    monkeypatch.setenv("CIM_CHROMIUM", str(_fake(tmp_path, 'echo "boom: cannot open display" >&2\nexit 1\n')))
    out = tmp_path / "r.pdf"
    out.write_bytes(b"%PDF-1.4 old version\n%%EOF\n")
    with pytest.raises(ExportError, match=r"(?s)exited with 1.*boom: cannot open display"):
        html_to_pdf(exported["html"], out, timeout=30)
    assert out.read_bytes() == b"%PDF-1.4 old version\n%%EOF\n"  # untouched


def test_chromium_writing_no_pdf_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, exported: dict[str, Any]
) -> None:
    body = (
        'for a in "$@"; do case "$a" in --print-to-pdf=*) printf "<html>not a pdf</html>" > "${a#*=}";; '
        "esac; done\necho printed >&2\nexit 0\n"
    )
    monkeypatch.setenv("CIM_CHROMIUM", str(_fake(tmp_path, body)))
    out = tmp_path / "r.pdf"
    with pytest.raises(ExportError, match="no valid PDF"):
        html_to_pdf(exported["html"], out, timeout=30)
    assert not out.exists() and list(tmp_path.glob(".*.tmp")) == []


def test_missing_html_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no HTML file"):
        html_to_pdf(tmp_path / "missing.html", tmp_path / "r.pdf")
