"""The 20 technical features: each at date t uses only bars up to and including t.

docs/features.md gives every formula. All are scale-free (returns, ratios, z-scores), so one
model serves symbols of any price or volume.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextday.features.panel import Panel

TECHNICAL_FEATURES = [
    "ret_1d",
    "ret_5d",
    "ret_10d",
    "ret_20d",
    "ret_60d",
    "vol_5d",
    "vol_20d",
    "vol_ratio_5_20",
    "rsi_14",
    "macd_hist",
    "bb_position_20",
    "sma_ratio_10_50",
    "atr_14_pct",
    "hl_range",
    "overnight_gap",
    "intraday_ret",
    "volume_z_20",
    "volume_ratio_5_20",
    "dist_high_60",
    "mkt_ret_1d",
]
# the longest look-back above: rows before it are warm-up
LONGEST_WINDOW = 60


def _ratio(numerator: pd.DataFrame, denominator: pd.DataFrame, flat: float) -> pd.DataFrame:
    """numerator / denominator, with `flat` where the denominator is 0 (a flat window)."""
    return (
        (numerator / denominator.where(denominator != 0))
        .where(denominator != 0, flat)
        .where(denominator.notna() & numerator.notna())
    )


def _wilder(series: pd.DataFrame, period: int) -> pd.DataFrame:
    return series.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()


def technical_features(ohlcv: pd.DataFrame, panel: Panel) -> pd.DataFrame:
    """Compute the technical features for `ohlcv` (sorted by symbol, ts), one row per bar."""
    close = panel.wide(ohlcv["close"])
    open_ = panel.wide(ohlcv["open"])
    high = panel.wide(ohlcv["high"])
    low = panel.wide(ohlcv["low"])
    log_volume = np.log1p(panel.wide(ohlcv["volume"]))
    volume = panel.wide(ohlcv["volume"])
    previous = close.shift(1)
    ret = close / previous - 1.0

    def back(k: int) -> pd.DataFrame:
        return close / close.shift(k) - 1.0

    vol_5 = ret.rolling(5).std()
    vol_20 = ret.rolling(20).std()
    change = close.diff()
    gain = _wilder(change.clip(lower=0.0), 14)
    loss = _wilder((-change).clip(lower=0.0), 14)
    rsi = 100.0 - 100.0 / (1.0 + gain / loss.replace(0.0, np.nan))
    rsi = rsi.where(loss > 0, 100.0).where(gain.notna())
    ema_12 = close.ewm(span=12, adjust=False, min_periods=12).mean()
    ema_26 = close.ewm(span=26, adjust=False, min_periods=26).mean()
    macd = ema_12 - ema_26
    signal = macd.ewm(span=9, adjust=False, min_periods=9).mean()
    sma_20 = close.rolling(20).mean()
    std_20 = close.rolling(20).std()
    # fmax skips the missing previous close of a symbol's first bar
    true_range = np.fmax(np.fmax(high - low, (high - previous).abs()), (low - previous).abs())
    log_volume_mean = log_volume.rolling(20).mean()
    log_volume_std = log_volume.rolling(20).std()

    wide = {
        "ret_1d": ret,
        "ret_5d": back(5),
        "ret_10d": back(10),
        "ret_20d": back(20),
        "ret_60d": back(60),
        "vol_5d": vol_5,
        "vol_20d": vol_20,
        "vol_ratio_5_20": _ratio(vol_5, vol_20, 1.0),
        "rsi_14": rsi,
        "macd_hist": (macd - signal) / close,
        "bb_position_20": _ratio(close - sma_20, 2.0 * std_20, 0.0),
        "sma_ratio_10_50": close.rolling(10).mean() / close.rolling(50).mean() - 1.0,
        "atr_14_pct": _wilder(true_range, 14) / close,
        "hl_range": (high - low) / close,
        "overnight_gap": open_ / previous - 1.0,
        "intraday_ret": close / open_ - 1.0,
        "volume_z_20": _ratio(log_volume - log_volume_mean, log_volume_std, 0.0),
        "volume_ratio_5_20": _ratio(volume.rolling(5).mean(), volume.rolling(20).mean(), 1.0),
        "dist_high_60": close / high.rolling(60).max() - 1.0,
    }
    out = pd.DataFrame({name: panel.long(frame) for name, frame in wide.items()})
    # the equal-weight market return of the same date: known at that close
    out["mkt_ret_1d"] = out["ret_1d"].groupby(ohlcv["ts"].to_numpy()).transform("mean").to_numpy()
    out = out.replace([np.inf, -np.inf], np.nan)
    return out[TECHNICAL_FEATURES]
