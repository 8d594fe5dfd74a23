"""The baselines every model is judged beside: zero, training mean, ridge, and a tree ensemble.

They take raw features, like the network, and see them through the model's own feature
processor (clipped and scaled as the network's first layers do), so a baseline is never
judged on inputs the model did not get, nor wrecked by outliers the model is protected from.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge

from nextday.models.processor import FeatureProcessor

BASELINES = ("zero", "mean", "linear", "tree")


class Baselines:
    """Fit all baselines on the same training rows (and weights) as the model."""

    def __init__(
        self,
        processor: FeatureProcessor,
        ridge_alpha: float = 1.0,
        tree: dict | None = None,
        seed: int = 0,
    ):
        self.processor = processor
        self.ridge_alpha = ridge_alpha
        self.tree_params = dict(tree or {})
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Baselines:
        processed = self.processor.transform(x).astype(np.float64)
        self.mean_ = float(np.average(y, weights=weight))
        self.linear_ = Ridge(alpha=self.ridge_alpha).fit(processed, y, sample_weight=weight)
        self.tree_ = HistGradientBoostingRegressor(
            random_state=self.seed, early_stopping=False, **self.tree_params
        ).fit(processed, y, sample_weight=weight)
        return self

    def predict(self, name: str, x: np.ndarray) -> np.ndarray:
        """Baseline `name` on raw features `x`."""
        if name == "zero":
            return np.zeros(len(x))
        if name == "mean":
            return np.full(len(x), self.mean_)
        if name == "linear":
            return self.linear_.predict(self.processor.transform(x).astype(np.float64))
        if name == "tree":
            return self.tree_.predict(self.processor.transform(x).astype(np.float64))
        raise ValueError(f"unknown baseline {name!r}: expected one of {BASELINES}")
