"""Churn: labels, features, model, backtest, reasons and the watchlist (``parameters/churn.yaml``).

* :func:`label_counts` - eligible customers and churners per scoring month, definitions side by side;
* :func:`backtest` - out-of-time backtest against two baselines, model card, production model;
* :func:`score` - a month's scores and reasons, written beside the warehouse snapshot;
* :func:`watchlist` - important customers ranked by risk x value per branch or manager;
* :func:`churn_rates`, :func:`retention_curves`, :func:`outflow_destinations` - the churn analysis;
* :class:`ChurnModel` - the scikit-learn estimator behind it, usable on any feature frame.
"""

from cimlib.churn._analysis import churn_rates, outflow_destinations, retention_curves
from cimlib.churn._backtest import (
    Backtest,
    BacktestError,
    backtest,
    split_months,
    train_model,
    training_frame,
)
from cimlib.churn._features import FEATURES, feature_sql, features_frame
from cimlib.churn._labels import label_counts, label_sql, labelled_months, labels_frame
from cimlib.churn._model import ChurnModel, RuleBaseline, logistic_baseline
from cimlib.churn._params import ChurnParams, ChurnParamsError, load_churn_params
from cimlib.churn._score import REASON_TEMPLATES, WATCHLIST_COLUMNS, score, scores_path, watchlist

__all__ = [
    "FEATURES",
    "REASON_TEMPLATES",
    "WATCHLIST_COLUMNS",
    "Backtest",
    "BacktestError",
    "ChurnModel",
    "ChurnParams",
    "ChurnParamsError",
    "RuleBaseline",
    "backtest",
    "churn_rates",
    "feature_sql",
    "features_frame",
    "label_counts",
    "label_sql",
    "labelled_months",
    "labels_frame",
    "load_churn_params",
    "logistic_baseline",
    "outflow_destinations",
    "retention_curves",
    "score",
    "scores_path",
    "split_months",
    "train_model",
    "training_frame",
    "watchlist",
]
