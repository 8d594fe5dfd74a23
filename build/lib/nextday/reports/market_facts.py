"""Stylized facts of a market, measured the same way on any source.

`measure_facts` turns raw bars and earnings into numbers (return scale, fat tails, volatility
clustering, co-movement, earnings moves, and the oracle's IC where a ground truth exists);
`check_facts` compares them with the ranges real US equities show, so the synthetic market's
report says in numbers whether it looks like the real thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextday.data.schema import RawMarket


@dataclass(frozen=True)
class FactRange:
    name: str
    low: float
    high: float
    what: str


# What daily returns of US large-cap stocks show, from published figures (docs/synthetic.md,
# "Where the ranges come from", gives the sources). The same ranges are checked on the real
# large caps of tests/fixtures/real and on the built-in market. Facts about earnings need an
# earnings calendar; the oracle's IC needs a ground truth (synthetic data only).
EQUITY_FACTS = [
    FactRange("normal_day_sd", 0.010, 0.025, "daily return s.d. on normal days (median symbol)"),
    FactRange("abs_to_sd", 0.63, 0.76, "mean |r| / s.d. on normal days: below 0.80 = fat tails"),
    FactRange("abs_acf_1_10", 0.03, 0.40, "autocorrelation of |r|, mean of lags 1-10: clustering"),
    FactRange("mean_pair_corr", 0.10, 0.50, "mean pairwise correlation: a market factor"),
    FactRange("sector_excess_corr", 0.03, 0.60, "within-sector minus across-sector correlation"),
    FactRange("earnings_share", 0.013, 0.025, "share of symbol-days that are earnings samples"),
    FactRange("announcement_abs_move", 0.03, 0.07, "mean |return| over an earnings report"),
    FactRange("surprise_r2", 0.03, 0.60, "R^2 of the announcement move on the EPS surprise"),
    FactRange("oracle_ic", 0.02, 0.10, "oracle's mean daily cross-sectional Spearman IC"),
]


def close_to_close_returns(ohlcv: pd.DataFrame) -> pd.DataFrame:
    """Wide [date x symbol] close-to-close returns (NaN where a symbol has no bar)."""
    closes = ohlcv.pivot(index="ts", columns="symbol", values="close").sort_index()
    return closes.pct_change(fill_method=None)


def _reaction_mask(returns: pd.DataFrame, earnings: pd.DataFrame) -> pd.DataFrame:
    """True at (date, symbol) where the return follows an earnings report (the sample t -> t+1)."""
    mask = pd.DataFrame(False, index=returns.index, columns=returns.columns)
    if earnings.empty:
        return mask
    position = {day: i for i, day in enumerate(returns.index)}
    column = {symbol: j for j, symbol in enumerate(returns.columns)}
    values = mask.to_numpy(copy=True)
    for symbol, session in zip(earnings["symbol"], earnings["session_date"], strict=True):
        i = position.get(pd.Timestamp(session))
        j = column.get(symbol)
        if i is not None and j is not None and i + 1 < len(values):
            values[i + 1, j] = True
    return pd.DataFrame(values, index=returns.index, columns=returns.columns)


def _abs_autocorrelation(values: np.ndarray, lags: range) -> np.ndarray:
    """Per-column autocorrelation of |values| at each lag (NaN-aware)."""
    out = []
    absolute = np.abs(values)
    for lag in lags:
        a, b = absolute[lag:], absolute[:-lag]
        ok = ~(np.isnan(a) | np.isnan(b))
        per_symbol = []
        for j in range(values.shape[1]):
            x, y = a[ok[:, j], j], b[ok[:, j], j]
            per_symbol.append(np.corrcoef(x, y)[0, 1] if x.size > 10 else np.nan)
        out.append(per_symbol)
    return np.array(out)


def measure_facts(market: RawMarket, max_symbols: int = 200, seed: int = 0) -> dict[str, float]:
    """Measure the stylized facts of `market` (a sample of at most `max_symbols` symbols)."""
    returns = close_to_close_returns(market.ohlcv)
    symbols = returns.columns
    if len(symbols) > max_symbols:
        chosen = np.random.default_rng(seed).choice(len(symbols), max_symbols, replace=False)
        symbols = symbols[np.sort(chosen)]
    returns = returns[symbols]
    reaction = _reaction_mask(returns, market.earnings)
    normal = returns.where(~reaction)

    facts: dict[str, float] = {}
    sd = normal.std()
    facts["normal_day_sd"] = float(sd.median())
    facts["abs_to_sd"] = float((normal.abs().mean() / sd).median())
    facts["excess_kurtosis"] = float(normal.kurt().median())
    acf = _abs_autocorrelation(normal.to_numpy(), range(1, 11))
    facts["abs_acf_1"] = float(np.nanmedian(acf[0]))
    facts["abs_acf_1_10"] = float(np.nanmedian(np.nanmean(acf, axis=0)))
    facts["ret_acf_1"] = float(normal.apply(lambda s: s.autocorr(1)).median())

    corr = normal.corr(min_periods=60).to_numpy()
    off_diagonal = ~np.eye(len(corr), dtype=bool)
    facts["mean_pair_corr"] = float(np.nanmean(corr[off_diagonal]))
    if market.symbols is not None and "sector" in market.symbols:
        sector = market.symbols.set_index("symbol").loc[list(symbols), "sector"].to_numpy()
        same = (sector[:, None] == sector[None, :]) & off_diagonal
        facts["sector_excess_corr"] = float(
            np.nanmean(corr[same]) - np.nanmean(corr[off_diagonal & ~same])
        )

    symbol_days = int(market.ohlcv.shape[0])
    # without an earnings calendar these facts are unknown, not zero
    facts["earnings_share"] = (
        float(len(market.earnings)) / max(symbol_days, 1) if len(market.earnings) else np.nan
    )
    moves = returns.where(reaction).stack()
    facts["announcement_abs_move"] = float(moves.abs().mean()) if len(moves) else float("nan")
    facts["surprise_r2"] = _surprise_r2(returns, market.earnings)

    if market.truth is not None:
        facts["oracle_ic"] = oracle_ic(market.truth, returns)
    if market.regimes is not None:
        shares = market.regimes["regime"].value_counts(normalize=True)
        for regime, share in shares.items():
            facts[f"regime_share_{regime}"] = float(share)
    return facts


def _surprise_r2(returns: pd.DataFrame, earnings: pd.DataFrame) -> float:
    if earnings.empty or earnings["eps_estimate"].isna().all():
        return float("nan")
    estimate, actual = earnings["eps_estimate"], earnings["eps_actual"]
    surprise = ((actual - estimate) / estimate.abs().clip(lower=0.01)).clip(-1, 1)
    position = {day: i for i, day in enumerate(returns.index)}
    values = returns.to_numpy()
    column = {symbol: j for j, symbol in enumerate(returns.columns)}
    x, y = [], []
    for symbol, session, s in zip(
        earnings["symbol"], earnings["session_date"], surprise, strict=True
    ):
        i, j = position.get(pd.Timestamp(session)), column.get(symbol)
        if i is None or j is None or i + 1 >= len(values) or np.isnan(s):
            continue
        if not np.isnan(values[i + 1, j]):
            x.append(s)
            y.append(values[i + 1, j])
    if len(x) < 20:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1] ** 2)


def oracle_ic(truth: pd.DataFrame, returns: pd.DataFrame) -> float:
    """Mean daily Spearman correlation between the true conditional mean and the next return."""
    mean = truth.pivot(index="ts", columns="symbol", values="true_mean")
    realized = returns.shift(-1).reindex(index=mean.index, columns=mean.columns)
    ranked_mean = mean.rank(axis=1)
    ranked_real = realized.rank(axis=1)
    daily = ranked_mean.corrwith(ranked_real, axis=1).dropna()
    return float(daily.mean())


def check_facts(facts: dict[str, float]) -> pd.DataFrame:
    """One row per known fact: value, expected range and whether it holds."""
    rows = []
    for fact in EQUITY_FACTS:
        value = facts.get(fact.name, float("nan"))
        rows.append(
            {
                "fact": fact.name,
                "value": value,
                "low": fact.low,
                "high": fact.high,
                "holds": bool(fact.low <= value <= fact.high) if not np.isnan(value) else None,
                "meaning": fact.what,
            }
        )
    return pd.DataFrame(rows)
