"""The trading view: each day, long the top and short the bottom quantile of the signal.

Weights are equal within each leg (+1/k long, -1/k short: gross 2, net 0). A position formed
on the signal at close t is entered at the next open (open t+1 -> open t+2) or at the next
close (close t+1 -> close t+2); costs are charged in basis points per side on every unit of
weight traded (turnover = sum |w_t - w_t-1|).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EXECUTIONS = ("next_open", "next_close")
TRADING_DAYS = 252


def realized_returns(frame: pd.DataFrame, execution: str) -> np.ndarray:
    """Per row of `frame` (the whole dataset: symbol, date, label, overnight_gap), the return
    a position formed at close t earns under `execution`; NaN where the data end."""
    if execution not in EXECUTIONS:
        raise ValueError(f"backtest.execution={execution!r}: expected one of {EXECUTIONS}")
    ordered = frame.sort_values(["symbol", "date"], kind="stable")
    by_symbol = ordered.groupby("symbol", sort=False)
    label = ordered["label"]
    if execution == "next_close":
        out = by_symbol["label"].shift(-1)  # close t+1 -> close t+2
    else:
        # open[t+1] = close[t] (1 + gap[t+1]); open[t+2] = close[t+1] (1 + gap[t+2])
        gap_1 = by_symbol["overnight_gap"].shift(-1)
        gap_2 = by_symbol["overnight_gap"].shift(-2)
        out = (1.0 + label) * (1.0 + gap_2) / (1.0 + gap_1) - 1.0
    return out.reindex(frame.index).to_numpy(dtype=np.float64)


def weights(signal, dates, quantile: float) -> np.ndarray:
    """+1/k for the top k and -1/k for the bottom k signals of each date, k = floor(n q)
    (at least 1; no position on a date with fewer than 2 names)."""
    if not 0.0 < quantile <= 0.5:
        raise ValueError(f"backtest.quantile must be in (0, 0.5], got {quantile}")
    frame = pd.DataFrame({"date": np.asarray(dates), "signal": np.asarray(signal, float)})
    n = frame.groupby("date")["signal"].transform("size").to_numpy()
    k = np.maximum(1, np.floor(n * quantile)).astype(int)
    # rank 1 = lowest; ties broken by order, so every day has exactly k per leg
    rank = frame.groupby("date")["signal"].rank(method="first").to_numpy()
    out = np.zeros(len(frame))
    out[rank > n - k] = 1.0 / k[rank > n - k]
    out[rank <= k] = -1.0 / k[rank <= k]
    out[n < 2] = 0.0
    return out


def long_short(symbols, dates, signal, realized, quantile: float, cost_bps: float) -> pd.DataFrame:
    """Daily gross return, turnover, cost and net return of the strategy (index: date)."""
    frame = pd.DataFrame(
        {"symbol": np.asarray(symbols), "date": np.asarray(dates), "signal": signal, "r": realized}
    )
    frame = frame[np.isfinite(frame["r"]) & np.isfinite(frame["signal"])]
    frame["w"] = weights(frame["signal"].to_numpy(), frame["date"].to_numpy(), quantile)
    held = frame.pivot_table(index="date", columns="symbol", values="w", fill_value=0.0)
    traded = held.diff().abs().sum(axis=1)
    traded.iloc[0] = held.iloc[0].abs().sum()  # building the first book is trading too
    daily = pd.DataFrame(
        {
            "gross": (frame["w"] * frame["r"]).groupby(frame["date"]).sum(),
            "turnover": traded,
        }
    )
    daily["cost"] = daily["turnover"] * cost_bps / 1e4
    daily["net"] = daily["gross"] - daily["cost"]
    return daily


def equal_weight(dates, realized) -> pd.Series:
    """The market itself: every name held with equal weight (long only, no costs)."""
    frame = pd.DataFrame({"date": np.asarray(dates), "r": realized}).dropna()
    return frame.groupby("date")["r"].mean()


def drawdown(returns: pd.Series) -> pd.Series:
    equity = (1.0 + returns).cumprod()
    return equity / equity.cummax() - 1.0


def summary(returns: pd.Series, turnover: pd.Series | None = None) -> dict[str, float]:
    """Annualized return (compounded), volatility and Sharpe, maximum drawdown, mean daily
    turnover and hit rate of a daily return series."""
    returns = returns.dropna()
    n = len(returns)
    if n == 0:
        return {}
    growth = float((1.0 + returns).prod())
    volatility = float(returns.std(ddof=1)) if n > 1 else float("nan")
    return {
        "ann_return": growth ** (TRADING_DAYS / n) - 1.0 if growth > 0 else -1.0,
        "ann_vol": volatility * np.sqrt(TRADING_DAYS),
        "sharpe": float(returns.mean()) / volatility * np.sqrt(TRADING_DAYS)
        if volatility and volatility > 0
        else float("nan"),
        "max_drawdown": float(drawdown(returns).min()),
        "turnover": float(turnover.mean()) if turnover is not None else float("nan"),
        "hit_rate": float((returns > 0).mean()),
        "days": float(n),
    }
