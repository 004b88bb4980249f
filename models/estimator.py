"""A quantile gradient-boosting regressor for the anchored peak target.

Follows scikit-learn conventions: every hyperparameter is an explicit keyword, ``__init__``
does no work, learned state lives in trailing-underscore attributes set by ``fit``.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor

from models.compact_trees import CompactTrees
from models.threads import capped_threads

FloatArray = NDArray[np.float64]


class PeakQuantileRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Predicts a quantile of the anchored peak; rows with a NaN target are ignored in ``fit``.

    ``fit`` trains scikit-learn's HistGradientBoostingRegressor and keeps only its trees
    (``trees_``, see ``models.compact_trees``).

    Feature columns that are entirely NaN in the training rows (a one-week lag on less than a
    week of history) are replaced by zeros: scikit-learn's binning fails on an all-NaN column,
    and a constant column is never split on, so prediction ignores it whatever it holds.
    """

    def __init__(
        self,
        *,
        quantile: float = 0.9,
        max_iter: int = 60,
        learning_rate: float = 0.15,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 20,
        l2_regularization: float = 1.0,
        random_state: int = 0,
    ) -> None:
        self.quantile = quantile
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def fit(self, X: FloatArray, y: FloatArray) -> Self:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        usable = np.isfinite(y)
        if usable.sum() < 2:
            raise ValueError("need at least two rows with an observed target to fit")
        X, y = X[usable], y[usable]
        self.constant_columns_ = np.flatnonzero(~np.isfinite(X).any(axis=0))
        X = self._fill_constant(X)
        model = HistGradientBoostingRegressor(
            loss="quantile",
            quantile=self.quantile,
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            # Early stopping would hold out the newest rows at random; the walk-forward replay
            # already measures generalisation honestly.
            early_stopping=False,
            random_state=self.random_state,
        )
        with capped_threads():
            model.fit(X, y)
        # Only the trees are kept: the fitted scikit-learn object is four times their size.
        self.trees_ = CompactTrees.from_estimator(model)
        self.n_features_in_ = X.shape[1]
        self.n_train_rows_ = int(y.size)
        return self

    def predict(self, X: FloatArray) -> FloatArray:
        return self.trees_.predict(self._fill_constant(np.asarray(X, dtype=np.float64)))

    def _fill_constant(self, X: FloatArray) -> FloatArray:
        if self.constant_columns_.size == 0:
            return X
        X = X.copy()
        X[:, self.constant_columns_] = 0.0
        return X

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags
