"""The generic churn model: estimator contract, metrics golden numbers, reasons, storage."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from cimlib.churn._metrics import (
    calibration_chart,
    calibration_table,
    decile_table,
    evaluate,
    lift_chart,
)
from cimlib.churn._model import ChurnModel, RuleBaseline, logistic_baseline
from cimlib.churn._reasons import explain, occlusion_contributions, reference_values
from cimlib.churn._store import (
    ModelIntegrityError,
    latest_model,
    list_versions,
    load_card,
    load_model,
    model_folder,
    render_card,
    save_model,
)


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """Tiny fits: one OpenMP thread avoids thread start-up and contention costs (several times faster)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


# -- estimator contract ---------------------------------------------------------------------------------

_EXPECTED_FAILURES = {
    # Same as scikit-learn's own HistGradientBoostingClassifier: feature binning and early-stopping splits
    # see rows, not weights, so weight 2 is not exactly the same as a repeated row.
    "check_sample_weight_equivalence_on_dense_data": (
        "HistGradientBoosting: sample_weight is not equivalent to removing/repeating samples"
    ),
}


def _expected_failed_checks(estimator: object) -> dict[str, str]:
    return _EXPECTED_FAILURES if isinstance(estimator, ChurnModel) else {}


_CHECKS = parametrize_with_checks(
    [ChurnModel(max_iter=10, min_samples_leaf=5), RuleBaseline(feature=0, threshold=0.0)],
    expected_failed_checks=_expected_failed_checks,
)
# Neither estimator claims array-API support (array_api_support is False), so the array-API input checks
# do not apply; sklearn yields them anyway and skips them unless SCIPY_ARRAY_API is set before SciPy is
# imported. Left out here instead of reported as skips.
_KEEP = [i for i, p in enumerate(_CHECKS.args[1]) if "array_api" not in str(p)]
_IDS = _CHECKS.kwargs["ids"]


@pytest.mark.parametrize(
    _CHECKS.args[0],
    [_CHECKS.args[1][i] for i in _KEEP],
    ids=_IDS,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- a synthetic frame with planted drivers ---------------------------------------------------------------


def _synthetic(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn driven strongly by ``adb_change_3m`` (falls), weakly by ``days_no_login``, by segment ``B``."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "adb_change_3m": rng.normal(0.0, 0.3, n),
            "days_no_login": rng.integers(0, 180, n).astype(float),
            "noise": rng.normal(size=n),
            "segment": pd.Categorical(rng.choice(["A", "B", "C"], n)),
            "has_loan": rng.random(n) < 0.3,
        }
    )
    X.loc[X.index % 11 == 0, "days_no_login"] = np.nan
    logit = (
        -3.0 - 6.0 * X["adb_change_3m"] + 0.006 * X["days_no_login"].fillna(90) + 0.8 * (X["segment"] == "B")
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    X.index = pd.Index([f"C{seed}-{i:05d}" for i in range(n)], name="customer_id")
    return X, y


@pytest.fixture(scope="module")
def fitted() -> tuple[ChurnModel, pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    X, y = _synthetic(6000, seed=1)
    X_test, y_test = _synthetic(3000, seed=2)
    model = ChurnModel(random_state=0, max_iter=100).fit(X, y)
    return model, X, y, X_test, y_test


def test_model_learns_planted_drivers(fitted):
    model, X, _, X_test, y_test = fitted
    assert model.categorical_features_ == ["segment"]
    assert list(model.feature_names_in_) == list(X.columns)
    assert model.n_features_in_ == 5
    proba = model.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert roc_auc_score(y_test, proba[:, 1]) > 0.8
    # Unknown segment levels and missing values score without error (unknown -> missing).
    odd = X_test.head(3).copy()
    odd["segment"] = pd.Categorical(["Z", None, "A"])
    odd["adb_change_3m"] = np.nan
    assert np.isfinite(model.predict_proba(odd)).all()
    # The reference ("typical stayer") is stored at fit time.
    assert model.reference_["segment"] in {"A", "C"}
    assert abs(model.reference_["adb_change_3m"]) < 0.1


def test_model_refuses_wrong_columns(fitted):
    model, _, _, X_test, _ = fitted
    with pytest.raises(ValueError, match="feature names"):
        model.predict_proba(X_test[list(reversed(X_test.columns))])


def test_baselines_rank(fitted):
    _, X, y, X_test, y_test = fitted
    rule = RuleBaseline(feature="adb_change_3m", threshold=-0.5).fit(X, y)
    score = rule.predict_proba(X_test)[:, 1]
    # The score orders strictly by the feature: lower ADB change = higher score, 0.5 at the threshold.
    order = np.argsort(X_test["adb_change_3m"].to_numpy())
    assert np.all(np.diff(score[order]) <= 0)
    assert np.array_equal(rule.predict(X_test), (X_test["adb_change_3m"] <= -0.5).astype(int).to_numpy())
    probe = pd.DataFrame({c: X_test[c].head(1).to_numpy() for c in X_test.columns})
    probe["adb_change_3m"] = -0.5
    assert rule.predict_proba(probe)[0, 1] == pytest.approx(0.5)
    assert roc_auc_score(y_test, score) > 0.7
    logistic = logistic_baseline().fit(X, y)
    assert roc_auc_score(y_test, logistic.predict_proba(X_test)[:, 1]) > 0.75


def test_numpy_input_and_multiclass():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = np.digitize(X[:, 0], [-0.5, 0.5])
    model = ChurnModel(max_iter=20, min_samples_leaf=5).fit(X, y)
    assert list(model.classes_) == [0, 1, 2]
    assert model.predict_proba(X).shape == (300, 3)
    assert (model.predict(X) == y).mean() > 0.9
    assert set(model.reference_) == {"x0", "x1", "x2"}


# -- metrics: hand-computed golden numbers ---------------------------------------------------------------


def test_auc_perfect_and_reversed():
    y = [0, 0, 1, 1]
    assert evaluate(y, [0.1, 0.2, 0.8, 0.9])["roc_auc"] == 1.0
    assert evaluate(y, [0.9, 0.8, 0.2, 0.1])["roc_auc"] == 0.0
    assert evaluate(y, [0.5, 0.5, 0.5, 0.5])["roc_auc"] == 0.5
    out = evaluate(y, [0.1, 0.2, 0.8, 0.9])
    assert (out["n"], out["positives"], out["base_rate"], out["pr_auc"]) == (4, 2, 0.5, 1.0)


def test_one_class_is_nan_with_note():
    out = evaluate([0, 0, 0], [0.1, 0.2, 0.3])
    assert math.isnan(out["roc_auc"]) and math.isnan(out["pr_auc"])
    assert "one class" in out["note"]
    table = decile_table([0, 0, 0], [0.1, 0.2, 0.3], n_bins=3)
    assert table["lift"].isna().all()
    with pytest.raises(ValueError, match="NaN"):
        evaluate([0, 1], [0.1, np.nan])


def test_decile_table_hand_computed():
    # 10 rows, scores 10..1, churners at ranks 1, 2, 4: base rate 0.3.
    scores = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    y = [1, 1, 0, 1, 0, 0, 0, 0, 0, 0]
    table = decile_table(y, scores, n_bins=5)  # bins of 2 rows
    assert table["n"].tolist() == [2, 2, 2, 2, 2]
    assert table["positives"].tolist() == [2, 1, 0, 0, 0]
    # lift of bin 1 = (2/2) / 0.3 = 3.333..., bin 2 = (1/2) / 0.3 = 1.666...
    assert table["lift"].tolist()[:2] == pytest.approx([1 / 0.3, 0.5 / 0.3])
    assert table["cum_capture"].tolist() == pytest.approx([2 / 3, 1, 1, 1, 1])
    assert table["cum_lift"].tolist()[1] == pytest.approx((3 / 4) / 0.3)
    # Order of the input rows does not matter.
    perm = [3, 0, 9, 5, 1, 7, 2, 8, 4, 6]
    shuffled = decile_table([y[i] for i in perm], [scores[i] for i in perm], n_bins=5)
    pd.testing.assert_frame_equal(table, shuffled)


def test_decile_table_ties_are_shared():
    # One tie group of 4 rows holding 1 churner spans two bins: each bin gets 0.5 expected churners.
    table = decile_table([1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5], n_bins=2)
    assert table["positives"].tolist() == [0.5, 0.5]
    assert table["lift"].tolist() == [1.0, 1.0]
    again = decile_table([0, 0, 0, 1], [0.5, 0.5, 0.5, 0.5], n_bins=2)
    pd.testing.assert_frame_equal(table, again)


def test_calibration_table_and_charts(tmp_path):
    from cimlib.charts import to_png

    y = [0, 0, 1, 0, 1, 1]
    s = [0.1, 0.1, 0.1, 0.9, 0.9, 0.9]
    table = calibration_table(y, s, n_bins=2, strategy="uniform")
    assert table["n"].tolist() == [3, 3]
    assert table["mean_predicted"].tolist() == pytest.approx([0.1, 0.9])
    assert table["observed_rate"].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert (table["observed_low"] <= table["observed_rate"]).all()
    chart = calibration_chart(table, "zh_CN")
    spec = chart.to_dict()
    assert len(spec["layer"]) == 4
    lift = lift_chart(decile_table(y, s, n_bins=3), "en")
    assert lift.to_dict()["resolve"]["scale"]["y"] == "independent"
    assert to_png(chart, scale=1).startswith(b"\x89PNG")
    assert to_png(lift, scale=1).startswith(b"\x89PNG")


# -- reasons ---------------------------------------------------------------------------------------------

_TEMPLATES = {
    "adb_change_3m": {"en": "ADB fell {pct} in 3 months", "zh_CN": "日均存款3个月下降{pct}"},
    "days_no_login": {"en": "no online-banking login for {days} days", "zh_CN": "{days}天未登录网银"},
}


def test_reasons_name_the_strong_driver(fitted):
    model, _, _, X_test, _ = fitted
    risk = model.predict_proba(X_test)[:, 1]
    top = X_test.iloc[np.argsort(-risk)[:30]]
    reasons = explain(model, top, templates=_TEMPLATES, n=3, lang="en")
    assert list(reasons.index) == list(top.index)
    assert (reasons["feature_1"] == "adb_change_3m").mean() >= 0.9
    first = reasons.loc[reasons["feature_1"] == "adb_change_3m", "reason_1"]
    assert first.str.match(r"^ADB fell \d+% in 3 months$").all()
    assert (reasons["contribution_1"] >= reasons["contribution_2"].fillna(0)).all()
    assert reasons["feature_1"].ne("noise").all()
    zh = explain(model, top.head(3), templates=_TEMPLATES, lang="zh_CN")
    assert zh["reason_1"].str.startswith("日均存款3个月下降").any()
    empty = explain(model, top.iloc[:0], templates=_TEMPLATES)
    assert empty.empty and "reason_1" in empty.columns
    # A feature without a template gets the generic phrase.
    generic = explain(model, top, templates={}, n=3, lang="en")
    assert generic["reasons"].str.contains(r"\(typical ", regex=True).all()


def test_reasons_generic_model_and_groups(fitted):
    model, X, y, X_test, _ = fitted
    logistic = logistic_baseline().fit(X, y)
    ref = reference_values(X, y)
    rows = X_test.head(50)
    contrib = occlusion_contributions(logistic, rows, reference=ref, groups={"activity": ["days_no_login"]})
    assert list(contrib.columns) == ["activity", "adb_change_3m", "noise", "segment", "has_loan"]
    # Contribution of the fast path equals the plain definition f(x) - f(x with reference).
    fast = occlusion_contributions(model, rows)
    occluded = rows.copy()
    occluded["adb_change_3m"] = model.reference_["adb_change_3m"]
    direct = model.predict_proba(rows)[:, 1] - model.predict_proba(occluded)[:, 1]
    assert fast["adb_change_3m"].to_numpy() == pytest.approx(direct)


# -- storage ---------------------------------------------------------------------------------------------


def test_store_round_trip_and_tamper(fitted, tmp_path):
    model, _, _, X_test, y_test = fitted
    scores = model.predict_proba(X_test)[:, 1]
    card = {
        "definition": "value_churn",
        "definition_params": {"drop_pct": 0.5, "horizon_months": 3},
        "data_window": {"start": "2025-01", "end": "2026-06"},
        "backtest": {
            "train_months": ["2025-01", "2025-12"],
            "test_months": ["2026-01", "2026-06"],
            "metrics": {"churn_model": evaluate(y_test, scores), "rule": evaluate([0, 0], [0.1, 0.2])},
            "deciles": decile_table(y_test, scores).to_dict(orient="records"),
        },
    }
    folder = model_folder("value_churn", tmp_path)
    assert latest_model(folder) is None
    path = save_model(model, card, folder)
    assert path.parent == tmp_path / "value_churn"
    assert {p.name for p in path.iterdir()} == {"model.skops", "model_card.json", "model_card.md"}
    stored = load_card(path)
    assert stored["features"] == list(X_test.columns)
    assert stored["definition"] == "value_churn" and stored["definition_params"]["drop_pct"] == 0.5
    assert stored["backtest"]["metrics"]["rule"]["roc_auc"] is None  # NaN is written as null
    assert stored["packages"]["scikit-learn"] and stored["version"] == path.name
    markdown = (path / "model_card.md").read_text(encoding="utf-8")
    assert "# Churn model card: value_churn" in markdown and "| churn_model |" in markdown
    loaded, loaded_card = load_model(path)
    assert loaded_card["sha256"] == stored["sha256"]
    np.testing.assert_array_equal(loaded.predict_proba(X_test), model.predict_proba(X_test))
    assert loaded.reference_ == model.reference_
    assert latest_model(folder) == path
    assert [v.path for v in list_versions(folder)] == [path]
    # A changed model file is refused.
    blob = bytearray((path / "model.skops").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (path / "model.skops").write_bytes(bytes(blob))
    with pytest.raises(ModelIntegrityError, match="SHA-256"):
        load_model(path)


def test_store_refuses_untrusted_types(tmp_path):
    import skops.io as sio

    from cimlib.churn import _store

    folder = tmp_path / "hard_churn"
    first = save_model(
        logistic_baseline().fit(pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]}), [0, 0, 1, 1]), None, folder
    )
    assert load_model(first)[0].predict_proba(pd.DataFrame({"a": [5.0]}))[0, 1] > 0.5
    path = save_model(RuleBaseline().fit(pd.DataFrame({"adb_change_3m": [0.0, -1.0]}), [0, 1]), {}, folder)
    assert [v.path for v in list_versions(folder)] == [first, path]
    # Forge a file holding an unexpected type, with a card that matches its digest.
    sio.dump({"f": json.loads}, path / "model.skops")
    card = load_card(path)
    card["sha256"] = _store._sha256(path / "model.skops")
    (path / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelIntegrityError, match="not trusted"):
        load_model(path)
    with pytest.raises(ValueError):
        model_folder("../escape", tmp_path)


def test_card_markdown_lists_everything():
    y, s = [0, 1, 0, 1, 1, 0], [0.1, 0.9, 0.3, 0.6, 0.4, 0.2]
    card = {
        "definition": "inactivity",
        "definition_params": {"months": 6},
        "features": {"adb_change_3m": "ADB change over 3 months", "n_products": "products held"},
        "backtest": {
            "train_months": ["2025-01-31"],
            "test_months": ["2025-07-31"],
            "n_test": 6,
            "metrics": {"churn_model": evaluate(y, s), "rule_adb_down_50": evaluate([0, 0], [0.1, 0.2])},
            "deciles": decile_table(y, s, n_bins=3).to_dict(orient="records"),
            "calibration": calibration_table(y, s, n_bins=2).to_dict(orient="records"),
        },
        "snapshot_id": "20261031T000000Z",
        "custom": {"a": 1},
    }
    text = render_card(card)
    for needle in (
        "# Churn model card: inactivity",
        "| months | 6 |",
        "`adb_change_3m`: ADB change",
        "### Lift and capture by decile",
        "### Calibration",
        "| rule_adb_down_50 |",
        "only one class",
        "| snapshot_id | 20261031T000000Z |",
        "## Other",
        "custom",
    ):
        assert needle in text, needle


def test_a_column_missing_in_every_training_row_is_no_error() -> None:
    """scikit-learn's binning fails on an all-NaN column; the model treats it as a constant."""
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=300), "empty": np.full(300, np.nan)})
    y = (x["a"] > 0).astype(int)
    m = ChurnModel(random_state=0).fit(x, y)
    later = x.assign(empty=rng.normal(size=300))  # values appear at scoring time: ignored, no error
    assert m.predict_proba(later).shape == (300, 2)
    assert np.allclose(m.predict_proba(later), m.predict_proba(x))
