"""Notebooks: the analysts' value-and-churn walk-through runs end to end, under Papermill (with injected
parameters) and under nbval (lax), on the 12-month churn bank; and every notebook under ``notebooks/`` is
committed without outputs and without logic (DESIGN.md: imports, a ``parameters`` cell, calls into cimlib).

The kernel is this environment's Python: a private kernelspec ``python3`` whose argv is ``sys.executable``
sits in a ``JUPYTER_PATH`` folder, which Jupyter searches before the user's and the system's folders, so a
``python3`` kernelspec elsewhere on the machine cannot take over.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.conftest import Bank

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
VALUE_CHURN = NOTEBOOKS / "explore" / "value_and_churn.ipynb"
#: Per-cell and kernel-start timeouts (STACK.md: Papermill once hung for 10 minutes on a small notebook).
CELL_TIMEOUT = 300
START_TIMEOUT = 120
#: The notebook's parameters cell, as committed.
PARAMETERS = {"user": "prov_analyst", "as_of": None, "definition": "hard", "lang": "en", "run_backtest": True}
CJK = re.compile(r"[\u4e00-\u9fff]")
AUC_LINE = re.compile(r"Out-of-time ROC AUC: model (0\.\d+), logistic (0\.\d+), rule (0\.\d+)")


@dataclass(frozen=True)
class Executed:
    """The notebook as Papermill executed it, with the month injected and the wall time."""

    nb: Any
    as_of: str
    seconds: float


def _notebooks() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _outputs(nb: Any) -> Iterator[dict]:
    for cell in nb.cells:
        yield from cell.get("outputs", [])


def _texts(nb: Any) -> str:
    """Everything the executed notebook shows as text (streams, tables, printed values), not the SVGs."""
    parts = []
    for o in _outputs(nb):
        if o["output_type"] == "stream":
            parts.append(o["text"])
        for mime in ("text/plain", "text/html"):
            parts.append(str(o.get("data", {}).get(mime, "")))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def kernel_env(churn_bank: Bank, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What the notebook's kernel inherits: the churn bank as CIM_HOME and this venv's kernelspec first."""
    jupyter = tmp_path_factory.mktemp("jupyter")
    spec = jupyter / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }))  # fmt: skip
    return {
        "CIM_HOME": str(churn_bank.home),
        "JUPYTER_PATH": os.pathsep.join(p for p in (str(jupyter), os.environ.get("JUPYTER_PATH", "")) if p),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        # One OpenMP thread for the model's fits: much faster when the suite runs in parallel (see
        # docs/churn-model.md, Performance).
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture(scope="module")
def executed(
    kernel_env: dict[str, str], churn_bank: Bank, tmp_path_factory: pytest.TempPathFactory
) -> Executed:
    """The notebook run by Papermill in Chinese on the second-to-last month, as an nbformat notebook."""
    import papermill
    from jupyter_client.kernelspec import KernelSpecManager

    from cimlib.access import principal_for
    from cimlib.customer import available_months

    months = available_months(principal_for("prov_analyst", churn_bank.home), churn_bank.home)
    out = tmp_path_factory.mktemp("executed") / "value_and_churn.ipynb"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in kernel_env.items():
            mp.setenv(key, value)
        assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
        started = time.perf_counter()
        papermill.execute_notebook(
            str(VALUE_CHURN), str(out),
            parameters={"lang": "zh_CN", "as_of": months[-2]},
            kernel_name="python3", cwd=str(out.parent), progress_bar=False,
            start_timeout=START_TIMEOUT, execution_timeout=CELL_TIMEOUT,
        )  # fmt: skip
        seconds = time.perf_counter() - started
    return Executed(nb=nbformat.read(out, as_version=4), as_of=months[-2], seconds=seconds)


def test_notebook_runs_under_papermill_with_injected_parameters(executed: Executed) -> None:
    nb = executed.nb
    errors = [o for o in _outputs(nb) if o["output_type"] == "error"]
    assert not errors, [f"{o['ename']}: {o['evalue']}" for o in errors]
    assert nb.metadata["papermill"]["parameters"] == {"lang": "zh_CN", "as_of": executed.as_of}
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'lang = "zh_CN"' in injected[0].source
    # every code cell ran, in order
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))
    print(f"value_and_churn.ipynb under Papermill: {executed.seconds:.1f} s")


def test_notebook_shows_charts_as_inline_svg_in_chinese(executed: Executed) -> None:
    svgs = [o["data"]["image/svg+xml"] for o in _outputs(executed.nb) if "image/svg+xml" in o.get("data", {})]
    # tiers, migration, whale curve, Pareto, Gini trend, rates by type and tenure, retention, outflows,
    # lift, calibration
    assert len(svgs) == 11
    assert all(s.lstrip().startswith("<svg") for s in svgs)
    assert all(CJK.search(s) for s in svgs), "every chart has Chinese labels with lang=zh_CN"
    # rendered in the kernel: nothing is loaded from a CDN
    assert not [o for o in _outputs(executed.nb) if "application/vnd.vegalite.v5+json" in o.get("data", {})]
    assert "cdn.jsdelivr" not in nbformat.writes(executed.nb)


def test_notebook_shows_the_backtest_and_model_card(executed: Executed, churn_bank: Bank) -> None:
    text = _texts(executed.nb)
    m = AUC_LINE.search(text)
    assert m, "the backtest's AUC line is printed"
    model, logistic, rule = (float(x) for x in m.groups())
    assert model >= 0.8 and model > rule + 0.1 and logistic > 0.7  # as test_churn_backtest.py
    for scorer in ("churn_model", "rule_adb_down_50", "logistic"):
        assert scorer in text
    card = next(ln for ln in text.splitlines() if ln.strip().endswith("model_card.md"))
    path = Path(card.strip())
    assert path.is_file() and path.is_relative_to(churn_bank.home / "outputs" / "models" / "churn" / "hard")


def test_notebook_shows_aggregates_only(executed: Executed) -> None:
    text = _texts(executed.nb)
    # the sections' tables are there ...
    for needle in ("A0", "I_VALUE", "CHAMPIONS", "top_20pct_share", "product_attrition", "other_bank_share"):
        assert needle in text, needle
    # ... and no per-customer row: no customer id column, no customer number
    assert "customer_id" not in text
    assert not re.search(r"(?<![\d,.])1\d{9}(?![\d,.])", text)


def test_nbval_lax_runs_the_committed_notebook(kernel_env: dict[str, str]) -> None:
    """A broken cell fails CI: nbval (lax: outputs are not compared) runs the notebook as committed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update(kernel_env)
    before = VALUE_CHURN.read_bytes()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
         f"--nbval-cell-timeout={CELL_TIMEOUT}", f"--nbval-kernel-startup-timeout={START_TIMEOUT}",
         "-p", "no:cacheprovider", "-q", str(VALUE_CHURN.relative_to(ROOT))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    n_code = sum(c.cell_type == "code" for c in nbformat.read(VALUE_CHURN, as_version=4).cells)
    assert f"{n_code} passed" in proc.stdout, proc.stdout[-2000:]
    assert VALUE_CHURN.read_bytes() == before, "nbval must not write to the committed notebook"
    print(f"value_and_churn.ipynb under nbval: {seconds:.1f} s")


def test_value_and_churn_notebook_has_its_parameters_cell() -> None:
    nb = nbformat.read(VALUE_CHURN, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    values: dict[str, Any] = {}
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.unparse(node)
        values[ast.unparse(node.targets[0])] = ast.literal_eval(node.value)
    assert values == PARAMETERS
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_notebook_is_committed_without_outputs_or_logic(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, "saved widget state is an output"
    assert "papermill" not in nb.metadata, "an executed copy was committed"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"cell {i} has outputs"
        assert cell.execution_count is None, f"cell {i} has an execution count"
        assert "injected-parameters" not in cell.metadata.get("tags", []), f"cell {i} is Papermill's"
        logic = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
        defined = [n for n in ast.walk(ast.parse(cell.source)) if isinstance(n, logic)]
        assert not defined, f"cell {i} defines a function or class: business logic belongs in cimlib"


def test_notebooks_are_found() -> None:
    assert VALUE_CHURN in _notebooks()
