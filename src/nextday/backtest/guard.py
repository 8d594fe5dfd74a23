"""The leak guard: no prediction may use anything after its date.

Two checks, both fatal:
- windows: every model that made a prediction was fitted on dates before it (a fixed model's
  training segment ends before the backtest starts; each refit's data ends an embargo before
  its fold);
- point in time: on sampled dates t, the features the backtest fed the model are recomputed
  from the raw bars and reports as they stood at close t (everything later removed) and must
  be identical. A feature that peeks at the next day differs there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextday.dataset.build import compute_features


class LeakError(RuntimeError):
    """A prediction's inputs reach past its date."""


def check_window(last_fitted: pd.Timestamp, first_predicted: pd.Timestamp, what: str) -> None:
    if pd.Timestamp(last_fitted) >= pd.Timestamp(first_predicted):
        raise LeakError(
            f"{what} was fitted on data up to {pd.Timestamp(last_fitted).date()} but predicts "
            f"from {pd.Timestamp(first_predicted).date()}: it has seen the period it is judged on"
        )


def point_in_time(
    rows: pd.DataFrame,
    features: list[str],
    ohlcv: pd.DataFrame,
    earnings: pd.DataFrame,
    dates,
    max_days_since_earnings: int,
    tolerance: float = 1e-6,  # rolling sums over a shorter history differ in the last bits
) -> pd.DataFrame:
    """Recompute `features` of `rows` on each of `dates` from data cut at that date's close;
    one row per date with the worst difference. Raises LeakError on any difference."""
    checks = []
    for date in pd.to_datetime(pd.Series(dates)).sort_values():
        bars = ohlcv[ohlcv["ts"] <= date]
        reports = earnings[pd.to_datetime(earnings["session_date"]) <= date]
        frame, _ = compute_features(bars, reports, max_days_since_earnings)
        known = frame[frame["date"] == date].set_index("symbol")[features]
        used = rows[rows["date"] == date].set_index("symbol")[features]
        common = used.index.intersection(known.index)
        if len(common) < len(used):
            raise LeakError(
                f"{date.date()}: {len(used) - len(common)} predicted rows have no bar at that "
                "date in the store (is it the store prepare wrote?)"
            )
        used, known = used.loc[common], known.loc[common]
        # a value that cannot be computed yet (NaN) at close t counts as a leak too
        difference = (used - known).abs().where(used.isna() == known.isna(), np.inf).fillna(0.0)
        scale = np.maximum(1.0, known.abs().fillna(0.0))
        relative = (difference / scale).max()
        worst = str(relative.idxmax()) if len(relative) else ""
        checks.append(
            {
                "date": date.date(),
                "rows": len(common),
                "max_rel_diff": float(relative.max()) if len(relative) else 0.0,
                "worst_feature": worst,
            }
        )
        leaked = relative[relative > tolerance]
        if len(leaked):
            raise LeakError(
                f"{date.date()}: features {sorted(leaked.index)} differ from their values "
                "recomputed with data up to that close (max relative difference "
                f"{leaked.max():.3g}): they use later data"
            )
    return pd.DataFrame(checks)


def sampled_point_in_time(
    bars: pd.DataFrame,
    reports: pd.DataFrame,
    rows: pd.DataFrame,
    dataset: pd.DataFrame,
    features: list[str],
    dates: int,
    max_days_since_earnings: int,
) -> pd.DataFrame:
    """`point_in_time` on `dates` dates spread evenly over the predicted `rows`, against the
    raw `bars` and earnings `reports` the store holds (its ohlcv and earnings tables)."""
    predicted = np.sort(rows["date"].unique())
    picks = predicted[np.linspace(0, len(predicted) - 1, dates).astype(int)]
    universe = set(dataset["symbol"].unique())
    used = dataset[dataset["symbol"].isin(set(rows["symbol"].unique()))]
    return point_in_time(
        used,
        features,
        bars[bars["symbol"].isin(universe) & (bars["ts"] <= pd.Timestamp(picks.max()))],
        reports[reports["symbol"].isin(universe)],
        picks,
        max_days_since_earnings,
    )
