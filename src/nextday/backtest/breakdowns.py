"""Where the model works and where it does not: regimes, volatility, earnings surprises."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextday.backtest import performance
from nextday.contracts.metrics import level_tag
from nextday.contracts.outputs import INTERVALS
from nextday.evaluation.intervals import coverage
from nextday.evaluation.metrics import point_metrics

# the breakdown tables, by the name the report gives each
MARKET_REGIME = "market regime"
TRUE_REGIME = "true regime (synthetic)"
VOLATILITY = "20-day volatility quintile"
SURPRISE = "EPS surprise"


def market_regimes(market_return: pd.Series, window: int, threshold: float) -> pd.Series:
    """Each date's regime from the market's trailing `window`-day return scaled by its own
    volatility over the window (known at that date's close): bull above +threshold, bear
    below -threshold, sideways between; `warm-up` until the window is full."""
    log_return = np.log1p(market_return.sort_index())
    trailing = log_return.rolling(window).sum()
    spread = log_return.rolling(window).std() * np.sqrt(window)
    score = trailing / spread
    regime = np.where(score > threshold, "bull", np.where(score < -threshold, "bear", "sideways"))
    return pd.Series(np.where(score.isna(), "warm-up", regime), index=score.index, name="regime")


def volatility_buckets(vol: np.ndarray, buckets: int = 5) -> np.ndarray:
    labels = ["1 calm", *(str(i) for i in range(2, buckets)), f"{buckets} wild"]
    return np.asarray(pd.qcut(vol, buckets, labels=labels, duplicates="drop").astype(str))


def surprise_buckets(surprise: np.ndarray) -> np.ndarray:
    """Sign and size of the EPS surprise: miss/beat, small/large (split at the median size)."""
    surprise = np.asarray(surprise, float)
    size = np.abs(surprise)
    moved = size > 1e-12
    median = np.median(size[moved]) if moved.any() else 0.0
    label = np.where(size > median, "large", "small")
    out = np.where(surprise > 0, "beat " + label, "miss " + label)
    return np.where(moved, out, "in line")


def regime_frame(
    dataset: pd.DataFrame, window: int, threshold: float, true_regimes: pd.DataFrame | None
) -> pd.DataFrame:
    """Per date: the market regime (`market_regimes` of the dataset's market return) and, on
    synthetic data, the generator's true regime (`true_regimes`: ts, regime)."""
    market_return = dataset.groupby("date")["mkt_ret_1d"].first()
    frame = market_regimes(market_return, window, threshold).rename("market_regime").reset_index()
    frame.columns = ["date", "market_regime"]
    if true_regimes is not None:
        true = true_regimes.rename(columns={"ts": "date", "regime": "true_regime"})
        true["date"] = true["date"].astype(frame["date"].dtype)
        frame = frame.merge(true, on="date", how="left")
    return frame


def table(rows: pd.DataFrame, key: str, level: float) -> pd.DataFrame:
    """Per value of `key`: rows, MAE beside the zero predictor's, skill, direction accuracy,
    IC (mean daily Spearman within the bucket) and coverage of the `level` interval."""
    lower, upper = INTERVALS[level]
    out = []
    for value, part in rows.groupby(key, sort=True):
        actual, dates = part["label"].to_numpy(), part["date"].to_numpy()
        model = point_metrics(part["prediction"].to_numpy(), actual, dates)
        out.append(
            {
                key: value,
                "rows": len(part),
                "mae": model["mae"],
                "zero_mae": float(np.mean(np.abs(actual))),
                "skill": model["skill"],
                "dir_acc": model["dir_acc"],
                "ic": model["ic"],
                f"coverage_{level_tag(level)}": coverage(part[lower], part[upper], actual),
            }
        )
    return pd.DataFrame(out)


def tables(
    rows: pd.DataFrame, book: pd.DataFrame, level: float, by_surprise: bool
) -> dict[str, pd.DataFrame]:
    """The breakdowns by name: market regime (with the book's Sharpe in each), the true
    regime on synthetic data, 20-day volatility quintile and, `by_surprise`, EPS surprise."""
    by_regime = table(rows, "market_regime", level)
    sharpe = {
        regime: performance.summary(book["net"].reindex(dates.unique())).get("sharpe", np.nan)
        for regime, dates in rows.groupby("market_regime")["date"]
    }
    by_regime["strategy_sharpe"] = by_regime["market_regime"].map(sharpe)
    out = {MARKET_REGIME: by_regime}
    if "true_regime" in rows and rows["true_regime"].notna().any():
        out[TRUE_REGIME] = table(rows, "true_regime", level)
    rows = rows.assign(vol_bucket=volatility_buckets(rows["vol_20d"].to_numpy()))
    out[VOLATILITY] = table(rows, "vol_bucket", level)
    if by_surprise:
        rows = rows.assign(surprise=surprise_buckets(rows["eps_surprise"].to_numpy()))
        out[SURPRISE] = table(rows, "surprise", level)
    return out
