"""The generic churn estimator and its two baselines.

:class:`ChurnModel` is a scikit-learn classifier: a preprocessing step (numeric columns to float, text and
category columns to ordinal codes with unknown levels sent to *missing*) in front of a
:class:`~sklearn.ensemble.HistGradientBoostingClassifier` that splits the coded columns natively as
categories. It takes any pandas feature frame, not only ours, or a plain numeric array.

:class:`RuleBaseline` is the "ADB down 50%" rule as an estimator, and :func:`logistic_baseline` a
logistic-regression pipeline; both are what the backtest compares the model against.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

log = logging.getLogger(__name__)

#: HistGradientBoosting splits at most this many categories of one column (its ``max_bins`` ceiling).
_HGB_MAX_CATEGORIES = 255


def _to_float(X: Any) -> np.ndarray:
    """Numeric (and boolean, nullable) columns to a float64 array; pandas ``NA`` becomes NaN."""
    if isinstance(X, pd.DataFrame):
        return X.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(X, dtype=np.float64)


class _EmptyAsZero(TransformerMixin, BaseEstimator):
    """Numeric columns that were entirely missing in training become a constant 0.

    scikit-learn 1.9's histogram binning fails on a column without a single value ("window shape cannot
    be larger than input array shape"), and a scoring month early in the data has, say, no 3-month-ago
    transactions for anyone. A constant carries no information either way, so nothing is lost.
    """

    def fit(self, X: Any, y: Any = None) -> _EmptyAsZero:
        self.empty_ = np.isnan(np.asarray(X, dtype=np.float64)).all(axis=0)
        return self

    def transform(self, X: Any) -> np.ndarray:
        out = np.array(X, dtype=np.float64, copy=True)
        if out.ndim == 2 and self.empty_.any():
            out[:, self.empty_] = 0.0
        return out


def _to_object(X: Any) -> Any:
    """Category/text columns to plain ``object`` with NaN for missing, as OrdinalEncoder expects."""
    if isinstance(X, pd.DataFrame):
        out = X.astype(object)
        return out.where(X.notna(), np.nan)
    return X


def _plain(value: Any) -> Any:
    """A numpy scalar as the equivalent Python scalar (for safe, portable persistence)."""
    return value.item() if isinstance(value, np.generic) else value


def _is_categorical(series: pd.Series) -> bool:
    """Whether a column is split as a category: anything not numeric and not boolean."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return False
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        raise TypeError(
            f"column {series.name!r} has dtype {dtype}; turn dates into numbers (e.g. days since) "
            "before fitting a churn model"
        )
    return True


def _check_target(estimator: BaseEstimator, X: Any, y: Any, sample_weight: Any) -> tuple[Any, Any, Any]:
    """Validate ``X``/``y`` the scikit-learn way; frames keep their columns and dtypes."""
    if y is None:
        raise ValueError(f"{type(estimator).__name__} requires y to be passed, but the target y is None")
    if isinstance(X, pd.DataFrame):
        validate_data(estimator, X, skip_check_array=True, reset=True)
        if X.shape[0] == 0:
            raise ValueError(
                f"Found array with 0 sample(s) (shape=(0, {X.shape[1]})) while a minimum of 1 is required."
            )
        if X.shape[1] == 0:
            raise ValueError(
                f"Found array with 0 feature(s) (shape=({X.shape[0]}, 0)) while a minimum of 1 is required."
            )
        y = column_or_1d(np.asarray(y), warn=True)
        check_consistent_length(X, y)
    else:
        X, y = validate_data(estimator, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
    check_classification_targets(y)
    if np.asarray(pd.isna(y)).any():
        raise ValueError("Input y contains NaN.")
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, X)
    return X, y, sample_weight


def _check_predict_input(estimator: BaseEstimator, X: Any) -> Any:
    check_is_fitted(estimator)
    if isinstance(X, pd.DataFrame):
        validate_data(estimator, X, skip_check_array=True, reset=False)
        return X
    return validate_data(estimator, X, ensure_all_finite="allow-nan", dtype=np.float64, reset=False)


class ChurnModel(ClassifierMixin, BaseEstimator):
    """Gradient-boosted churn classifier for any pandas feature frame.

    Numeric and boolean columns are used as they are (missing values allowed: the trees learn where to send
    them). Text, ``object`` and ``category`` columns are coded as ordinal categories, with at most
    ``categorical_max_levels`` levels per column (rarer levels are pooled into one) and levels unseen in
    training sent to *missing*; the booster splits them as categories, not as ordered numbers. Datetime
    columns are refused: turn them into numbers (e.g. days since) first.

    Binary use (0 = stayed, 1 = churned) is the point, but several classes work too (the booster fits one
    tree per class and iteration).

    Parameters
    ----------
    learning_rate : float
        Shrinkage of each tree.
    max_iter : int
        Maximum number of boosting iterations (trees per class).
    max_leaf_nodes : int or None
        Maximum leaves per tree.
    max_depth : int or None
        Maximum depth of a tree (``None``: limited by ``max_leaf_nodes`` only).
    min_samples_leaf : int
        Minimum rows in a leaf.
    l2_regularization : float
        L2 penalty on leaf values.
    max_bins : int
        Histogram bins for numeric columns (at most 255).
    early_stopping : "auto" or bool
        Hold out ``validation_fraction`` of the rows and stop when the loss stops improving; ``"auto"``
        turns it on above 10,000 rows.
    validation_fraction : float
        Share of rows held out for early stopping.
    n_iter_no_change : int
        Iterations without improvement before stopping.
    class_weight : dict, "balanced" or None
        Weights of the classes (``"balanced"`` reweights a rare churn class up; it changes the
        calibration of ``predict_proba``).
    categorical_max_levels : int
        Most levels kept per categorical column (the rest are pooled as "infrequent"); at most 255.
    random_state : int, RandomState or None
        Seed of the early-stopping split and of subsampling, for reproducible fits.

    Attributes
    ----------
    classes_ : ndarray
        The class labels, sorted.
    n_features_in_ : int
        Number of columns seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names seen in ``fit`` (only when ``X`` was a frame with string column names).
    categorical_features_ : list of str
        The columns treated as categories.
    pipeline_ : sklearn.pipeline.Pipeline
        The fitted preprocessing plus booster.
    reference_ : dict of str to scalar
        Per input column, a "typical stayer" value (plain Python values, ``None`` when a column has no
        value at all): the median (numeric) or the most frequent level (categorical) among training rows
        of the first class (``classes_[0]``, e.g. 0 = stayed). The occlusion attribution of
        :mod:`cimlib.churn._reasons` compares each customer against it.
    n_iter_ : int
        Boosting iterations actually run (after early stopping).
    """

    def __init__(
        self,
        *,
        learning_rate: float = 0.1,
        max_iter: int = 200,
        max_leaf_nodes: int | None = 31,
        max_depth: int | None = None,
        min_samples_leaf: int = 20,
        l2_regularization: float = 0.0,
        max_bins: int = 255,
        early_stopping: str | bool = "auto",
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        class_weight: dict | str | None = None,
        categorical_max_levels: int = 64,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_bins = max_bins
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.categorical_max_levels = categorical_max_levels
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags

    # -- fitting ---------------------------------------------------------------------------------------

    def _column_names(self, n_features: int) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        return [str(c) for c in names] if names is not None else [f"x{i}" for i in range(n_features)]

    def _build_pipeline(self, X: Any) -> tuple[Pipeline, list[Any], list[Any]]:
        if isinstance(X, pd.DataFrame):
            cat_cols = [c for c in X.columns if _is_categorical(X[c])]
            num_cols = [c for c in X.columns if c not in set(cat_cols)]
        else:
            cat_cols, num_cols = [], list(range(X.shape[1]))
        if not 2 <= int(self.categorical_max_levels) <= _HGB_MAX_CATEGORIES:
            raise ValueError(
                f"categorical_max_levels must be in [2, {_HGB_MAX_CATEGORIES}], "
                f"got {self.categorical_max_levels}"
            )
        transformers: list[tuple[str, Any, list[Any]]] = []
        if cat_cols:
            encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                encoded_missing_value=np.nan,
                max_categories=int(self.categorical_max_levels),
            )
            transformers.append(
                ("categorical", make_pipeline(FunctionTransformer(_to_object), encoder), cat_cols)
            )
        if num_cols:
            transformers.append(
                ("numeric", make_pipeline(FunctionTransformer(_to_float), _EmptyAsZero()), num_cols)
            )
        pre = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0, n_jobs=None)
        booster = HistGradientBoostingClassifier(
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            max_bins=self.max_bins,
            categorical_features=[True] * len(cat_cols) + [False] * len(num_cols) if cat_cols else None,
            early_stopping=self.early_stopping,
            validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change,
            class_weight=self.class_weight,
            random_state=self.random_state,
        )
        return Pipeline([("preprocess", pre), ("booster", booster)]), cat_cols, num_cols

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ChurnModel:
        """Fit the preprocessing and the booster.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Feature rows. Frames may mix numeric, boolean, text and category columns.
        y : array-like of shape (n_samples,)
            Class labels (e.g. 0 = stayed, 1 = churned).
        sample_weight : array-like of shape (n_samples,), optional
            Row weights.

        Returns
        -------
        ChurnModel
            ``self``, fitted.
        """
        X, y, sample_weight = _check_target(self, X, y, sample_weight)
        pipeline, cat_cols, _ = self._build_pipeline(X)
        pipeline.fit(X, y, booster__sample_weight=sample_weight)
        self.pipeline_ = pipeline
        self.classes_ = pipeline.named_steps["booster"].classes_
        self.n_iter_ = int(pipeline.named_steps["booster"].n_iter_)
        names = self._column_names(X.shape[1])
        self.categorical_features_ = [str(c) for c in cat_cols]
        self.reference_ = self._reference(X, y, names)
        log.debug(
            "churn model fitted: %d rows, %d features, %d iterations", X.shape[0], X.shape[1], self.n_iter_
        )
        return self

    def _reference(self, X: Any, y: np.ndarray, names: list[str]) -> dict[str, Any]:
        mask = np.asarray(y == self.classes_[0])
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=names)
        frame = frame.set_axis(names, axis=1)
        rows = frame.loc[mask] if mask.any() else frame
        values: dict[str, Any] = {}
        for name in names:
            col = rows[name]
            if name in self.categorical_features_:
                mode = col.dropna().mode()
                values[name] = _plain(mode.iloc[0]) if len(mode) else None
            else:
                numeric = _to_float(col.to_frame())[:, 0]
                values[name] = float(np.nanmedian(numeric)) if np.isfinite(numeric).any() else None
        return values

    # -- prediction ------------------------------------------------------------------------------------

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows with the same columns as in ``fit`` (a frame must keep the column names and order).

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_``; for binary churn, column 1 is the churn risk.
        """
        X = _check_predict_input(self, X)
        return self.pipeline_.predict_proba(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """Raw booster scores (log-odds for binary, shape (n_samples,); per class otherwise).

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows with the same columns as in ``fit``.

        Returns
        -------
        ndarray
            The decision values.
        """
        X = _check_predict_input(self, X)
        return self.pipeline_.decision_function(X)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class of each row.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows with the same columns as in ``fit``.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    # -- fast paths for the attribution ------------------------------------------------------------------

    def _encode(self, X: Any) -> np.ndarray:
        """Checked rows through the fitted preprocessing: the booster's float matrix."""
        X = _check_predict_input(self, X)
        return np.ascontiguousarray(self.pipeline_.named_steps["preprocess"].transform(X), dtype=np.float64)

    def _encoded_positions(self) -> list[int]:
        """For each input column (in input order), its column in the encoded matrix."""
        pre = self.pipeline_.named_steps["preprocess"]
        names = self._column_names(self.n_features_in_)
        order: list[str] = []
        for _, _, cols in pre.transformers_:
            if isinstance(cols, str):  # "drop"/remainder entries
                continue
            order.extend(names[c] if isinstance(c, int | np.integer) else str(c) for c in cols)
        return [order.index(name) for name in names]

    def _proba_encoded(self, Z: np.ndarray) -> np.ndarray:
        """Booster probabilities for an already encoded matrix (no validation)."""
        return self.pipeline_.named_steps["booster"].predict_proba(Z)


class RuleBaseline(ClassifierMixin, BaseEstimator):
    """The "ADB down 50%" rule as an estimator: flag a customer when one feature is at or below a threshold.

    ``predict`` returns the second class (churn) where ``X[feature] <= threshold``. ``predict_proba`` is a
    *score*, not a calibrated probability: the logistic function ``1 / (1 + exp((x - threshold) / scale))``,
    strictly decreasing in the feature and exactly 0.5 at the threshold, so ranking metrics (ROC AUC, lift)
    measure how well "the lower the feature, the higher the risk" orders customers. With
    ``direction="ge"`` the rule flags ``x >= threshold`` and the score increases with ``x``. A missing
    value is not flagged and gets the lowest score (0).

    Parameters
    ----------
    feature : str or int
        Column name (frames) or column position (arrays).
    threshold : float
        The rule's cut-off (``-0.5`` = fell by 50%).
    direction : {"le", "ge"}
        Flag at or below (``"le"``) or at or above (``"ge"``) the threshold.
    scale : float
        Width of the logistic score around the threshold (in the feature's units); it changes no ranking.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels seen in ``fit``; the second is the flagged class.
    n_features_in_ : int
        Columns seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names seen in ``fit`` (frames only).
    feature_index_ : int
        Position of ``feature`` among the columns.
    """

    def __init__(
        self,
        feature: str | int = "adb_change_3m",
        threshold: float = -0.5,
        direction: str = "le",
        scale: float = 0.1,
    ) -> None:
        self.feature = feature
        self.threshold = threshold
        self.direction = direction
        self.scale = scale

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.poor_score = True
        return tags

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> RuleBaseline:
        """Check the inputs and record the labels; the rule learns nothing.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Must contain ``feature``.
        y : array-like of shape (n_samples,)
            Two class labels.
        sample_weight : array-like of shape (n_samples,), optional
            Checked for shape and sign, otherwise unused (the rule learns nothing).

        Returns
        -------
        RuleBaseline
            ``self``.
        """
        if self.direction not in ("le", "ge"):
            raise ValueError(f"direction must be 'le' or 'ge', got {self.direction!r}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        X, y, _ = _check_target(self, X, y, sample_weight)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type not in ("binary",) and len(np.unique(y)) > 1:
            raise ValueError(f"Only binary classification is supported. The type of the target is {y_type}.")
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError("Classifier can't train when only one class is present.")
        self.classes_ = classes
        self.feature_index_ = self._index(X)
        return self

    def _index(self, X: Any) -> int:
        names = getattr(self, "feature_names_in_", None)
        if isinstance(self.feature, str):
            if names is None or self.feature not in list(names):
                raise ValueError(f"feature {self.feature!r} is not a column of X")
            return int(list(names).index(self.feature))
        index = int(self.feature)
        if not 0 <= index < X.shape[1]:
            raise ValueError(f"feature index {index} out of range for {X.shape[1]} columns")
        return index

    def _values(self, X: Any) -> np.ndarray:
        X = _check_predict_input(self, X)
        if isinstance(X, pd.DataFrame):
            return _to_float(X.iloc[:, [self.feature_index_]])[:, 0]
        return np.asarray(X[:, self.feature_index_], dtype=np.float64)

    def decision_function(self, X: Any) -> np.ndarray:
        """Signed distance past the threshold, in units of ``scale`` (positive = flagged side).

        Parameters
        ----------
        X : DataFrame or array-like
            Rows with the columns seen in ``fit``.

        Returns
        -------
        ndarray of shape (n_samples,)
            ``(threshold - x) / scale`` for ``"le"``, the opposite for ``"ge"``; missing = ``-inf``.
        """
        x = self._values(X)
        z = (self.threshold - x) / self.scale if self.direction == "le" else (x - self.threshold) / self.scale
        return np.where(np.isnan(z), -np.inf, z)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Rule score in ``[0, 1]`` (see the class docstring), as two columns.

        Parameters
        ----------
        X : DataFrame or array-like
            Rows with the columns seen in ``fit``.

        Returns
        -------
        ndarray of shape (n_samples, 2)
            ``[1 - score, score]``.
        """
        z = self.decision_function(X)
        with np.errstate(over="ignore"):
            score = 1.0 / (1.0 + np.exp(-z))
        return np.column_stack([1.0 - score, score])

    def predict(self, X: Any) -> np.ndarray:
        """The rule itself: the flagged class where the feature is past the threshold.

        Parameters
        ----------
        X : DataFrame or array-like
            Rows with the columns seen in ``fit``.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        flagged = self.decision_function(X) >= 0
        return self.classes_[flagged.astype(int)]


def logistic_baseline(
    *,
    C: float = 1.0,
    class_weight: dict | str | None = None,
    categorical_max_levels: int = 20,
    max_iter: int = 1000,
    categorical: Sequence[str] | None = None,
) -> Pipeline:
    """Logistic-regression baseline for a pandas feature frame.

    Numeric columns: median imputation with a missing-indicator, then standard scaling. Other columns
    (text, category, boolean): one-hot, missing as its own level, unseen levels ignored and rare levels
    pooled. Then an L2 :class:`~sklearn.linear_model.LogisticRegression`.

    Parameters
    ----------
    C : float
        Inverse regularisation strength.
    class_weight : dict, "balanced" or None
        Class weights of the regression.
    categorical_max_levels : int
        Most one-hot columns per categorical column.
    max_iter : int
        Solver iterations.
    categorical : sequence of str, optional
        Columns to one-hot; by default every non-numeric column (booleans included).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Unfitted; ``fit(X_frame, y)`` then ``predict_proba``.
    """
    # keep_empty_features: a column missing in every training row stays (as 0) rather than warning
    imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    numeric = make_pipeline(imputer, StandardScaler())
    onehot = make_pipeline(
        FunctionTransformer(_to_object),
        OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=categorical_max_levels),
    )
    if categorical is None:
        pre = ColumnTransformer(
            [
                ("numeric", numeric, make_column_selector(dtype_include=np.number)),
                ("categorical", onehot, make_column_selector(dtype_exclude=np.number)),
            ]
        )
    else:
        pre = ColumnTransformer([("categorical", onehot, list(categorical))], remainder=numeric)
    model = LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter)
    return Pipeline([("preprocess", pre), ("logistic", model)])
