"""Benchmark: churn feature building, model training and scoring on a built bank, against a plain scan.

Run with ``CIM_HOME`` pointing at a built bank (1,000,000 customers for the issue's figures)::

    CIM_HOME=/tmp/t1m .venv/bin/python bench/churn.py [--runs 3] [--json]

Prints the median of ``--runs`` runs of each step with the baseline scan
``SELECT count(*), sum(deposit_adb) FROM mart_customer_month WHERE as_of_date = <latest>`` measured in the
same run, and each step's ratio to it:

* ``features, one month``: :func:`cimlib.churn.features_frame` for the latest month (all customers);
* ``training frame``: labels and features of the backtest's training months (``cim churn backtest``'s
  first step);
* ``fit``: :class:`cimlib.churn.ChurnModel` with the parameters of ``parameters/churn.yaml`` on the
  training rows (stayers sampled down to ``model.max_train_rows``, as the backtest does);
* ``score, one month``: :func:`cimlib.churn.score` end to end (features, probabilities, reasons for the
  watchlist's customers, the Parquet file).

Models go to a scratch folder; the scores file is written beside the bank's snapshot (``warehouse/churn``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _times(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    out, times = None, []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from cimlib.access import principal_for
    from cimlib.churn import (
        ChurnModel,
        features_frame,
        labelled_months,
        load_churn_params,
        score,
        split_months,
        training_frame,
    )
    from cimlib.churn._backtest import sample_negatives
    from cimlib.churn._store import save_model
    from cimlib.customer import _data as D

    home = D.resolve_home(None)
    params = load_churn_params(home)
    name, d = params.definition(None)
    snap = D.snapshot(home)
    months = D.as_of_dates(snap)
    last = months[-1]
    who = principal_for("prov_analyst", home)
    train_m, _test, _final = split_months(labelled_months(months, d), d.outcome_months,
                                          params.model.test_months, params.model.max_train_months)
    res: dict[str, Any] = {"customers": None, "months": len(months), "definition": name,
                           "cores": os.cpu_count(), "runs": args.runs}

    def scan() -> Any:
        with snap.all_cores() as con:
            return con.sql("SELECT count(*), sum(deposit_adb) FROM mart_customer_month WHERE as_of_date = $d",
                           params={"d": last}).fetchall()

    base, rows = _times(scan, max(args.runs, 3))
    res["customers"] = int(rows[0][0])

    def feats() -> Any:
        with snap.all_cores() as con:
            return features_frame(con, [last], params.observation_months)

    t_feat, f = _times(feats, args.runs)
    res["features_rows"] = len(f)
    del f

    def frame() -> Any:
        with snap.all_cores() as con:
            return training_frame(con, params, name, train_m)

    t_frame, (x, y, _meta) = _times(frame, 1)
    mask, weight, rate = sample_negatives(y, y.astype(bool) | True, params.model.max_train_rows,
                                          params.model.random_state)
    res.update(train_months=[m.isoformat() for m in train_m], train_rows=len(x),
               fitted_rows=int(mask.sum()), negative_sampling_rate=rate, positives=int(y.sum()))
    kw = params.model.estimator_params()

    def fit() -> Any:
        return ChurnModel(**kw).fit(x[mask], y[mask], sample_weight=weight)

    t_fit, model = _times(fit, args.runs)
    res["n_iter"] = int(model.n_iter_)
    scratch = Path(tempfile.mkdtemp(prefix="cim-bench-churn-"))
    folder = save_model(model, {"definition": name, "note": "bench/churn.py"}, scratch / name)

    t_score, out = _times(lambda: score(who, last, name, home=home, model_dir=folder), args.runs)
    res["scored"] = out["n_scored"]
    res["with_reasons"] = out["n_with_reasons"]
    res["score_steps_last_run"] = {k: round(v, 3) for k, v in out["seconds"].items()}
    res["seconds"] = {
        "baseline_scan": round(base, 4),
        "features_one_month": round(t_feat, 3),
        "training_frame": round(t_frame, 3),
        "fit": round(t_fit, 3),
        "score_one_month": round(t_score, 3),
    }
    res["ratio_to_scan"] = {k: round(v / base, 1) for k, v in res["seconds"].items() if k != "baseline_scan"}
    if args.json:
        print(json.dumps(res, indent=2, default=str))
        return
    print(f"bank: {res['customers']:,} customers x {res['months']} months; definition {name}; "
          f"medians of {args.runs} runs (scan: of {max(args.runs, 3)})")
    print(f"training: {res['train_rows']:,} rows of {len(train_m)} months, {res['positives']:,} leavers; "
          f"fitted {res['fitted_rows']:,} (stayers sampled at {rate:.3f}); {res['n_iter']} boosting rounds")
    for k, v in res["seconds"].items():
        ratio = "" if k == "baseline_scan" else f"  ({res['ratio_to_scan'][k]:,.0f}x scan)"
        print(f"  {k:22s} {v:9.3f} s{ratio}")
    print(f"  score steps (last run): {res['score_steps_last_run']}; scored {res['scored']:,}, "
          f"reasons for {res['with_reasons']:,}")


if __name__ == "__main__":
    main()
