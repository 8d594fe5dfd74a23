"""Validation of raw bars: every problem found is counted and reported; what happens is policy.

Row problems (one bar): duplicate bars, missing values, non-positive prices (real feeds have
rows with open = 0), OHLC violations, stale prices (the same close `stale_days` bars in a
row: the repeats), and jumps, which are explained where they can be: a `bad_tick` is a jump
that the next bar undoes (one wrong price), a `split_like` jump sits at a split ratio and
stays (an unadjusted split), any other is an `extreme_move` (real news, usually). Gaps longer
than `max_gap_days` weekdays between the bars the feed delivered are halts or holes in it.

Symbol problems: `partial_history` (the symbol starts after the data's first date or stops
before its last: its missing days are absent, never filled), `close_only` (most bars have
open = high = low = close) and `constant_volume`.

Each kind has a policy from config (`conf/quality/`): `report` (keep), `drop_row` (row
problems only), `drop_symbol`, or `fail`. The checks run in order on what the earlier ones
kept, so a dropped bad tick is not also a gap's cause. Everything is vectorized: validation
stays a small part of prepare at the seed's 1,000 symbols.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextday.data.schema import PRICE_COLUMNS, RawMarket
from nextday.pages import markdown

ROW_KINDS = (
    "duplicate",
    "missing_value",
    "non_positive_price",
    "ohlc_violation",
    "stale_price",
    "bad_tick",
    "split_like",
    "extreme_move",
    "gap",
)
SYMBOL_KINDS = ("partial_history", "close_only", "constant_volume")
KINDS = (*ROW_KINDS, *SYMBOL_KINDS)
ACTIONS = ("report", "drop_row", "drop_symbol", "fail")
EXAMPLES_PER_KIND = 20
PROBLEM_COLUMNS = ["kind", "symbol", "ts", "detail", "action"]


class DataQualityError(ValueError):
    """Raw data broke a rule whose policy is `fail`; the message names the rows."""


@dataclass
class QualityReport:
    problems: pd.DataFrame  # kind, symbol, ts, detail, action (every problem found)
    by_symbol: pd.DataFrame  # per symbol: rows in, rows out, count of each kind
    dropped_symbols: list[str]
    rows_in: int
    rows_out: int
    # where every row that did not make it went: kind (drop_row) or the symbol's fate
    dropped_rows: dict[str, int]

    def counts(self) -> dict[str, int]:
        found = self.problems["kind"].value_counts()
        return {kind: int(found.get(kind, 0)) for kind in KINDS}

    def to_markdown(self) -> str:
        lines = ["# Data quality", ""]
        lines.append(
            f"Rows in: {self.rows_in:,}; rows kept: {self.rows_out:,}; "
            f"symbols dropped: {len(self.dropped_symbols)}."
        )
        lines += ["", "| problem | found | action |", "|---|---:|---|"]
        actions = self.problems.groupby("kind")["action"].first() if len(self.problems) else {}
        for kind, count in self.counts().items():
            lines.append(f"| {kind} | {count:,} | {actions.get(kind, '-') if count else '-'} |")
        lines += ["", "## Where the dropped rows went", ""]
        if self.dropped_rows:
            lines += ["| reason | rows |", "|---|---:|"]
            lines += [f"| {reason} | {n:,} |" for reason, n in self.dropped_rows.items()]
        else:
            lines.append("No row was dropped.")
        partial = self.problems[self.problems["kind"] == "partial_history"]
        if len(partial):
            lines += [
                "",
                f"{partial['symbol'].nunique()} symbols start after the data's first date or "
                "stop before its last: their missing days are absent, never filled.",
            ]
        if self.dropped_symbols:
            lines += ["", "Dropped symbols: " + ", ".join(self.dropped_symbols)]
        if len(self.problems):
            lines += ["", f"## Examples (up to {EXAMPLES_PER_KIND} per kind)", ""]
            lines += ["| problem | symbol | date | detail | action |", "|---|---|---|---|---|"]
            examples = self.problems.groupby("kind", sort=False).head(EXAMPLES_PER_KIND)
            for row in examples.itertuples(index=False):
                day = pd.Timestamp(row.ts).date() if pd.notna(row.ts) else "-"
                lines.append(f"| {row.kind} | {row.symbol} | {day} | {row.detail} | {row.action} |")
        flagged = self.by_symbol[self.by_symbol[list(KINDS)].sum(axis=1) > 0]
        if len(flagged):
            lines += ["", "## Symbols with problems", "", markdown.table(flagged)]
        return "\n".join(lines) + "\n"


def check_policy(cfg) -> dict[str, str]:
    """Each kind's action from `cfg.policy`, every bad entry named."""
    policy = {kind: str(cfg.policy.get(kind, "report")) for kind in KINDS}
    problems = []
    for kind, action in policy.items():
        if action not in ACTIONS:
            problems.append(f"quality.policy.{kind}={action!r}: expected one of {ACTIONS}")
        elif kind in SYMBOL_KINDS and action == "drop_row":
            problems.append(
                f"quality.policy.{kind}=drop_row: {kind} is a problem of a whole symbol; "
                "use report, drop_symbol or fail"
            )
    unknown = sorted(set(cfg.policy) - set(KINDS))
    if unknown:
        problems.append(f"quality.policy has unknown kinds {unknown}: the kinds are {KINDS}")
    if problems:
        raise ValueError("; ".join(problems))
    return policy


class _Findings:
    """Problems found so far, with the rows each policy drops."""

    def __init__(self, bars: pd.DataFrame, policy: dict[str, str]):
        self.bars = bars
        self.policy = policy
        self.symbol = bars["symbol"].to_numpy()
        self.ts = bars["ts"].to_numpy()
        self.dropped_by = np.full(len(bars), "", dtype=object)  # the kind that dropped a row
        self.frames: list[pd.DataFrame] = []

    @property
    def kept(self) -> np.ndarray:
        return self.dropped_by == ""

    def record(self, kind: str, rows: np.ndarray, details) -> None:
        """`rows`: positions of the flagged bars; `details`: a string or one per row."""
        if len(rows) == 0:
            return
        details = [details] * len(rows) if isinstance(details, str) else list(details)
        self.frames.append(
            pd.DataFrame(
                {
                    "kind": kind,
                    "symbol": self.symbol[rows],
                    "ts": self.ts[rows],
                    "detail": details,
                    "action": self.policy[kind],
                }
            )
        )
        if self.policy[kind] == "drop_row":
            fresh = rows[self.dropped_by[rows] == ""]
            self.dropped_by[fresh] = kind

    def problems(self) -> pd.DataFrame:
        if not self.frames:
            return pd.DataFrame(columns=PROBLEM_COLUMNS)
        return pd.concat(self.frames, ignore_index=True)


def validate(market: RawMarket, cfg) -> tuple[RawMarket, QualityReport]:
    """Check `market.ohlcv`, apply the policies of `cfg` (the `quality` group), report all."""
    policy = check_policy(cfg)
    bars = market.ohlcv.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    found = _Findings(bars, policy)
    _row_checks(bars, found)
    _series_checks(bars, found, cfg, market.earnings)
    _symbol_checks(bars, found, cfg)

    problems = found.problems()
    failing = problems[problems["action"] == "fail"]
    if len(failing):
        raise DataQualityError(_failure_message(failing, market.source))

    drop_symbols = set(problems.loc[problems["action"] == "drop_symbol", "symbol"])
    in_dropped_symbol = bars["symbol"].isin(drop_symbols).to_numpy()
    kept = found.kept & ~in_dropped_symbol
    rows_per_symbol = pd.Series(bars["symbol"].to_numpy()[kept]).value_counts()
    too_short = set(rows_per_symbol[rows_per_symbol < int(cfg.min_rows_per_symbol)].index)
    too_short |= set(bars["symbol"].unique()) - set(rows_per_symbol.index) - drop_symbols
    in_short_symbol = bars["symbol"].isin(too_short).to_numpy() & ~in_dropped_symbol
    clean = bars[kept & ~in_short_symbol].reset_index(drop=True)
    if clean.empty:
        raise DataQualityError(
            f"no usable bars left in the {market.source} data after validation "
            f"({len(bars):,} rows in; every symbol was dropped or had fewer than "
            f"{cfg.min_rows_per_symbol} clean rows)"
        )

    dropped_rows = {
        f"drop_row: {kind}": int(n)
        for kind, n in pd.Series(found.dropped_by[~in_dropped_symbol & ~in_short_symbol])
        .value_counts()
        .items()
        if kind
    }
    if in_dropped_symbol.any():
        dropped_rows["drop_symbol: every bar of the symbol"] = int(in_dropped_symbol.sum())
    if in_short_symbol.any():
        dropped_rows[f"symbol with fewer than {cfg.min_rows_per_symbol} clean rows"] = int(
            in_short_symbol.sum()
        )
    earnings = market.earnings[market.earnings["symbol"].isin(clean["symbol"].unique())]
    earnings = earnings.drop_duplicates(["symbol", "ts"], keep="first").reset_index(drop=True)
    validated = RawMarket(
        ohlcv=clean,
        earnings=earnings,
        source=market.source,
        truth=market.truth,
        regimes=market.regimes,
        symbols=market.symbols,
        notes=list(market.notes),
    )
    report = QualityReport(
        problems=problems,
        by_symbol=_by_symbol(bars, clean, problems),
        dropped_symbols=sorted(drop_symbols | too_short),
        rows_in=len(bars),
        rows_out=len(clean),
        dropped_rows=dropped_rows,
    )
    return validated, report


def _row_checks(bars: pd.DataFrame, found: _Findings) -> None:
    """Problems that a bar has on its own."""
    duplicate = np.flatnonzero(bars.duplicated(["symbol", "ts"]).to_numpy())
    found.record("duplicate", duplicate, "same symbol and date again")

    columns = [*PRICE_COLUMNS, "volume"]
    values = bars[columns].to_numpy(dtype=np.float64)
    missing = np.isnan(values)
    rows = np.flatnonzero(missing.any(axis=1))
    found.record("missing_value", rows, _named_columns(columns, missing[rows], "missing "))

    prices = values[:, :4]
    non_positive = prices <= 0  # NaN compares False
    rows = np.flatnonzero(non_positive.any(axis=1))
    details = [
        ", ".join(
            f"{c}={v:.4g}" for c, v, bad in zip(PRICE_COLUMNS, row, flags, strict=True) if bad
        )
        for row, flags in zip(prices[rows], non_positive[rows], strict=True)
    ]
    found.record("non_positive_price", rows, details)

    open_, high, low, close, volume = values.T
    tolerance = 1e-9 * np.abs(high)
    with np.errstate(invalid="ignore"):
        violation = (
            (low > high + tolerance)
            | (open_ > high + tolerance)
            | (open_ < low - tolerance)
            | (close > high + tolerance)
            | (close < low - tolerance)
            | (volume < 0)
        )
    violation &= ~non_positive.any(axis=1) & ~missing.any(axis=1)
    rows = np.flatnonzero(violation)
    found.record(
        "ohlc_violation",
        rows,
        [f"o={o:.4g} h={h:.4g} l={lo:.4g} c={c:.4g} v={v:.4g}" for o, h, lo, c, v in values[rows]],
    )


def _named_columns(columns: list[str], flags: np.ndarray, prefix: str) -> list[str]:
    return [
        prefix + ", ".join(c for c, bad in zip(columns, row, strict=True) if bad) for row in flags
    ]


def _previous_kept(symbol: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """For each kept bar, the position of the previous kept bar of its symbol (-1: none)."""
    positions = np.flatnonzero(kept)
    previous = np.full(len(symbol), -1)
    if len(positions) > 1:
        same = symbol[positions[1:]] == symbol[positions[:-1]]
        previous[positions[1:][same]] = positions[:-1][same]
    return previous


def _series_checks(bars: pd.DataFrame, found: _Findings, cfg, earnings: pd.DataFrame) -> None:
    """Problems seen between consecutive bars of a symbol, on the bars kept so far. A jump
    over an earnings report (the close before it is the report's session date) is news,
    never a split, whatever its ratio."""
    symbol, close = found.symbol, bars["close"].to_numpy(dtype=np.float64)

    # stale prices: runs of equal closes; the repeats after the first bar of a long run
    previous = _previous_kept(symbol, found.kept)
    has_previous = previous >= 0
    repeat = has_previous & (close == close[np.maximum(previous, 0)])
    kept_rows = np.flatnonzero(found.kept)
    run_id = np.cumsum(~repeat[kept_rows])  # a new run at every bar that is not a repeat
    run_length = np.bincount(run_id)[run_id]
    in_stale_run = repeat[kept_rows] & (run_length >= int(cfg.stale_days))
    found.record(
        "stale_price",
        kept_rows[in_stale_run],
        [
            f"close {close[i]:.6g} unchanged for {n} bars"
            for i, n in zip(kept_rows[in_stale_run], run_length[in_stale_run], strict=True)
        ],
    )

    # jumps, explained where possible
    jumps = cfg.jumps
    previous = _previous_kept(symbol, found.kept)
    rows = np.flatnonzero(previous >= 0)
    step = np.log(close[rows] / close[previous[rows]])
    candidate = np.abs(step) > np.log1p(float(jumps.threshold))
    next_of = np.full(len(bars), -1)
    next_of[previous[rows]] = rows
    jump_rows, jump_steps = rows[candidate], step[candidate]
    following = next_of[jump_rows]
    has_next = following >= 0
    next_step = np.where(has_next, np.log(close[np.maximum(following, 0)] / close[jump_rows]), 0.0)
    undone = (
        has_next
        & (np.sign(next_step) == -np.sign(jump_steps))
        & (np.abs(next_step) >= float(jumps.reverted_share) * np.abs(jump_steps))
    )
    # a forward split divides the price by its ratio, a reverse split multiplies it; a rise
    # of 1.5x is news more often than a reverse 2:3 split, so direction counts
    ratio = np.exp(np.abs(jump_steps))
    tolerance = float(jumps.split_tolerance)

    def near(ratios) -> np.ndarray:
        wanted = np.array([float(r) for r in ratios])
        return (np.abs(ratio[:, None] / wanted[None, :] - 1.0) <= tolerance).any(axis=1)

    near_split = np.where(
        jump_steps < 0, near(jumps.split_ratios), near(jumps.reverse_split_ratios)
    )
    if len(jump_rows) and len(earnings):
        reports = pd.MultiIndex.from_arrays(
            [earnings["symbol"], pd.to_datetime(earnings["session_date"]).dt.normalize()]
        )
        before = previous[jump_rows]
        over_report = pd.MultiIndex.from_arrays(
            [symbol[before], pd.to_datetime(bars["ts"].to_numpy()[before]).normalize()]
        ).isin(reports)
        near_split &= ~over_report
    moves = np.expm1(jump_steps)
    # the bar that undoes a bad tick is the tick's other half, not a problem of its own
    undoing = np.isin(jump_rows, following[undone])
    undone &= ~undoing
    near_split &= ~undoing
    for kind, mask, text in (
        ("bad_tick", undone, "close-to-close {:+.1%}, undone by the next bar"),
        ("split_like", ~undone & near_split, "close-to-close {:+.1%}: a split ratio, not undone"),
        ("extreme_move", ~undone & ~near_split & ~undoing, "close-to-close {:+.1%}"),
    ):
        found.record(kind, jump_rows[mask], [text.format(m) for m in moves[mask]])

    # gaps: weekdays without a bar in the feed (the bars a policy dropped are counted there,
    # not again as a gap)
    previous = _previous_kept(symbol, found.dropped_by != "duplicate")
    rows = np.flatnonzero(previous >= 0)
    days = bars["ts"].to_numpy().astype("datetime64[D]")
    missing_days = np.busday_count(days[previous[rows]], days[rows]) - 1
    long_gap = missing_days > int(cfg.max_gap_days)
    found.record(
        "gap", rows[long_gap], [f"{d} weekdays without a bar" for d in missing_days[long_gap]]
    )


def _symbol_checks(bars: pd.DataFrame, found: _Findings, cfg) -> None:
    """Problems of a symbol's whole history (one problem row per symbol)."""
    kept = bars[found.kept]
    if kept.empty:
        return
    grouped = kept.groupby("symbol", sort=True)
    first, last = grouped["ts"].min(), grouped["ts"].max()
    data_first, data_last = kept["ts"].min(), kept["ts"].max()
    slack = int(cfg.partial_history_days)
    day = "datetime64[D]"
    late = np.busday_count(np.datetime64(data_first, "D"), first.to_numpy().astype(day)) > slack
    early = np.busday_count(last.to_numpy().astype(day), np.datetime64(data_last, "D")) > slack
    # bars is reset_index'ed: a kept bar's index label is its position
    first_row = grouped.head(1)
    first_position = pd.Series(first_row.index.to_numpy(), index=first_row["symbol"].to_numpy())
    details = []
    for symbol, is_late, is_early in zip(first.index, late, early, strict=True):
        parts = []
        if is_late:
            parts.append(f"starts {first[symbol].date()} (the data start {data_first.date()})")
        if is_early:
            parts.append(f"stops {last[symbol].date()} (the data end {data_last.date()})")
        if parts:
            details.append("; ".join(parts))
    partial = first.index[late | early]
    found.record("partial_history", first_position[partial].to_numpy(), details)

    flat = (
        (kept["open"] == kept["high"])
        & (kept["high"] == kept["low"])
        & (kept["low"] == kept["close"])
    )
    flat_share = flat.groupby(kept["symbol"]).mean()
    close_only = flat_share[flat_share >= float(cfg.close_only_share)]
    found.record(
        "close_only",
        first_position[close_only.index].to_numpy(),
        [f"{s:.0%} of bars have open = high = low = close" for s in close_only],
    )
    spread = grouped["volume"].agg(["min", "max"])
    constant = spread[spread["min"] == spread["max"]]
    found.record(
        "constant_volume",
        first_position[constant.index].to_numpy(),
        [f"volume {v:.6g} on every bar" for v in constant["min"]],
    )


def _failure_message(failing: pd.DataFrame, source: str) -> str:
    parts = []
    for kind, rows in failing.groupby("kind", sort=False):
        examples = "; ".join(
            f"{r.symbol} {pd.Timestamp(r.ts).date()} ({r.detail})"
            for r in rows.head(3).itertuples()
        )
        parts.append(f"{len(rows)} {kind} problem(s), e.g. {examples}")
    return (
        f"{source} data failed validation (policy 'fail'): "
        + "; ".join(parts)
        + ". Fix the data or set quality.policy.<problem> to drop_row/drop_symbol/report."
    )


def _by_symbol(bars: pd.DataFrame, clean: pd.DataFrame, problems: pd.DataFrame) -> pd.DataFrame:
    table = pd.DataFrame({"rows_in": bars.groupby("symbol").size()})
    table["rows_out"] = clean.groupby("symbol").size().reindex(table.index).fillna(0).astype(int)
    counts = pd.crosstab(problems["symbol"], problems["kind"]) if len(problems) else None
    for kind in KINDS:
        if counts is not None and kind in counts:
            table[kind] = counts[kind].reindex(table.index).fillna(0).astype(int)
        else:
            table[kind] = 0
    return table.reset_index()
