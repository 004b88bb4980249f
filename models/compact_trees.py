"""A fitted HistGradientBoostingRegressor reduced to the flat arrays its prediction reads.

A fitted scikit-learn regressor keeps its training scaffolding: per tree a node record of 56
bytes (gains, counts, bin thresholds, categorical bitsets), one Python predictor object per
tree, and the bin mapper with 255 thresholds per feature. That was ~160 KB per target, a third
of the daemon's memory at 1,000 targets, for a model that predicts one row a tick. These arrays
hold the same trees in ~25 KB, and walk all trees at once with numpy, which for one row is also
faster than scikit-learn's per-tree loop. A test checks the predictions equal scikit-learn's.

Only numerical splits are supported (elasticd's features are all numerical): a model with a
categorical split is refused rather than mispredicted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingRegressor

FloatArray = NDArray[np.float64]

_LEAF = -1


@dataclass(frozen=True, slots=True, eq=False)
class CompactTrees:
    """Every tree's nodes, concatenated; children index into the same arrays.

    A node is a split or a leaf, never both, so one float array holds a split's threshold or
    a leaf's value; children are int16 (a model has at most a few thousand nodes).
    """

    feature: NDArray[np.int16]  # the split's feature; _LEAF for a leaf
    number: FloatArray  # a split's threshold (left when x <= it), or a leaf's contribution
    nan_left: NDArray[np.bool_]  # where a missing value goes
    left: NDArray[np.int16]  # a leaf's children are itself: a walk that reached it stays
    right: NDArray[np.int16]
    roots: NDArray[np.int16]
    baseline: float
    depth: int  # the deepest leaf's depth: the number of steps a walk can take

    @classmethod
    def from_estimator(cls, model: HistGradientBoostingRegressor) -> CompactTrees:
        """The trees of a fitted single-output regressor."""
        if model.n_trees_per_iteration_ != 1:
            raise ValueError("only single-output regressors can be compacted")
        features, numbers, nan_left, lefts, rights, roots = [], [], [], [], [], []
        offset, depth = 0, 0
        for (predictor,) in model._predictors:
            nodes = predictor.nodes
            if np.any(nodes["is_categorical"]):
                raise ValueError("categorical splits are not supported")
            leaf = nodes["is_leaf"].astype(bool)
            features.append(np.where(leaf, _LEAF, nodes["feature_idx"]))
            numbers.append(np.where(leaf, nodes["value"], nodes["num_threshold"]))
            nan_left.append(nodes["missing_go_to_left"].astype(bool))
            own = np.arange(offset, offset + nodes.size)
            lefts.append(np.where(leaf, own, nodes["left"].astype(np.int64) + offset))
            rights.append(np.where(leaf, own, nodes["right"].astype(np.int64) + offset))
            roots.append(offset)
            depth = max(depth, int(nodes["depth"].max()))
            offset += nodes.size
        if offset > np.iinfo(np.int16).max:
            raise ValueError(f"{offset} nodes do not fit int16 indices")
        return cls(
            feature=np.concatenate(features).astype(np.int16),
            number=np.concatenate(numbers).astype(np.float64),
            nan_left=np.concatenate(nan_left),
            left=np.concatenate(lefts).astype(np.int16),
            right=np.concatenate(rights).astype(np.int16),
            roots=np.asarray(roots, dtype=np.int16),
            baseline=float(np.asarray(model._baseline_prediction).ravel()[0]),
            depth=depth,
        )

    def predict(self, X: FloatArray) -> FloatArray:
        """The sum of every tree's leaf for each row of ``X``, plus the baseline."""
        X = np.asarray(X, dtype=np.float64)
        rows = np.arange(X.shape[0])[:, None]
        node = np.broadcast_to(self.roots, (X.shape[0], self.roots.size)).astype(np.intp)
        for _ in range(self.depth):
            feature = self.feature[node]
            if np.all(feature == _LEAF):
                break
            x = X[rows, np.maximum(feature, 0)]
            go_left = np.where(np.isnan(x), self.nan_left[node], x <= self.number[node])
            node = np.where(go_left, self.left[node], self.right[node])
        # Tree by tree, in order: the same additions, so the same rounding, as scikit-learn.
        total = np.full(X.shape[0], self.baseline)
        for tree in range(self.roots.size):
            total += self.number[node[:, tree]]
        return total

    @property
    def nbytes(self) -> int:
        arrays = (self.feature, self.number, self.nan_left, self.left, self.right, self.roots)
        return sum(a.nbytes for a in arrays)
