"""Churn model: fit, scoring and reasons times on synthetic rows (no bank needed).

Usage::

    .venv/bin/python bench/churn_model.py [--rows 1000000] [--reason-rows 100000] [--runs 3] [--json]

The issue's targets, for 1,000,000 rows x about 30 features on 2 cores: training under 60 s, scoring under
10 s. Figures (medians of ``--runs``):

* ``fit``: :class:`ChurnModel` with its defaults (``max_iter=200``, early stopping on above 10,000 rows);
* ``fit_no_early_stop``: the same with ``early_stopping=False``, all 200 iterations (the worst case);
* ``predict_proba``: scoring all rows with the early-stopped model (``predict_proba_200_trees``: with the
  200-iteration one; scoring time grows with the number of trees);
* ``reasons``: :func:`explain` (occlusion of each of the 30 features, top 3 reasons phrased in English)
  for ``--reason-rows`` rows, and ``contributions`` for the occlusion alone;
* ``save``/``load``: skops round trip of the fitted model.

The frame: 26 float features (a few with missing values), 3 categorical (8, 40 and 200 levels) and a
boolean; churn is planted on a handful of them (about 10% positives).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cimlib.churn._model import ChurnModel  # noqa: E402
from cimlib.churn._reasons import explain, occlusion_contributions  # noqa: E402
from cimlib.churn._store import load_model, save_model  # noqa: E402


def synthetic(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A 30-column feature frame with planted churn drivers."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 26)), columns=[f"f{i:02d}" for i in range(26)])
    X["f00"] = rng.normal(0.0, 0.3, n)  # plays "adb_change_3m"
    for col in ("f05", "f06", "f07"):
        X.loc[rng.random(n) < 0.1, col] = np.nan
    X["segment"] = pd.Categorical(rng.choice(list("ABCDEFGH"), n))
    X["branch"] = rng.choice([f"B{i:02d}" for i in range(40)], n)
    X["village"] = pd.Categorical(rng.choice([f"V{i:03d}" for i in range(200)], n))
    X["has_loan"] = rng.random(n) < 0.3
    logit = (
        -3.0
        - 4.0 * X["f00"]
        + 0.6 * X["f01"]
        - 0.4 * X["f02"]
        + 0.8 * (X["segment"] == "C")
        + 0.5 * X["has_loan"]
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8).to_numpy()
    return X, y


def _median_time(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reason-rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    X, y = synthetic(args.rows)
    res: dict[str, object] = {
        "rows": args.rows,
        "features": X.shape[1],
        "positives": int(y.sum()),
        "cores": os.cpu_count(),
    }
    res["fit"], model = _median_time(lambda: ChurnModel(random_state=0).fit(X, y), args.runs)
    res["n_iter"] = model.n_iter_
    res["fit_no_early_stop"], full = _median_time(
        lambda: ChurnModel(random_state=0, early_stopping=False).fit(X, y), args.runs
    )
    res["predict_proba"], _ = _median_time(lambda: model.predict_proba(X), args.runs)
    res["predict_proba_200_trees"], _ = _median_time(lambda: full.predict_proba(X), args.runs)
    rows = X.iloc[: args.reason_rows]
    res["contributions"], _ = _median_time(lambda: occlusion_contributions(model, rows), args.runs)
    templates = {"f00": {"en": "ADB fell {pct} in 3 months", "zh_CN": "日均存款3个月下降{pct}"}}
    res["reasons"], _ = _median_time(lambda: explain(model, rows, templates=templates, n=3), args.runs)
    res["reason_rows"] = len(rows)
    with tempfile.TemporaryDirectory() as tmp:
        res["save"], path = _median_time(lambda: save_model(model, {}, Path(tmp) / "bench"), 1)
        res["load"], _ = _median_time(lambda: load_model(path), args.runs)
        res["model_bytes"] = (Path(path) / "model.skops").stat().st_size
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for key, value in res.items():
            print(f"{key:>18}: {value:.2f} s" if isinstance(value, float) else f"{key:>18}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
