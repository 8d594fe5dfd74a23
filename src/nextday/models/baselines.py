"""The baselines every model is judged beside: zero, training mean, ridge, and a tree ensemble.

They take raw features, like the network, and see them through the model's own feature
processor (clipped and scaled as the network's first layers do), so a baseline is never
judged on inputs the model did not get, nor wrecked by outliers the model is protected from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge

from nextday.models.processor import FeatureProcessor

if TYPE_CHECKING:
    from nextday.models.data import ModelData

BASELINES = ("zero", "mean", "linear", "tree")


class Baselines:
    """Fit all baselines on the same training rows (and weights) as the model.

    The ridge's penalty is chosen among `ridge_alphas` by date-blocked cross-validation on
    the training rows (contiguous blocks of dates, absolute error on the held-out rows of the
    kind the model is judged on, `judged`): on daily returns, which are mostly noise, a weak
    penalty fits the noise and loses to the zero predictor out of sample; the blocked folds
    see that and pick a strong one, while a real linear signal (earnings surprises on
    earnings days) keeps a weak one. One alpha is used as it is.
    """

    def __init__(
        self,
        processor: FeatureProcessor,
        ridge_alphas=(1.0,),
        tree: dict | None = None,
        seed: int = 0,
        ridge_folds: int = 5,
    ):
        self.processor = processor
        self.ridge_alphas = tuple(float(a) for a in ridge_alphas)
        self.ridge_folds = int(ridge_folds)
        self.tree_params = dict(tree or {})
        self.seed = seed

    @classmethod
    def from_config(cls, processor: FeatureProcessor, settings, seed: int) -> Baselines:
        """From the `train.baselines` config group."""
        return cls(
            processor,
            tuple(settings.ridge_alphas),
            dict(settings.tree),
            seed=seed,
            ridge_folds=int(settings.ridge_folds),
        )

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        weight: np.ndarray | None = None,
        dates: np.ndarray | None = None,
        judged: np.ndarray | None = None,
    ) -> Baselines:
        processed = self.processor.transform(x).astype(np.float64)
        self.mean_ = float(np.average(y, weights=weight))
        self.ridge_alpha_ = self._choose_alpha(processed, y, weight, dates, judged)
        self.linear_ = Ridge(alpha=self.ridge_alpha_).fit(processed, y, sample_weight=weight)
        self.tree_bins_ = WeightedBins.fit(processed, weight)
        self.tree_ = HistGradientBoostingRegressor(
            random_state=self.seed, early_stopping=False, **self.tree_params
        ).fit(self.tree_bins_.transform(processed), y, sample_weight=weight)
        return self

    def fit_model_rows(self, data: ModelData, limit: int | None = None) -> Baselines:
        """Fit on a model's own training rows (and weights), `limit` of them drawn (seeded)
        when there are more."""
        x, y, weight = data.train_flat, data.train.y.astype(np.float64), data.train.weight
        dates, judged = data.train_dates, data.train_judged
        if limit is not None and len(x) > limit:
            take = np.sort(np.random.default_rng(self.seed).choice(len(x), limit, replace=False))
            x, y, weight, dates, judged = x[take], y[take], weight[take], dates[take], judged[take]
        return self.fit(x, y, weight, dates, judged)

    def _choose_alpha(self, x, y, weight, dates, judged) -> float:
        if len(self.ridge_alphas) == 1:
            return self.ridge_alphas[0]
        if dates is None:
            raise ValueError("choosing the ridge penalty needs the training rows' dates")
        unique = np.unique(dates)
        if len(unique) < 2 * self.ridge_folds:
            return max(self.ridge_alphas)  # too few dates to judge: the safe, strong penalty
        block = np.searchsorted(unique, dates) * self.ridge_folds // len(unique)
        weight = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)
        scored = np.ones(len(y), dtype=bool) if judged is None else np.asarray(judged, bool)
        if not scored.any():
            return max(self.ridge_alphas)  # nothing to judge by: the safe, strong penalty
        errors = []
        for alpha in self.ridge_alphas:
            total = 0.0
            for fold in range(self.ridge_folds):
                fit, held = block != fold, (block == fold) & scored
                if not held.any():
                    continue
                model = Ridge(alpha=alpha).fit(x[fit], y[fit], sample_weight=weight[fit])
                residual = np.abs(model.predict(x[held]) - y[held])
                total += float(np.average(residual, weights=weight[held]))
            errors.append(total)
        return self.ridge_alphas[int(np.argmin(errors))]

    def predict(self, name: str, x: np.ndarray) -> np.ndarray:
        """Baseline `name` on raw features `x`."""
        if name == "zero":
            return np.zeros(len(x))
        if name == "mean":
            return np.full(len(x), self.mean_)
        if name == "linear":
            return self.linear_.predict(self.processor.transform(x).astype(np.float64))
        if name == "tree":
            processed = self.processor.transform(x).astype(np.float64)
            return self.tree_.predict(self.tree_bins_.transform(processed))
        raise ValueError(f"unknown baseline {name!r}: expected one of {BASELINES}")


@dataclass(frozen=True)
class WeightedBins:
    """Each feature cut at its weighted quantiles, as the tree ensemble bins it: up to
    `MAX_BINS` bins per feature, a bin per distinct value when there are fewer, weights
    counted (the "averaged inverted CDF" of scikit-learn's binner; missing values stay
    missing).

    The tree is fitted on the bin numbers, which it keeps as its own bins. scikit-learn 1.9's
    binner finds each weighted quantile with a sort of its own (254 sorts per feature): 1.7 s
    of the tree's 1.8 s on 9,000 rows, with weights all equal (the normal model's) or not.
    Here it is one sort per feature (its fix upstream: scikit-learn pull request 34248)."""

    thresholds: tuple[np.ndarray, ...]

    @classmethod
    def fit(cls, x: np.ndarray, weight: np.ndarray | None = None) -> WeightedBins:
        weight = np.ones(len(x)) if weight is None else np.asarray(weight, dtype=np.float64)
        return cls(tuple(_weighted_thresholds(x[:, j], weight) for j in range(x.shape[1])))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """The bin number of each value (0 for at or below the first threshold), as floats."""
        binned = np.empty(x.shape, dtype=np.float64)
        for j, thresholds in enumerate(self.thresholds):
            binned[:, j] = np.searchsorted(thresholds, x[:, j], side="left")
        binned[np.isnan(x)] = np.nan
        return binned


MAX_BINS = 255  # HistGradientBoostingRegressor's default, and its most


def _weighted_thresholds(column: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The increasing thresholds between one feature's bins: value v falls in bin i when
    thresholds[i - 1] < v <= thresholds[i]."""
    keep = ~np.isnan(column) & (weight != 0)
    order = np.argsort(column[keep], kind="stable")
    values, weight = column[keep][order], weight[keep][order]
    distinct = np.unique(values)
    if len(distinct) <= MAX_BINS:
        return (distinct[:-1] + distinct[1:]) / 2
    cdf = np.cumsum(weight)
    ranks = np.linspace(0, 100, MAX_BINS + 1)[1:-1] / 100 * cdf[-1]  # as scikit-learn rounds
    at = np.minimum(np.searchsorted(cdf, ranks), len(values) - 1)
    # a rank that lands exactly on a step of the CDF takes the mean of that value and the next
    exact = cdf[at] - ranks <= np.finfo(np.float64).eps
    following = values[np.minimum(at + 1, len(values) - 1)]
    thresholds = np.where(exact, (values[at] + following) / 2, values[at])
    return np.unique(thresholds)
