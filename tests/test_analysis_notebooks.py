"""The analysts' notebooks of the provincial analyses (``notebooks/explore/``): each runs end to end under
Papermill for a county manager in Chinese (parameters injected) and, as committed, under nbval (lax) for
the analyst the lab would sign in (``CIM_USER``), on the 13-month analysis bank."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT, Bank

EXPLORE = ROOT / "notebooks" / "explore"
NOTEBOOKS = ("macro_analysis", "customer_groups", "product_analysis", "channel_analysis",
             "performance_analysis")  # fmt: skip
CJK = re.compile(r"[\u4e00-\u9fff]")
CELL_TIMEOUT = 300


@pytest.fixture(scope="module")
def kernel_env(analysis_bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The kernel's environment: the analysis bank, this venv's kernelspec first, the lab's user."""
    jupyter = tmp_path_factory.mktemp("jupyter")
    spec = jupyter / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python",
    }))  # fmt: skip
    return {
        "CIM_HOME": str(analysis_bank.home),
        "CIM_USER": "county_mgr_101",
        "JUPYTER_PATH": os.pathsep.join(p for p in (str(jupyter), os.environ.get("JUPYTER_PATH", "")) if p),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_for_a_county_manager_in_chinese(
    name: str, kernel_env: dict[str, str], tmp_path: Path
) -> None:
    import papermill

    out = tmp_path / f"{name}.ipynb"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in kernel_env.items():
            mp.setenv(k, v)
        papermill.execute_notebook(
            str(EXPLORE / f"{name}.ipynb"), str(out), parameters={"user": "county_mgr_101", "lang": "zh_CN"},
            kernel_name="python3", cwd=str(tmp_path), progress_bar=False, start_timeout=120,
            execution_timeout=CELL_TIMEOUT,
        )  # fmt: skip
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    errors = [f"{o['ename']}: {o['evalue']}" for o in outputs if o["output_type"] == "error"]
    assert not errors, errors
    svgs = [o["data"]["image/svg+xml"] for o in outputs if "image/svg+xml" in o.get("data", {})]
    html = [str(o.get("data", {}).get("text/html", "")) for o in outputs]
    charts = svgs + [h for h in html if "<svg" in h]
    assert len(charts) >= 2, "each notebook shows its charts"
    assert all(CJK.search(str(s)) for s in charts), "charts are labelled in Chinese with lang=zh_CN"
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "102000" not in text, "a county manager's notebook shows no other county"


def test_nbval_lax_runs_the_committed_notebooks(kernel_env: dict[str, str]) -> None:
    """As committed (``user = None``): the lab's analyst from ``CIM_USER``; a broken cell fails CI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update(kernel_env)
    paths = [str((EXPLORE / f"{n}.ipynb").relative_to(ROOT)) for n in NOTEBOOKS]
    before = {p: (ROOT / p).read_bytes() for p in paths}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
         f"--nbval-cell-timeout={CELL_TIMEOUT}", "--nbval-kernel-startup-timeout=120",
         "-p", "no:cacheprovider", "-q", *paths],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    n_code = sum(c.cell_type == "code" for p in paths for c in nbformat.read(ROOT / p, as_version=4).cells)
    assert f"{n_code} passed" in proc.stdout, proc.stdout[-2000:]
    unchanged = all((ROOT / p).read_bytes() == b for p, b in before.items())
    assert unchanged, "nbval must not write to the notebooks"
