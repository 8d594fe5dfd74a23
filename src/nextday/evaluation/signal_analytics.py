"""Signal analytics as alphalens' tear sheet reads a factor: IC decay, quantile returns,
monthly IC, IC by group, group-neutral IC and rank autocorrelation.

Method (alphalens, Quantopian 2016-2020, as the reference):
- Forward returns over h = 1, 2, 5, 10 trading days, compounded from the daily labels
  (`forward_returns`). Horizons longer than one day overlap: the 5-day return from day t and
  from day t+1 share four days, so consecutive daily ICs at h > 1 are correlated. The IC's
  t statistic therefore uses a Newey-West (1987) standard error with Bartlett weights and h - 1
  lags (h = 1: the plain standard error). The Bartlett weights under-correct an MA(h - 1) a
  little: without any signal the t at h = 5 has a spread of about 1.2 instead of 1 (the plain
  t's would be about 2.2).
- IC: the mean over dates of the cross-sectional Spearman rank correlation between the signal
  and the forward return (`ic`), and of the Pearson correlation (`linear_ic`); ICIR = mean /
  standard deviation of the daily IC.
- Quantiles: each day's names are sorted by signal into n equal-count buckets (pandas' qcut
  of the day's ranks, ties broken by symbol order: alphalens' quantize_factor with
  quantiles=n; the top and bottom buckets hold as many names), and each bucket's mean 1-day
  forward return is averaged over days (raw, not demeaned: the spread is the same either way).
- Rank autocorrelation (alphalens' factor_rank_autocorrelation): the Spearman correlation of
  the signal at t and t-1 over the names present on both days, averaged over dates.
- Groups (e.g. sectors): the IC within each group, and the group-neutral IC, where each date's
  group means are removed from the signal and from the forward return before the rank IC
  (alphalens' group_neutral demeans the returns; demeaning the signal too keeps a pure group
  bet from scoring: a signal constant within every group leaves nothing to rank, NaN). Both at
  h = 1.

Only dates with at least `evaluation.metrics.min_symbols()` finite (signal, return) pairs count
(within a group: that many names of the group), as everywhere in nextday. A row with a NaN
signal or forward return drops out of that horizon only.

The work is done on a date x symbol panel with one rank per row per statistic, so that the
backtest can afford it for every signal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from nextday.evaluation.metrics import min_symbols

HORIZONS = (1, 2, 5, 10)
_FORWARD = re.compile(r"fwd_(\d+)")


def forward_column(horizon: int) -> str:
    """The column of `forward_returns` holding the `horizon`-day return (fwd_5)."""
    return f"fwd_{horizon}"


def calendar_positions(dates, calendar=None) -> np.ndarray:
    """Each date's index in the trading `calendar` (sorted dates; default: the dates given),
    so that "k rows later" can be checked to be "k trading days later": a dataset drops the
    embargo days between its segments and rows whose features are incomplete."""
    days = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates)))
    known = pd.DatetimeIndex(np.unique(days if calendar is None else pd.to_datetime(calendar)))
    found = known.get_indexer(days)
    return np.where(found >= 0, found, -(10**9)).astype(np.int64)  # off the calendar: no match


def forward_returns(dataset: pd.DataFrame, horizons=HORIZONS, calendar=None) -> pd.DataFrame:
    """Forward returns close t -> close t+h for each h in `horizons`, by compounding the
    symbol's next h labels.

    `dataset` has symbol, date and label (the return close t -> close t+1), in any row order.
    Returns symbol, date and fwd_{h} in `dataset`'s row order and index; NaN where the symbol's
    data end before t+h, a label in the window is NaN, or a row of the window is missing (the
    row k further down must be k days later in the trading `calendar`: the market's dates, by
    default the dataset's own). fwd_1 equals label.
    """
    horizons = sorted({int(h) for h in horizons})
    if not horizons or horizons[0] < 1:
        raise ValueError(f"forward return horizons must be positive, got {horizons}")
    symbol = pd.factorize(dataset["symbol"])[0]
    date = pd.factorize(dataset["date"], sort=True)[0]
    order = np.lexsort((date, symbol))
    label = dataset["label"].to_numpy(np.float64)[order]
    position = calendar_positions(dataset["date"], calendar)[order]
    symbol, growth = symbol[order], 1.0 + label
    out = pd.DataFrame({"symbol": dataset["symbol"], "date": dataset["date"]})
    compounded = growth.copy()
    for h in range(1, horizons[-1] + 1):
        if h > 1:  # the label h-1 rows further down the same symbol
            k = h - 1
            following = np.full(len(growth), np.nan)
            next_day = (symbol[k:] == symbol[:-k]) & (position[k:] == position[:-k] + k)
            following[:-k] = np.where(next_day, growth[k:], np.nan)
            compounded = compounded * following
        if h in horizons:
            column = np.empty(len(growth))
            column[order] = label if h == 1 else compounded - 1.0
            out[forward_column(h)] = column
    return out


@dataclass(frozen=True, eq=False)
class SignalAnalytics:
    """One signal's analytics (see the module docstring for the methods)."""

    ic: pd.DataFrame  # index horizon: ic, linear_ic, icir, t_stat, days
    quantiles: pd.DataFrame  # index quantile 1..n (1 = lowest signal): mean, se, days
    spread: float  # top minus bottom quantile: mean over days of the daily difference
    spread_se: float  # std of the daily differences / sqrt(days)
    daily_ic: pd.Series  # rank IC at horizon 1, by date
    monthly_ic: pd.DataFrame  # mean daily rank IC (h=1): index year, columns month 1..12
    rank_autocorr: float  # mean Spearman correlation of the signal at t and t-1
    groups: pd.DataFrame | None  # index group: ic (mean within-group rank IC, h=1), days
    group_neutral_ic: float  # rank IC after removing group means; NaN without groups

    def metrics(self) -> dict[str, float]:
        """ic_h{h} (rank IC) and linear_ic_h{h} for every horizon, icir (of the next-day rank
        IC), spread_q{n}_q1 and its _se, rank_autocorr, and group_neutral_ic when there are
        groups; the caller prefixes them (bt_ic_h1 for the model)."""
        out = {f"ic_h{h}": float(row["ic"]) for h, row in self.ic.iterrows()}
        if 1 in self.ic.index:
            out["icir"] = float(self.ic.loc[1, "icir"])
        out.update({f"linear_ic_h{h}": float(row["linear_ic"]) for h, row in self.ic.iterrows()})
        spread = f"spread_q{len(self.quantiles)}_q1"
        out[spread] = self.spread
        out[f"{spread}_se"] = self.spread_se
        out["rank_autocorr"] = self.rank_autocorr
        if self.groups is not None:
            out["group_neutral_ic"] = self.group_neutral_ic
        return out


@dataclass(frozen=True, eq=False)
class _Panel:
    """Where each input row sits in the date x symbol panel (dates sorted)."""

    row: np.ndarray
    column: np.ndarray
    dates: pd.Index
    width: int

    @classmethod
    def of(cls, symbols, dates) -> _Panel:
        column, names = pd.factorize(np.asarray(symbols), sort=True)
        row, days = pd.factorize(np.asarray(dates), sort=True)
        cells = row.astype(np.int64) * len(names) + column
        if len(cells) and np.bincount(cells).max() > 1:
            raise ValueError("signal analytics expect one row per (symbol, date); got repeats")
        return cls(row, column, pd.Index(days, name="date"), len(names))

    def spread(self, values) -> np.ndarray:
        out = np.full((len(self.dates), self.width), np.nan)
        out[self.row, self.column] = values
        return out


@dataclass(frozen=True, eq=False)
class _Pairs:
    """The finite (signal, forward return) pairs of one horizon and their ranks per date."""

    x: np.ndarray
    y: np.ndarray
    valid: np.ndarray
    rank_x: np.ndarray
    rank_y: np.ndarray


def _rank(values: np.ndarray, mask: np.ndarray, method: str = "average") -> np.ndarray:
    """Ranks (1 = lowest) of `values` where `mask`, within each row (date); NaN elsewhere."""
    frame = pd.DataFrame(np.where(mask, values, np.nan))
    return frame.rank(axis=1, method=method).to_numpy()


def _rerank(values, ranks, base, mask) -> np.ndarray:
    """`_rank(values, mask)` from `ranks` already taken over `base` (mask within base): only
    the rows where the masks differ are ranked again."""
    out = np.where(mask, ranks, np.nan)
    rows = np.flatnonzero((base != mask).any(axis=1))
    if rows.size:
        out[rows] = _rank(values[rows], mask[rows])
    return out


def _centred(values, cells, n_cells) -> tuple[np.ndarray, np.ndarray]:
    """`values` minus their cell's mean, and the cell sizes."""
    count = np.bincount(cells, minlength=n_cells)
    total = np.bincount(cells, values, minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        return values - (total / count)[cells], count


def _cell_corr(x, y, cells, n_cells) -> np.ndarray:
    """Pearson correlation of x and y within each cell; NaN where the cell has fewer than
    `min_symbols()` pairs or a constant side."""
    cx, count = _centred(x, cells, n_cells)
    cy, _ = _centred(y, cells, n_cells)
    sxx = np.bincount(cells, cx * cx, minlength=n_cells)
    syy = np.bincount(cells, cy * cy, minlength=n_cells)
    sxy = np.bincount(cells, cx * cy, minlength=n_cells)
    defined = (count >= min_symbols()) & (sxx > 0) & (syy > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, sxy / np.sqrt(sxx * syy), np.nan)


def _row_corr(x, y, mask) -> np.ndarray:
    """Pearson correlation per row (date) of the panels x and y over `mask`; NaN where the
    row has fewer than `min_symbols()` pairs or a constant side (`_cell_corr` by rows)."""
    count = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = np.where(mask, x - (np.where(mask, x, 0.0).sum(axis=1) / count)[:, None], 0.0)
        cy = np.where(mask, y - (np.where(mask, y, 0.0).sum(axis=1) / count)[:, None], 0.0)
        sxx, syy = (cx * cx).sum(axis=1), (cy * cy).sum(axis=1)
        corr = (cx * cy).sum(axis=1) / np.sqrt(sxx * syy)
    return np.where((count >= min_symbols()) & (sxx > 0) & (syy > 0), corr, np.nan)


def _mean(values) -> float:
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else float("nan")


def _standard_error(values) -> float:
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.std(ddof=1) / np.sqrt(finite.size)) if finite.size > 1 else float("nan")


def newey_west_t(series, lags: int) -> float:
    """t statistic of the mean of `series` with the Newey-West (1987) long-run variance
    (Bartlett weights 1 - l / (lags + 1)) and the n / (n - 1) correction, so that lags = 0
    gives the plain mean / (std / sqrt(n))."""
    values = np.asarray(series, dtype=float)
    n = len(values)
    if n < 2:
        return float("nan")
    error = values - values.mean()
    variance = error @ error / n
    for lag in range(1, min(lags, n - 1) + 1):
        variance += 2.0 * (1.0 - lag / (lags + 1)) * (error[lag:] @ error[:-lag]) / n
    variance *= n / (n - 1)
    return float(values.mean() / np.sqrt(variance / n)) if variance > 0 else float("nan")


def _pairs(x, finite_x, rank_x, y, rank_y) -> _Pairs:
    """The pairs of a signal (ranked over its finite entries) and a forward return (ranked
    over its own): both ranked again only on dates where the other side has gaps."""
    finite_y = np.isfinite(y)
    valid = finite_x & finite_y
    return _Pairs(
        x, y, valid, _rerank(x, rank_x, finite_x, valid), _rerank(y, rank_y, finite_y, valid)
    )


def _horizon_ic(pairs: _Pairs, horizon: int) -> tuple[np.ndarray, dict[str, float]]:
    """The daily rank IC of one horizon and its row of the IC table."""
    rank_ic = _row_corr(pairs.rank_x, pairs.rank_y, pairs.valid)
    linear = _row_corr(pairs.x, pairs.y, pairs.valid)
    linear = np.where(np.isnan(rank_ic), np.nan, linear)  # a constant side: no IC either way
    days = rank_ic[np.isfinite(rank_ic)]
    icir = days.mean() / days.std(ddof=1) if days.size > 1 and days.std() > 0 else np.nan
    row = {
        "ic": _mean(days),
        "linear_ic": _mean(linear),
        "icir": float(icir),
        "t_stat": newey_west_t(days, horizon - 1),
        "days": float(days.size),
    }
    return rank_ic, row


def _quantile_returns(pairs: _Pairs, n: int) -> tuple[pd.DataFrame, float, float]:
    """Mean 1-day forward return by signal quantile, and the top-minus-bottom spread."""
    wide = pairs.valid & (pairs.valid.sum(axis=1) >= min_symbols())[:, None]
    size = wide.sum(axis=1)
    # a date without ties keeps its average ranks: ties lower the sum of squared ranks below
    # n (n + 1) (2n + 1) / 6 (exact in floating point: the ranks are halves)
    squares = (np.where(wide, pairs.rank_x, 0.0) ** 2).sum(axis=1)
    tied = squares != size * (size + 1.0) * (2.0 * size + 1.0) / 6.0
    first = np.where(wide, pairs.rank_x, np.nan)
    first[tied] = _rank(pairs.x[tied], wide[tied], method="first")
    rows = np.nonzero(wide)[0]
    # qcut's edges: position p = rank - 1 falls in bucket j (0-based) when
    # (size - 1) j / n < p <= (size - 1) (j + 1) / n
    position = (first[wide] - 1.0) * n / (size[rows] - 1.0)
    cells = rows * n + np.maximum(np.ceil(position) - 1.0, 0.0).astype(np.int64)
    n_cells = len(wide) * n
    count = np.bincount(cells, minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        daily = (np.bincount(cells, pairs.y[wide], minlength=n_cells) / count).reshape(-1, n)
    table = pd.DataFrame(
        {
            "mean": [_mean(daily[:, q]) for q in range(n)],
            "se": [_standard_error(daily[:, q]) for q in range(n)],
            "days": np.isfinite(daily).sum(axis=0).astype(float),
        },
        index=pd.RangeIndex(1, n + 1, name="quantile"),
    )
    difference = daily[:, -1] - daily[:, 0]
    return table, _mean(difference), _standard_error(difference)


def _rank_autocorr(x, finite_x, rank_x) -> float:
    """Mean over dates of the Spearman correlation of the signal at t and t-1 (same names)."""
    if len(x) < 2:
        return float("nan")
    common = finite_x[1:] & finite_x[:-1]
    now = _rerank(x[1:], rank_x[1:], finite_x[1:], common)
    before = _rerank(x[:-1], rank_x[:-1], finite_x[:-1], common)
    return _mean(_row_corr(now, before, common))


def _group_ic(pairs: _Pairs, group: np.ndarray, names: pd.Index) -> tuple[pd.DataFrame, float]:
    """The rank IC within each group (h=1) and the group-neutral rank IC.

    Within-group ranks come from one rank per row of (group, day's rank) keys, less the count
    of the row's names in lower groups."""
    valid = pairs.valid & (group >= 0)
    n_groups, height, width = len(names), len(group), group.shape[1]
    rows = np.nonzero(valid)[0]
    cells = rows * n_groups + group[valid]
    n_cells = height * n_groups
    count = np.bincount(cells, minlength=n_cells)
    below = (np.cumsum(count.reshape(height, n_groups), axis=1).ravel() - count)[cells]
    key = group * (width + 1.0)
    within_x = _rank(key + pairs.rank_x, valid)[valid] - below
    within_y = _rank(key + pairs.rank_y, valid)[valid] - below
    by_group = _cell_corr(within_x, within_y, cells, n_cells).reshape(height, n_groups)
    table = pd.DataFrame(
        {
            "ic": [_mean(by_group[:, g]) for g in range(n_groups)],
            "days": np.isfinite(by_group).sum(axis=0).astype(float),
        },
        index=pd.Index(names, name="group"),
    )
    # demeaned by (date, group); a group whose signal is constant that day is exactly 0 (its
    # within-group ranks are all tied), not the rounding residue of its mean
    centred_rank, _ = _centred(within_x, cells, n_cells)
    flat = np.bincount(cells, centred_rank**2, minlength=n_cells)[cells] == 0
    signal, _ = _centred(pairs.x[valid], cells, n_cells)
    outcome, _ = _centred(pairs.y[valid], cells, n_cells)
    neutral_x, neutral_y = np.full(valid.shape, np.nan), np.full(valid.shape, np.nan)
    neutral_x[valid], neutral_y[valid] = np.where(flat, 0.0, signal), outcome
    neutral = _row_corr(_rank(neutral_x, valid), _rank(neutral_y, valid), valid)
    return table, _mean(neutral)


def _monthly(daily: pd.Series) -> pd.DataFrame:
    when = pd.DatetimeIndex(daily.index)
    table = daily.groupby([when.year.rename("year"), when.month.rename("month")]).mean()
    return table.unstack("month").reindex(columns=pd.RangeIndex(1, 13, name="month"))


def _horizons(forward: pd.DataFrame) -> list[int]:
    horizons = sorted(
        int(match.group(1)) for c in forward.columns if (match := _FORWARD.fullmatch(str(c)))
    )
    if 1 not in horizons:
        raise ValueError(
            f"forward has columns {list(forward.columns)}; expected fwd_1 (and fwd_h for the "
            "other horizons), as forward_returns makes them"
        )
    return horizons


@dataclass(frozen=True, eq=False)
class _Outcomes:
    """What every signal is measured against: the forward return panels by horizon, their
    ranks per date, and the groups (code panel, -1 = none, and names)."""

    panel: _Panel
    forward: dict[int, np.ndarray]
    ranks: dict[int, np.ndarray]
    group: np.ndarray | None
    names: pd.Index | None

    @classmethod
    def of(cls, symbols, dates, forward: pd.DataFrame, groups) -> _Outcomes:
        panel = _Panel.of(symbols, dates)
        panels = {
            h: panel.spread(forward[forward_column(h)].to_numpy(dtype=float))
            for h in _horizons(forward)
        }
        ranks = {h: _rank(y, np.isfinite(y)) for h, y in panels.items()}
        if groups is None:
            return cls(panel, panels, ranks, None, None)
        codes, names = pd.factorize(np.asarray(groups, dtype=object), sort=True)
        group = np.nan_to_num(panel.spread(codes.astype(float)), nan=-1.0).astype(np.int64)
        return cls(panel, panels, ranks, group, pd.Index(names))


def _analyze(signal: np.ndarray, outcomes: _Outcomes, quantiles: int) -> SignalAnalytics:
    x = outcomes.panel.spread(signal)
    finite_x = np.isfinite(x)
    rank_x = _rank(x, finite_x)
    pairs = {
        h: _pairs(x, finite_x, rank_x, y, outcomes.ranks[h]) for h, y in outcomes.forward.items()
    }
    rows, daily = {}, {}
    for h, horizon_pairs in pairs.items():
        daily[h], rows[h] = _horizon_ic(horizon_pairs, h)
    table, spread, spread_se = _quantile_returns(pairs[1], quantiles)
    daily_ic = pd.Series(daily[1], index=outcomes.panel.dates, name="ic").dropna()
    group_table, neutral = None, float("nan")
    if outcomes.group is not None and outcomes.names is not None:
        group = np.where(finite_x, outcomes.group, -1)
        group_table, neutral = _group_ic(pairs[1], group, outcomes.names)
    return SignalAnalytics(
        ic=pd.DataFrame.from_dict(rows, orient="index").rename_axis("horizon"),
        quantiles=table,
        spread=spread,
        spread_se=spread_se,
        daily_ic=daily_ic,
        monthly_ic=_monthly(daily_ic),
        rank_autocorr=_rank_autocorr(x, finite_x, rank_x),
        groups=group_table,
        group_neutral_ic=neutral,
    )


def analyze_many(
    signals: Mapping[str, ArrayLike],
    symbols,
    dates,
    forward: pd.DataFrame,
    groups=None,
    quantiles: int = 5,
) -> dict[str, SignalAnalytics]:
    """`analyze` for several signals on the same rows, sharing the panel and the forward
    returns' ranks (the backtest's model, baselines and oracle in one call)."""
    arrays = {name: np.asarray(signal, dtype=float) for name, signal in signals.items()}
    sizes = {len(symbols), len(dates), len(forward), *(len(a) for a in arrays.values())}
    if groups is not None:
        sizes.add(len(groups))
    if len(sizes) > 1:
        raise ValueError(f"signals, symbols, dates, forward and groups differ in length: {sizes}")
    if quantiles < 2:
        raise ValueError(f"quantiles must be at least 2, got {quantiles}")
    outcomes = _Outcomes.of(symbols, dates, forward, groups)
    return {name: _analyze(signal, outcomes, quantiles) for name, signal in arrays.items()}


def analyze(
    signal, symbols, dates, forward: pd.DataFrame, groups=None, quantiles: int = 5
) -> SignalAnalytics:
    """The analytics of `signal` against `forward` (see the module docstring).

    `signal`, `symbols`, `dates` and `groups` (optional, e.g. a sector per row; NaN = none)
    are aligned arrays; `forward` the matching rows of `forward_returns` (same order).
    Several signals on the same rows: `analyze_many` shares the work.
    """
    return analyze_many({"signal": signal}, symbols, dates, forward, groups, quantiles)["signal"]
