"""The report notebooks (``notebooks/reports/``) under Papermill with injected parameters, and every
notebook of ``notebooks/reports/`` and ``notebooks/apps/`` as committed under nbval (lax), on the 13-month
report bank (churn model and scores).

* the monthly pack for county 101000 in Chinese and for the province in English, and the data-quality
  report: every cell runs, the charts are inline SVG (never the Altair CDN renderer), the county's output
  names no other county;
* each report notebook's ``parameters`` cell declares exactly the fields of its pydantic model, with the
  model's defaults (``papermill.inspect_notebook``).

The app notebooks run under nbval too: without Voila there is no signed-in user, so each app's last cell
shows its "not signed in" view (``cimlib.apps`` refuses before reading any data), which nbval-lax accepts.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.conftest import ROOT, Bank

REPORTS = ROOT / "notebooks" / "reports"
APPS = ROOT / "notebooks" / "apps"
CJK = re.compile(r"[\u4e00-\u9fff]")
CELL_TIMEOUT = 300
START_TIMEOUT = 120


@pytest.fixture(scope="module")
def kernel_env(report_bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The kernel's environment: the report bank, this venv's kernelspec first."""
    jupyter = tmp_path_factory.mktemp("jupyter")
    spec = jupyter / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
        )
    )
    return {
        "CIM_HOME": str(report_bank.home),
        "JUPYTER_PATH": os.pathsep.join(p for p in (str(jupyter), os.environ.get("JUPYTER_PATH", "")) if p),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "OMP_NUM_THREADS": "1",
    }


def _execute(name: str, params: dict[str, Any], env: dict[str, str], tmp: Path) -> Any:
    import papermill

    out = tmp / f"{name}.ipynb"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        papermill.execute_notebook(
            str(REPORTS / f"{name}.ipynb"),
            str(out),
            parameters=params,
            kernel_name="python3",
            cwd=str(tmp),
            progress_bar=False,
            start_timeout=START_TIMEOUT,
            execution_timeout=CELL_TIMEOUT,
        )
    return nbformat.read(out, as_version=4)


def _outputs(nb: Any) -> list[dict[str, Any]]:
    return [o for c in nb.cells for o in c.get("outputs", [])]


def _check_ran(nb: Any) -> tuple[list[str], str]:
    outputs = _outputs(nb)
    errors = [f"{o['ename']}: {o['evalue']}" for o in outputs if o["output_type"] == "error"]
    assert not errors, errors
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), "every code cell ran, in order"
    svgs = [o["data"]["image/svg+xml"] for o in outputs if "image/svg+xml" in o.get("data", {})]
    assert not [
        o
        for o in outputs
        if "application/vnd.vegalite.v5+json" in o.get("data", {})
        or "application/vnd.vegalite.v6+json" in o.get("data", {})
    ]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "cdn.jsdelivr" not in nbformat.writes(nb)
    return svgs, text


def test_monthly_pack_for_a_county_in_chinese(
    kernel_env: dict[str, str], tmp_path: Path, report_bank: Bank
) -> None:
    out = tmp_path / "out"
    nb = _execute(
        "monthly_pack",
        {"scope": "county:101000", "locale": "zh_CN", "out_dir": str(out)},
        kernel_env,
        tmp_path,
    )
    svgs, text = _check_ran(nb)
    assert len(svgs) >= 10 and all(s.lstrip().startswith("<svg") for s in svgs)
    assert sum(bool(CJK.search(s)) for s in svgs) >= len(svgs) - 1, "charts are labelled in Chinese"
    assert "月度经营管理报告" in text and "桐庐县农村商业银行" in text
    other = re.compile(r"(?<![\d.])1(0[2-9]|10)\d{3}(?!\d|\.\d)")
    hit = other.search(text + "\n".join(svgs))
    assert hit is None, (text + "\n".join(svgs))[max(0, hit.start() - 150) : hit.end() + 50] if hit else ""
    assert (out / "figures.json").is_file() and (out / "attachments" / "tables.xlsx").is_file()
    assert list((out / "attachments").glob("targets-*.xlsx"))
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'scope = "county:101000"' in injected[0].source


def test_monthly_pack_for_the_province_in_english(kernel_env: dict[str, str], tmp_path: Path) -> None:
    nb = _execute("monthly_pack", {"scope": "province", "locale": "en"}, kernel_env, tmp_path)
    svgs, text = _check_ran(nb)
    assert len(svgs) >= 10
    assert "Monthly management pack" in text and "aggregates only" in text
    assert not re.search(r"(?<![\d.])[18]\d{9}(?!\d)", text), "no customer number in the provincial edition"


def test_data_quality_report(kernel_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    nb = _execute(
        "data_quality", {"locale": "zh_CN", "out_dir": str(out), "trend_months": 6}, kernel_env, tmp_path
    )
    svgs, text = _check_ran(nb)
    assert svgs and "数据质量报告" in text and "契约测试" in text
    figures = json.loads((out / "figures.json").read_text(encoding="utf-8"))
    assert len(figures["trend.loads"]) == 6
    assert {"gate.checks", "loads.tables", "quarantine.by_reason", "contracts.by_layer"} <= set(figures)


def test_nbval_lax_runs_the_report_and_app_notebooks(kernel_env: dict[str, str]) -> None:
    """As committed: the report notebooks make the provincial edition of the latest month and write
    nothing; the app notebooks show their signed-out view (no Voila request, so no identity)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update(kernel_env)
    paths = sorted(str(p.relative_to(ROOT)) for d in (REPORTS, APPS) for p in d.glob("*.ipynb"))
    assert len([p for p in paths if "/reports/" in p]) == 2 and len(paths) >= 7
    before = {p: (ROOT / p).read_bytes() for p in paths}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "--nbval-current-env",
            f"--nbval-cell-timeout={CELL_TIMEOUT}",
            f"--nbval-kernel-startup-timeout={START_TIMEOUT}",
            "-p",
            "no:cacheprovider",
            "-q",
            *paths,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    n_code = sum(c.cell_type == "code" for p in paths for c in nbformat.read(ROOT / p, as_version=4).cells)
    assert f"{n_code} passed" in proc.stdout, proc.stdout[-2000:]
    assert all((ROOT / p).read_bytes() == b for p, b in before.items()), "nbval must not write to notebooks"


@pytest.mark.parametrize("name", ["monthly_pack", "data_quality"])
def test_parameters_cell_is_the_pydantic_model(name: str) -> None:
    import papermill

    from cimlib.reports._params import PARAM_MODELS

    declared = papermill.inspect_notebook(str(REPORTS / f"{name}.ipynb"))
    model = PARAM_MODELS[name]
    assert set(declared) == set(model.model_fields), name
    for field, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True)
        assert ast.literal_eval(declared[field]["default"]) == default, field
    nb = nbformat.read(REPORTS / f"{name}.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert nb.metadata["kernelspec"]["name"] == "python3"
    # developer notes are dropped from the published HTML; each section is its own code cell
    assert all("remove" in c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "markdown")
    from cimlib.reports._dq import DataQualityReport
    from cimlib.reports._pack import MonthlyPack

    cls = {"monthly_pack": MonthlyPack, "data_quality": DataQualityReport}[name]
    code = [c.source.strip() for c in nb.cells if c.cell_type == "code"]
    for section in cls.sections()[:-1]:
        assert f"rep.{section}()" in code, section
    assert "summary = rep.finish()" in code


def test_the_reports_package_exports_the_report_classes() -> None:
    """The notebooks use ``from cimlib import reports as R; R.MonthlyPack(...)``."""
    from cimlib import reports as R

    assert R.MonthlyPack.report_name == "monthly_pack"
    assert R.DataQualityReport.report_name == "data_quality"
