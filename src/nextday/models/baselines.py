"""The baselines every model is judged beside: zero, training mean, ridge, and a tree ensemble."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge

BASELINES = ("zero", "mean", "linear", "tree")


class Baselines:
    """Fit all baselines on the same training rows (and weights) as the model."""

    def __init__(self, ridge_alpha: float = 1.0, tree: dict | None = None, seed: int = 0):
        self.ridge_alpha = ridge_alpha
        self.tree_params = dict(tree or {})
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Baselines:
        self.mean_ = float(np.average(y, weights=weight))
        self.center_ = x.mean(axis=0)
        self.scale_ = np.where(x.std(axis=0) > 1e-12, x.std(axis=0), 1.0)
        self.linear_ = Ridge(alpha=self.ridge_alpha).fit(self._scaled(x), y, sample_weight=weight)
        self.tree_ = HistGradientBoostingRegressor(
            random_state=self.seed, early_stopping=False, **self.tree_params
        ).fit(x, y, sample_weight=weight)
        return self

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        return (x - self.center_) / self.scale_

    def predict(self, name: str, x: np.ndarray) -> np.ndarray:
        if name == "zero":
            return np.zeros(len(x))
        if name == "mean":
            return np.full(len(x), self.mean_)
        if name == "linear":
            return self.linear_.predict(self._scaled(x))
        if name == "tree":
            return self.tree_.predict(x)
        raise ValueError(f"unknown baseline {name!r}: expected one of {BASELINES}")
