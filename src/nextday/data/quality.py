"""Validation of raw bars: every problem found is reported; what happens to it is policy.

Kinds of problem: duplicate bars, missing values, non-positive prices (real data has rows with
open = 0), OHLC violations (low > high, open or close outside the day's range, negative
volume), gaps longer than `max_gap_days` weekdays, and extreme close-to-close moves. Each kind
has a policy from config: `report` (keep), `drop_row`, `drop_symbol`, or `fail`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextday.data.schema import PRICE_COLUMNS, RawMarket
from nextday.reports import markdown

KINDS = (
    "duplicate",
    "missing_value",
    "non_positive_price",
    "ohlc_violation",
    "gap",
    "extreme_move",
)
ACTIONS = ("report", "drop_row", "drop_symbol", "fail")
EXAMPLES_PER_KIND = 20


class DataQualityError(ValueError):
    """Raw data broke a rule whose policy is `fail`; the message names the rows."""


@dataclass
class QualityReport:
    problems: pd.DataFrame  # kind, symbol, ts, detail, action (every problem found)
    by_symbol: pd.DataFrame  # per symbol: rows in, rows out, count of each kind
    dropped_symbols: list[str]
    rows_in: int
    rows_out: int

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


def validate(market: RawMarket, cfg) -> tuple[RawMarket, QualityReport]:
    """Check `market.ohlcv`, apply the policies of `cfg` (the `quality` group), report all."""
    policy = {kind: str(cfg.policy.get(kind, "report")) for kind in KINDS}
    for kind, action in policy.items():
        if action not in ACTIONS:
            raise ValueError(f"quality.policy.{kind}={action!r}: expected one of {ACTIONS}")
    bars = market.ohlcv.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    rows_in = len(bars)
    found: list[pd.DataFrame] = []
    drop_rows = np.zeros(len(bars), dtype=bool)

    def record(kind: str, mask: np.ndarray, detail: pd.Series | str) -> None:
        if not mask.any():
            return
        details = detail[mask] if isinstance(detail, pd.Series) else detail
        found.append(
            pd.DataFrame(
                {
                    "kind": kind,
                    "symbol": bars.loc[mask, "symbol"].to_numpy(),
                    "ts": bars.loc[mask, "ts"].to_numpy(),
                    "detail": np.asarray(details, dtype=object)
                    if not isinstance(details, str)
                    else details,
                    "action": policy[kind],
                    "row": np.flatnonzero(mask),
                }
            )
        )
        if policy[kind] == "drop_row":
            drop_rows[mask] = True

    record("duplicate", bars.duplicated(["symbol", "ts"]).to_numpy(), "same symbol and date again")
    values = bars[[*PRICE_COLUMNS, "volume"]]
    missing = values.isna()
    record(
        "missing_value",
        missing.any(axis=1).to_numpy(),
        missing.apply(lambda row: "missing " + ", ".join(row.index[row]), axis=1)
        if missing.any().any()
        else "",
    )
    prices = bars[PRICE_COLUMNS]
    non_positive = (prices <= 0).any(axis=1).to_numpy()
    record("non_positive_price", non_positive, _describe(bars, prices <= 0))
    tolerance = 1e-9 * bars["high"].abs()
    violation = (
        (bars["low"] > bars["high"] + tolerance)
        | (bars["open"] > bars["high"] + tolerance)
        | (bars["open"] < bars["low"] - tolerance)
        | (bars["close"] > bars["high"] + tolerance)
        | (bars["close"] < bars["low"] - tolerance)
        | (bars["volume"] < 0)
    ).to_numpy() & ~non_positive
    record(
        "ohlc_violation",
        violation,
        bars.apply(
            lambda r: (
                f"o={r.open:.4g} h={r.high:.4g} l={r.low:.4g} c={r.close:.4g} v={r.volume:.4g}"
            ),
            axis=1,
        )
        if violation.any()
        else "",
    )

    # gaps and moves are judged on the rows that remain
    kept = ~drop_rows
    remaining = bars[kept]
    previous_ts = remaining.groupby("symbol")["ts"].shift(1)
    gap_days = pd.Series(np.nan, index=remaining.index)
    has_previous = previous_ts.notna()
    gap_days[has_previous] = (
        np.busday_count(
            previous_ts[has_previous].to_numpy(dtype="datetime64[D]"),
            remaining.loc[has_previous, "ts"].to_numpy(dtype="datetime64[D]"),
        )
        - 1
    )
    gap = np.zeros(len(bars), dtype=bool)
    gap[np.flatnonzero(kept)] = (gap_days > float(cfg.max_gap_days)).to_numpy()
    gap_detail = pd.Series("", index=bars.index, dtype=object)
    gap_detail[remaining.index] = gap_days.map(
        lambda d: f"{d:.0f} weekdays without a bar" if d == d else ""
    )
    record("gap", gap, gap_detail)

    move = remaining["close"] / remaining.groupby("symbol")["close"].shift(1) - 1.0
    extreme = np.zeros(len(bars), dtype=bool)
    extreme[np.flatnonzero(kept)] = (move.abs() > float(cfg.extreme_move)).to_numpy()
    move_detail = pd.Series("", index=bars.index, dtype=object)
    move_detail[remaining.index] = move.map(lambda m: f"close-to-close {m:+.1%}" if m == m else "")
    record("extreme_move", extreme, move_detail)

    problems = (
        pd.concat(found, ignore_index=True)
        if found
        else pd.DataFrame(columns=["kind", "symbol", "ts", "detail", "action", "row"])
    )
    failing = problems[problems["action"] == "fail"]
    if len(failing):
        raise DataQualityError(_failure_message(failing, market.source))

    drop_symbols = set(problems.loc[problems["action"] == "drop_symbol", "symbol"])
    clean = bars[~drop_rows & ~bars["symbol"].isin(drop_symbols)]
    rows_per_symbol = clean.groupby("symbol").size()
    too_short = rows_per_symbol[rows_per_symbol < int(cfg.min_rows_per_symbol)].index
    drop_symbols |= set(too_short)
    clean = clean[~clean["symbol"].isin(drop_symbols)].reset_index(drop=True)
    if clean.empty:
        raise DataQualityError(
            f"no usable bars left in the {market.source} data after validation "
            f"({rows_in:,} rows in; every symbol was dropped or had fewer than "
            f"{cfg.min_rows_per_symbol} clean rows)"
        )

    by_symbol = _by_symbol(bars, clean, problems)
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
        problems=problems.drop(columns="row"),
        by_symbol=by_symbol,
        dropped_symbols=sorted(drop_symbols),
        rows_in=rows_in,
        rows_out=len(clean),
    )
    return validated, report


def _describe(bars: pd.DataFrame, bad: pd.DataFrame) -> pd.Series:
    if not bad.any().any():
        return pd.Series("", index=bars.index)
    return bad.apply(
        lambda row: ", ".join(f"{c}={bars.at[row.name, c]:.4g}" for c in row.index[row]), axis=1
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
    counts = problems.pivot_table(index="symbol", columns="kind", values="row", aggfunc="count")
    for kind in KINDS:
        table[kind] = (
            counts[kind].reindex(table.index).fillna(0).astype(int) if kind in counts else 0
        )
    return table.reset_index()
