"""What trading a daily book costs: half the bid-ask spread plus square-root market impact.

Trading |dw| (a fraction of capital C) of a name on day t costs, as a fraction of capital,

    |dw| * s_t  +  |dw| * Y * sigma_t * sqrt(|dw| * C / ADV_t)

- s_t, the half-spread: `half_spread_bps` when given, else half the Corwin & Schultz (2012)
  two-day high-low estimates (negatives kept) averaged over the trailing `spread_days` and
  clipped to [`min_half_spread_bps`, `max_half_spread_bps`]. The range is a noisy gauge where
  the spread is small beside the day's volatility (Lin 2014, Finance Research Letters 11(1)):
  on liquid names the estimate scatters around a few bp with many days at the floor, and a
  given `half_spread_bps` is the steadier choice.
- Y * sigma * sqrt(Q / V), the square-root law of market impact (Almgren et al. 2005, "Direct
  estimation of equity market impact"; Toth et al. 2011, Phys. Rev. X 1, 021006; Bouchaud,
  Bonart, Donier & Gould, "Trades, Quotes and Prices", 2018, ch. 12): the price moves by
  Y sigma sqrt(Q/V) while a metaorder of Q dollars executes against a daily dollar volume V,
  sigma the daily volatility and Y of order one (0.5 to 1 in those studies' equity and futures
  data). Bought along the way, the metaorder pays on average 2/3 of that peak, so the cost
  coefficient `impact_coefficient` is about 2/3 Y: 0.5 is the value to start from (0.3 for a
  patient, 0.7 for a hurried execution). Almgren et al., who fit a 3/5 power with a temporary
  coefficient of 0.142 on Citigroup's US equity orders, price small trades lower still: 0.5
  errs on the costly side.
- sigma: the standard deviation of the trailing `vol_days` close-to-close returns; ADV: the
  mean of the trailing `adv_days` dollar volumes (close x volume).

Every estimate at date t uses bars up to t's close only. Where the data cannot tell (the
fallbacks, each stated in `Frictions.notes`): no usable high/low (close-only or flat bars, too
few days) -> `fallback_half_spread_bps`; a name without volume (NaN or 0) or with too few
days -> the day's cross-sectional median ADV (sigma alike); no volume at all -> no impact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

BPS = 1e4  # basis points in one
_KAPPA = 3.0 - 2.0 * np.sqrt(2.0)  # Corwin & Schultz's 3 - 2 sqrt(2)


@dataclass(frozen=True)
class CostModel:
    half_spread_bps: float | None  # given: every name pays it; None: estimated from the range
    fallback_half_spread_bps: float  # where the range cannot tell (close-only bars, few days)
    min_half_spread_bps: float  # floor and cap of the estimate
    max_half_spread_bps: float
    spread_days: int  # trailing days averaged by the range estimator (e.g. 21)
    adv_days: int  # trailing days of dollar volume (close x volume) for ADV (e.g. 20)
    vol_days: int  # trailing days of close-to-close returns for the daily sigma (e.g. 20)
    impact_coefficient: float  # Y in impact = Y * sigma * sqrt(traded dollars / ADV)

    def __post_init__(self):
        problems = []
        if self.half_spread_bps is not None and not self.half_spread_bps >= 0:
            problems.append(f"half_spread_bps={self.half_spread_bps} (expected >= 0 or null)")
        if not 0 <= self.min_half_spread_bps <= self.max_half_spread_bps:
            problems.append(
                f"min_half_spread_bps={self.min_half_spread_bps}, max_half_spread_bps="
                f"{self.max_half_spread_bps} (expected 0 <= min <= max)"
            )
        for name in ("fallback_half_spread_bps", "impact_coefficient"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name}={getattr(self, name)} (expected >= 0)")
        for name, least in (("spread_days", 1), ("adv_days", 1), ("vol_days", 2)):
            if getattr(self, name) < least:
                problems.append(f"{name}={getattr(self, name)} (expected at least {least})")
        if problems:
            raise ValueError(f"cost model: {'; '.join(problems)}")


def corwin_schultz(
    high: pd.DataFrame, low: pd.DataFrame, close: pd.DataFrame, negative_to_zero: bool = True
) -> pd.DataFrame:
    """Wide (date x symbol) two-day spread estimate S (the full spread, a fraction of price)
    of Corwin & Schultz (2012, J. Finance 67(2)), dated by the pair's second day.

    beta = ln(H_{t-1}/L_{t-1})^2 + ln(H_t/L_t)^2, gamma = ln(max H / min L over both days)^2,
    alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2)),
    S = 2 (e^alpha - 1) / (1 + e^alpha). As in the paper, day t's high and low are first moved
    by the overnight return (down by L_t - C_{t-1} when the low is above the previous close, up
    by C_{t-1} - H_t when the high is below it) and negative estimates are set to 0 (the paper's
    main choice; `negative_to_zero=False` keeps them, for averages that stay unbiased). NaN
    where a day of the pair lacks a positive high above its low (missing or close-only bars)."""
    high, low = high.to_numpy(dtype=float), low.to_numpy(dtype=float)
    close_ = close.to_numpy(dtype=float)
    usable = np.isfinite(high) & np.isfinite(low) & (low > 0) & (high > low)
    high, low = np.where(usable, high, np.nan), np.where(usable, low, np.nan)
    h0, l0, c0 = _lag(high), _lag(low), _lag(close_)
    c0 = np.where(c0 > 0, c0, np.nan)
    with np.errstate(invalid="ignore"):
        gap_up = np.fmax(low - c0, 0.0)  # 0 where the previous close is unknown
        gap_down = np.fmax(c0 - high, 0.0)
        h1, l1 = high - gap_up + gap_down, low - gap_up + gap_down
        beta = np.log(h0 / l0) ** 2 + np.log(h1 / l1) ** 2
        gamma = np.log(np.fmax(h0, h1) / np.fmin(l0, l1)) ** 2
        alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / _KAPPA - np.sqrt(gamma / _KAPPA)
        spread = 2.0 * np.expm1(alpha) / (1.0 + np.exp(alpha))
    if negative_to_zero:
        spread = np.maximum(spread, 0.0)
    return pd.DataFrame(spread, index=close.index, columns=close.columns)


def _lag(values: np.ndarray) -> np.ndarray:
    return np.vstack([np.full((1, values.shape[1]), np.nan), values[:-1]])


@dataclass(frozen=True, eq=False)  # frames compare by identity
class Frictions:
    """Per date and symbol, what a trade at that date's close pays (see the module docstring);
    wide frames, index date, columns symbol, everything known at that date's close."""

    half_spread: pd.DataFrame  # fraction of price (5 bp = 0.0005); never NaN
    sigma: pd.DataFrame  # daily return volatility; NaN where no name has one yet
    adv: pd.DataFrame  # average daily dollar volume; NaN where unknown (impact left out)
    notes: tuple[str, ...]  # what fell back and why

    def aligned(self, index, columns) -> Frictions:
        """The frictions reindexed to a weights frame's dates and symbols (all of which the
        bars must cover)."""
        missing = pd.Index(columns).difference(self.adv.columns)
        absent = pd.Index(index).difference(self.adv.index)
        if len(missing) or len(absent):
            raise ValueError(
                f"the weights have {len(missing)} symbol(s) (e.g. {list(missing[:3])}) and "
                f"{len(absent)} date(s) (e.g. {list(absent[:3])}) that the bars behind the "
                "frictions lack: compute the frictions from the bars of every traded name and date"
            )

        def reindexed(frame: pd.DataFrame) -> pd.DataFrame:
            return frame.reindex(index=index, columns=columns)

        return Frictions(
            reindexed(self.half_spread), reindexed(self.sigma), reindexed(self.adv), self.notes
        )


def frictions(bars: pd.DataFrame, model: CostModel, dates=None) -> Frictions:
    """From long bars (symbol, ts, open, high, low, close, volume: the store's ohlcv table;
    high, low and volume may be absent or NaN) the trailing half-spread, daily sigma and ADV at
    every date, each from bars up to that date's close. The notes count only the symbol-days
    of `dates` (the days traded; default: every date of the bars)."""
    wide = _wide(bars)
    listed = wide["close"].notna().to_numpy()  # the notes count symbol-days that have a bar
    if dates is not None:
        listed = listed & wide["close"].index.isin(pd.DatetimeIndex(dates))[:, None]
    notes: list[str] = []
    half_spread = _half_spread(wide, model, listed, notes)
    returns = wide["close"].where(wide["close"] > 0).pct_change(fill_method=None)
    sigma = returns.rolling(model.vol_days, min_periods=_least(model.vol_days, 2)).std()
    sigma = _median_fill(sigma, listed, "sigma", f"fewer than {_least(model.vol_days, 2)} "
                         f"returns in the trailing {model.vol_days} days", notes)  # fmt: skip
    dollars = wide["close"] * wide["volume"]
    dollars = dollars.where((dollars > 0) & np.isfinite(dollars))
    if dollars.notna().to_numpy().any():
        adv = dollars.rolling(model.adv_days, min_periods=_least(model.adv_days, 1)).mean()
        adv = _median_fill(adv, listed, "ADV", f"fewer than {_least(model.adv_days, 1)} days "
                           f"with volume in the trailing {model.adv_days}", notes)  # fmt: skip
    else:
        adv = dollars
        notes.append("no volume in the bars (close-only data): market impact left out")
    return Frictions(half_spread, sigma, adv, tuple(notes))


def _wide(bars: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """close, high, low and volume as date x symbol frames (NaN where a column is absent)."""
    if not {"symbol", "ts", "close"} <= set(bars.columns):
        raise ValueError(f"bars need symbol, ts and close columns, got {list(bars.columns)}")
    if bars.duplicated(["symbol", "ts"]).any():
        raise ValueError("bars repeat a (symbol, ts): deduplicate them first (the store does)")
    table = bars.reindex(columns=["symbol", "ts", "close", "high", "low", "volume"])
    table = table.astype({c: float for c in ("close", "high", "low", "volume")})
    wide = table.set_index(["ts", "symbol"]).unstack("symbol").sort_index()
    wide.index.name = "date"
    return {name: wide[name] for name in ("close", "high", "low", "volume")}


def _least(window: int, floor: int) -> int:
    """A trailing estimate needs at least half its window (and `floor`) of observations."""
    return max(floor, window // 2)


def _half_spread(wide, model: CostModel, listed: np.ndarray, notes: list[str]) -> pd.DataFrame:
    close = wide["close"]
    if model.half_spread_bps is not None:
        notes.append(f"half-spread given: {model.half_spread_bps:g} bp for every name")
        return pd.DataFrame(model.half_spread_bps / BPS, index=close.index, columns=close.columns)
    least = _least(model.spread_days, 1)
    # negative two-day estimates are kept and the average is clipped: zeroing them first (the
    # paper's choice) lifts the mean by a third to a half where the spread is small beside the
    # day's volatility (a planted 20 bp at 1% daily vol reads 31 bp; kept, 21 bp)
    two_day = corwin_schultz(wide["high"], wide["low"], close, negative_to_zero=False) / 2.0
    estimate = two_day.rolling(model.spread_days, min_periods=least).mean()
    low, high = model.min_half_spread_bps / BPS, model.max_half_spread_bps / BPS
    known = estimate.notna().to_numpy() & listed
    floor, cap = (estimate.to_numpy() <= low) & known, (estimate.to_numpy() >= high) & known
    if known.any():
        notes.append(
            f"half-spread estimated (Corwin-Schultz, {model.spread_days}-day mean) on "
            f"{known.sum()} symbol-days: at the floor {model.min_half_spread_bps:g} bp on "
            f"{floor.sum() / known.sum():.0%}, at the cap {model.max_half_spread_bps:g} bp "
            f"on {cap.sum() / known.sum():.0%}"
        )
    blind = two_day.columns[two_day.isna().all()]
    if len(blind):
        notes.append(
            f"no usable high/low (close-only or flat bars) for {len(blind)} of "
            f"{close.shape[1]} symbols (e.g. {list(blind[:3])}): half-spread "
            f"{model.fallback_half_spread_bps:g} bp (the fallback)"
        )
    early = int((~known & listed).sum() - listed[:, two_day.columns.isin(blind)].sum())
    if early:
        notes.append(
            f"half-spread {model.fallback_half_spread_bps:g} bp (the fallback) on {early} "
            f"symbol-days with fewer than {least} usable two-day estimates in the trailing "
            f"{model.spread_days} days"
        )
    return estimate.clip(low, high).fillna(model.fallback_half_spread_bps / BPS)


def _median_fill(frame, listed: np.ndarray, what: str, why: str, notes: list[str]):
    """`frame` with each unknown cell set to the day's cross-sectional median; a note counts
    the symbol-days filled (and the dates no name could fill)."""
    values = frame.to_numpy()
    unknown = np.isnan(values)
    median = frame.median(axis=1).to_numpy()  # NaN (no warning) where every name is unknown
    filled = np.where(unknown, median[:, None], values)
    moved = int((unknown & ~np.isnan(filled) & listed).sum())
    if moved:
        never = frame.columns[frame.isna().all()]
        none = f" ({len(never)} symbols have none at all, e.g. {list(never[:3])})"
        notes.append(
            f"{what}: the day's median on {moved} symbol-days with {why}{none if len(never) else ''}"
        )
    dark = int((np.isnan(median) & listed.any(axis=1)).sum())
    if dark:
        notes.append(f"{what} unknown for every name on {dark} dates ({why}): impact left out")
    return pd.DataFrame(filled, index=frame.index, columns=frame.columns)


def _cost_terms(trades: pd.DataFrame, frictions: Frictions, model: CostModel):
    """Per date and name: the spread cost |dw| s, the impact at capital 1
    |dw|^1.5 Y sigma / sqrt(ADV) (0 where ADV is unknown), and the participation at capital 1
    |dw| / ADV (NaN where unknown)."""
    aligned = frictions.aligned(trades.index, trades.columns)
    traded = np.abs(trades.to_numpy(dtype=float))
    traded = np.where(np.isfinite(traded), traded, 0.0)
    spread = traded * aligned.half_spread.to_numpy()
    per_dollar = traded / aligned.adv.to_numpy()  # NaN where ADV is unknown: no impact
    terms = model.impact_coefficient * traded * aligned.sigma.to_numpy() * np.sqrt(per_dollar)
    return spread, np.where(np.isnan(terms), 0.0, terms), per_dollar


def _impact_sums(trades: pd.DataFrame, frictions: Frictions, model: CostModel):
    """Per date: the spread cost, the impact at capital 1 (`_cost_terms` summed over names),
    and the |dw| / ADV array."""
    spread, impact, per_dollar = _cost_terms(trades, frictions, model)
    return spread.sum(axis=1), impact.sum(axis=1), per_dollar


def name_costs(
    trades: pd.DataFrame, frictions: Frictions, capital: float, model: CostModel
) -> pd.DataFrame:
    """What each name's trade costs (spread + impact, a fraction of capital) per date: the
    terms `daily_costs` adds up, for an order list."""
    if not capital > 0:
        raise ValueError(f"capital={capital}: expected a positive number of dollars")
    spread, impact, _ = _cost_terms(trades, frictions, model)
    return pd.DataFrame(
        spread + impact * np.sqrt(capital), index=trades.index, columns=trades.columns
    )


def daily_costs(
    trades: pd.DataFrame, frictions: Frictions, capital: float, model: CostModel
) -> pd.DataFrame:
    """Per date of `trades` (|weight change| per date and symbol, fractions of capital): the
    spread, impact and total cost (fractions of capital: subtract from the gross return) and
    participation, the largest traded dollars / ADV of the day (0 without a trade or ADV)."""
    if not capital > 0:
        raise ValueError(f"capital={capital}: expected a positive number of dollars")
    spread, impact, per_dollar = _impact_sums(trades, frictions, model)
    impact = impact * np.sqrt(capital)
    participation = np.where(np.isnan(per_dollar), 0.0, per_dollar).max(axis=1, initial=0.0)
    return pd.DataFrame(
        {
            "spread": spread,
            "impact": impact,
            "cost": spread + impact,
            "participation": participation * capital,
        },
        index=trades.index,
    )


def impact_by_capital(
    trades: pd.DataFrame, frictions: Frictions, capitals: Sequence[float], model: CostModel
) -> pd.DataFrame:
    """Daily cost (fraction of capital, spread + impact) of `trades` at each capital (columns,
    for a capacity curve): the spread part does not depend on capital and the impact part
    grows with sqrt(capital), so both sums are computed once."""
    capitals = [float(c) for c in capitals]
    if not all(c > 0 for c in capitals):
        raise ValueError(f"capitals={capitals}: expected positive numbers of dollars")
    spread, impact, _ = _impact_sums(trades, frictions, model)
    cost = spread[:, None] + impact[:, None] * np.sqrt(np.asarray(capitals))[None, :]
    return pd.DataFrame(cost, index=trades.index, columns=pd.Index(capitals, name="capital"))
