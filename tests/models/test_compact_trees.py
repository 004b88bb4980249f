"""The compacted trees predict exactly what scikit-learn's fitted regressor predicts."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from models.compact_trees import CompactTrees
from models.threads import capped_threads


@pytest.mark.parametrize("loss", ["quantile", "squared_error"])
def test_predictions_equal_scikit_learn_including_missing_values(loss: str) -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3000, 6))
    X[rng.random(X.shape) < 0.1] = np.nan  # missing values in training: learned directions
    y = np.nan_to_num(X[:, 0]) * 2 + np.sin(np.nan_to_num(X[:, 1])) + rng.normal(size=3000)
    kwargs = {"quantile": 0.9} if loss == "quantile" else {}
    model = HistGradientBoostingRegressor(
        loss=loss, max_iter=40, max_leaf_nodes=15, random_state=0, **kwargs
    )
    with capped_threads():
        model.fit(X, y)
        queries = rng.normal(size=(500, 6)) * 3
        queries[rng.random(queries.shape) < 0.2] = np.nan
        expected = model.predict(queries)
    trees = CompactTrees.from_estimator(model)
    np.testing.assert_array_equal(trees.predict(queries), expected)
    np.testing.assert_array_equal(trees.predict(queries[:1]), expected[:1])
    assert trees.roots.size == model.n_iter_
    # The point of it: a fraction of the fitted object's size.
    assert trees.nbytes * 2 < len(pickle.dumps(model))


def test_a_categorical_split_is_refused() -> None:
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.integers(0, 4, 400), rng.normal(size=400)]).astype(float)
    y = X[:, 0] * 3 + rng.normal(size=400)
    model = HistGradientBoostingRegressor(max_iter=5, categorical_features=[0])
    with capped_threads():
        model.fit(X, y)
    with pytest.raises(ValueError, match="categorical"):
        CompactTrees.from_estimator(model)
