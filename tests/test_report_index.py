"""The published report index (``outputs/reports/index.html``), built from hand-written manifests."""

from __future__ import annotations

import json
import logging
import re
import stat
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from cimlib.i18n import locale_keys
from cimlib.reports._index import build_index, failed_runs, index_entries

TITLES = {
    "monthly_pack": {"en": "Monthly management pack", "zh_CN": "月度经营管理报告"},
    "data_quality": {"en": "Data-quality report", "zh_CN": "数据质量报告"},
}
LABELS = {"province": "province", "county:101000": "桐庐县农村商业银行 (101000)",
          "county:102000": "淳安县农村商业银行 (102000)"}


def write_edition(
    root: Path,
    report: str = "monthly_pack",
    period: str = "2026-10",
    scope: str = "province",
    version: int = 1,
    *,
    title: dict[str, str] | None = None,
    dq_allowed: bool = False,
    dq_failures: tuple[str, ...] = (),
    created_at: str = "2026-11-29T16:00:00+00:00",
    extra_files: dict[str, Any] | None = None,
) -> Path:
    """A published version folder with its files and a manifest of the contract's shape."""
    scope_dir = scope.replace(":", "-")
    folder = root / report / period / scope_dir / f"v{version}"
    (folder / "attachments").mkdir(parents=True)
    files = {f"{report}.html": "<html>report</html>", f"{report}.pdf": "%PDF-1.7",
             "attachments/lists.xlsx": "xlsx", f"{report}.ipynb": "{}", "figures.json": "{}"}
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    listed = {name: {"bytes": len(text), "sha256": "0" * 64} for name, text in files.items()}
    listed.update(extra_files or {})
    manifest = {
        "manifest_version": 1, "report": report, "title": title or TITLES[report], "period": period,
        "scope": scope, "scope_dir": scope_dir, "scope_label": LABELS.get(scope, scope), "locale": "zh_CN",
        "version": version, "status": "published", "snapshot_id": f"2026112{version}T141433017Z-695efd",
        "as_of": f"{period}-28", "params": {"top_n": 10}, "params_hash": f"{version:016x}",
        "code_version": {"cimlib": "0.1.0", "git": "ccc3fa6", "dirty": False},
        "dq": {"gate": True, "checks": [], "failures": list(dq_failures), "allowed": dq_allowed},
        "audience": {"role": "provincial_analyst", "org_code": None},
        "timings": {"total": 1.0}, "files": listed, "figures_sha256": "f" * 64, "created_at": created_at,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    return folder


def write_failed(root: Path, report: str, period: str, scope: str, stamp: str, **fields: Any) -> Path:
    folder = root / report / period / scope.replace(":", "-") / "failed" / stamp
    folder.mkdir(parents=True)
    err = {"report": report, "period": period, "scope": scope, "cell_index": 7, "ename": "ValueError",
           "evalue": "boom", "created_at": "2026-11-30T01:02:03+00:00", **fields}
    (folder / "error.json").write_text(json.dumps(err), encoding="utf-8")
    (folder / f"{report}.ipynb").write_text("{}", encoding="utf-8")
    return folder


def hrefs(page: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', page)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "outputs" / "reports"
    for period in ("2026-09", "2026-10"):
        for scope in ("county:102000", "province", "county:101000"):
            write_edition(r, "monthly_pack", period, scope)
        write_edition(r, "data_quality", period, "province")
    write_edition(r, "monthly_pack", "2026-10", "province", 2, created_at="2026-11-30T08:00:00+00:00")
    write_edition(r, "monthly_pack", "2026-10", "province", 3, created_at="2026-12-01T08:00:00+00:00",
                  dq_allowed=True, dq_failures=("gl_tieout: branch 101001 differs by 12.00",
                                                "quarantine: 3.2% of accounts"))
    return r


def test_entries_are_grouped_by_period_then_title_then_scope(root: Path) -> None:
    entries = index_entries(root)
    keys = [(e["period"], e["report"], e["scope"]) for e in entries]
    assert keys == [
        ("2026-10", "data_quality", "province"),  # 数据质量报告 sorts before 月度经营管理报告
        ("2026-10", "monthly_pack", "province"),
        ("2026-10", "monthly_pack", "county:101000"),
        ("2026-10", "monthly_pack", "county:102000"),
        ("2026-09", "data_quality", "province"),
        ("2026-09", "monthly_pack", "province"),
        ("2026-09", "monthly_pack", "county:101000"),
        ("2026-09", "monthly_pack", "county:102000"),
    ]
    page = build_index(root).read_text(encoding="utf-8")
    assert page.index('id="p-2026-10"') < page.index('id="p-2026-09"')
    assert page.index("数据质量报告") < page.index("月度经营管理报告")
    ten = page[page.index('id="p-2026-10"'):page.index('id="p-2026-09"')]
    assert ten.index("monthly_pack-2026-10-province") < ten.index("monthly_pack-2026-10-county-101000") \
        < ten.index("monthly_pack-2026-10-county-102000")


def test_latest_version_is_prominent_and_older_ones_listed(root: Path) -> None:
    entry = next(e for e in index_entries(root) if (e["period"], e["report"], e["scope"])
                 == ("2026-10", "monthly_pack", "province"))
    assert entry["latest"]["version"] == 3
    assert [v["version"] for v in entry["older"]] == [2, 1]
    assert entry["latest"]["path"] == "monthly_pack/2026-10/province/v3"
    kinds = [k["kind"] for k in entry["latest"]["links"]]
    assert kinds == ["html", "pdf", "attachment", "manifest"]
    page = build_index(root).read_text(encoding="utf-8")
    row = page[page.index('id="monthly_pack-2026-10-province"'):]
    row = row[:row.index("</tr>")]
    latest_cell = row[row.index('class="latest"'):row.index("</td>", row.index('class="latest"'))]
    assert "v3" in latest_cell and "v2" not in latest_cell
    assert 'href="monthly_pack/2026-10/province/v3/monthly_pack.html"' in latest_cell
    assert "<details>" in row and "v2" in row and "v1" in row
    assert entry["latest"]["snapshot_id"] in row and "0000000000000003" in row and "2026-10-28" in row
    assert "2026-12-01 08:00 UTC" in row


def test_links_are_relative_and_point_at_existing_files(root: Path) -> None:
    page = build_index(root).read_text(encoding="utf-8")
    links = hrefs(page)
    assert len(links) > 30
    for href in links:
        if href.startswith("#"):
            continue
        assert not href.startswith("/") and ":" not in href and ".." not in href, href
        assert (root / unquote(href)).is_file(), href


def test_the_page_is_self_contained(root: Path) -> None:
    page = build_index(root).read_text(encoding="utf-8")
    lower = page.lower()
    assert "<script" not in lower
    assert "http://" not in lower and "https://" not in lower and "//" not in lower.replace("<!doctype", "")
    assert "url(" not in lower and "@import" not in lower and "<link" not in lower
    assert "<style>" in lower and '<meta charset="utf-8">' in lower


def test_dq_badge_when_published_despite_failures(root: Path) -> None:
    page = build_index(root).read_text(encoding="utf-8")
    row = page[page.index('id="monthly_pack-2026-10-province"'):]
    latest = row[:row.index("<details>")]
    assert 'class="badge warn"' in latest
    assert "数据质量检查未通过但仍发布" in latest
    assert "gl_tieout: branch 101001 differs by 12.00; quarantine: 3.2% of accounts" in latest
    other = page[page.index('id="monthly_pack-2026-10-county-101000"'):]
    assert 'class="badge warn"' not in other[:other.index("</tr>")]
    entry = index_entries(root)[1]
    assert entry["latest"]["dq_allowed"] is True and len(entry["latest"]["dq_failures"]) == 2


def test_bilingual_titles_and_english_page(root: Path) -> None:
    zh = build_index(root).read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in zh and "已发布报告" in zh
    assert '<span class="alt" lang="en">Monthly management pack</span>' in zh
    en = build_index(root, lang="en").read_text(encoding="utf-8")
    assert '<html lang="en">' in en and "Published reports" in en
    assert '<span class="alt" lang="zh-CN">月度经营管理报告</span>' in en
    assert "Province (all counties, aggregates)" in en and "桐庐县农村商业银行 (101000)" in en
    assert en.index("Data-quality report") < en.index("Monthly management pack")


def test_corrupt_or_inconsistent_manifests_are_skipped(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    half = root / "monthly_pack" / "2026-11" / "province" / "v1"
    half.mkdir(parents=True)
    (half / "manifest.json").write_text('{"manifest_version": 1, "report": "monthly_pa', encoding="utf-8")
    listy = root / "monthly_pack" / "2026-11" / "county-101000" / "v1"
    listy.mkdir(parents=True)
    (listy / "manifest.json").write_text("[1, 2]", encoding="utf-8")
    binary = root / "monthly_pack" / "2026-11" / "county-102000" / "v1"
    binary.mkdir(parents=True)
    (binary / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")
    # a manifest that claims another county than its folder must not be shown under that folder
    lying = write_edition(root, "monthly_pack", "2026-08", "county:101000")
    m = json.loads((lying / "manifest.json").read_text(encoding="utf-8"))
    m["scope"] = "county:102000"
    (lying / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    # a temporary folder of the runner is not a version
    (root / "monthly_pack" / "2026-10" / "province" / "v4.tmp").mkdir()
    (root / "monthly_pack" / "2026-10" / "province" / "v4.tmp" / "manifest.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="cimlib.reports._index"):
        page = build_index(root).read_text(encoding="utf-8")
    assert 'id="p-2026-11"' not in page and 'id="p-2026-08"' not in page
    assert "monthly_pack/2026-11/" not in page and "monthly_pack/2026-08/" not in page
    assert len(index_entries(root)) == 8
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "2026-11/province/v1" in warned and "2026-11/county-101000/v1" in warned
    assert "2026-11/county-102000/v1" in warned and "is not the folder's 'county-101000'" in warned
    assert "v4.tmp" in warned


def test_everything_is_escaped(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    evil = {"en": "<script>alert(1)</script>", "zh_CN": "<b>报告</b>\" onmouseover=\"x"}
    folder = write_edition(root, "monthly_pack", "2026-10", "county:101000", title=evil, dq_allowed=True,
                           dq_failures=('"><script>alert(2)</script>',))
    m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    m["scope_label"] = "<img src=x onerror=alert(3)>"
    m["snapshot_id"] = "<i>snap</i>"
    (folder / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    write_failed(root, "monthly_pack", "2026-10", "county:101000", "20261130T010203Z",
                 evalue="<script>alert(4)</script>")
    for lang in ("zh_CN", "en"):
        page = build_index(root, lang=lang).read_text(encoding="utf-8")
        assert "<script" not in page and "<img" not in page and "<b>" not in page and "<i>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "&lt;img src=x onerror=alert(3)&gt;" in page
        assert "&quot; onmouseover=&quot;x" in page
        assert "&lt;script&gt;alert(4)&lt;/script&gt;" in page


def test_unsafe_file_names_in_a_manifest_are_not_linked(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    write_edition(root, extra_files={"../../../etc/passwd": {"bytes": 1}, "/etc/shadow": {"bytes": 1},
                                     "attachments/missing.xlsx": {"bytes": 1}})
    page = build_index(root).read_text(encoding="utf-8")
    assert "passwd" not in page and "shadow" not in page and "missing.xlsx" not in page


def test_failed_runs_are_listed(root: Path) -> None:
    write_failed(root, "monthly_pack", "2026-10", "county:101000", "20261130T010203Z")
    write_failed(root, "data_quality", "2026-10", "province", "20261201T000000Z",
                 created_at="2026-12-01T00:00:00+00:00", ename="CellTimeoutError", evalue="cell 4 ran 900 s")
    (root / "monthly_pack" / "2026-10" / "county-102000" / "failed" / "bad").mkdir(parents=True)
    (root / "monthly_pack" / "2026-10" / "county-102000" / "failed" / "bad" / "error.json").write_text("{")
    runs = failed_runs(root)
    assert [(f["report"], f["scope"]) for f in runs] == [("data_quality", "province"),
                                                         ("monthly_pack", "county:101000")]
    assert runs[1]["cell_index"] == 7 and runs[1]["ename"] == "ValueError"
    page = build_index(root).read_text(encoding="utf-8")
    failed = page[page.index('id="failed"'):]
    assert "CellTimeoutError: cell 4 ran 900 s" in failed and "ValueError: boom" in failed
    assert 'href="monthly_pack/2026-10/county-101000/failed/20261130T010203Z/monthly_pack.ipynb"' in failed
    assert 'href="monthly_pack/2026-10/county-101000/failed/20261130T010203Z/error.json"' in failed
    assert failed.index("CellTimeoutError") < failed.index("ValueError: boom")
    # a failed run is not a published edition
    assert all(e["latest"]["path"].count("/failed/") == 0 for e in index_entries(root))


def test_empty_or_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "none" / "reports"
    assert index_entries(root) == [] and failed_runs(root) == []
    page = build_index(root, lang="en").read_text(encoding="utf-8")
    assert "No report has been published yet." in page and "No failed run." in page


def test_written_atomically_and_readable(root: Path) -> None:
    first = build_index(root)
    (root / "monthly_pack" / "2026-10" / "province" / "v3" / "manifest.json").unlink()
    second = build_index(root)
    assert first == second == root / "index.html"
    assert "monthly_pack/2026-10/province/v3" not in second.read_text(encoding="utf-8")
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == ["index.html"]
    assert stat.S_IMODE(second.stat().st_mode) == 0o644


def test_locale_keys_of_index_and_mail_match() -> None:
    en = {k for k in locale_keys("en") if k.startswith(("report_index.", "report_mail."))}
    zh = {k for k in locale_keys("zh_CN") if k.startswith(("report_index.", "report_mail."))}
    assert en == zh and len(en) > 40
