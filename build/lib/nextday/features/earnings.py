"""The 17 earnings features: what the latest report known at close t says.

A report belongs to its `session_date` (the trading date whose close precedes it), so the
features of date t use every report with session_date <= t: on an earnings sample that is the
report published after close t, as the design allows; on other days the most recent one. Before
a symbol's first report, and for fields a source lacks, the features take neutral values (0,
and `days_since_earnings` at its cap), and the prepare report gives the NaN share before filling.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EARNINGS_FEATURES = [
    "eps_surprise",
    "eps_surprise_z",
    "revenue_surprise",
    "eps_beat",
    "revenue_beat",
    "eps_growth_yoy",
    "revenue_growth_yoy",
    "revenue_growth_qoq",
    "gross_margin",
    "gross_margin_change",
    "operating_margin",
    "operating_margin_change",
    "prev_eps_surprise",
    "beat_streak",
    "past_reaction_abs",
    "days_since_earnings",
    "transcript_sentiment",
]
# the seed has no transcripts: the feature is a placeholder 0 until a source provides them
PLACEHOLDER_FEATURES = ["transcript_sentiment"]
EPS_FLOOR = 0.01


def _ratio_change(now: pd.Series, before: pd.Series, clip: float) -> pd.Series:
    return ((now - before) / before.abs().clip(lower=EPS_FLOOR)).clip(-clip, clip)


def _report_features(reports: pd.DataFrame) -> pd.DataFrame:
    """Features of each report from that report and the symbol's earlier ones."""
    by_symbol = reports.groupby("symbol", sort=False)
    eps_surprise = _ratio_change(reports["eps_actual"], reports["eps_estimate"], 1.0)
    revenue_surprise = _ratio_change(reports["revenue_actual"], reports["revenue_estimate"], 1.0)
    # the surprise against the symbol's own history of surprises (earlier reports only)
    past_sd = eps_surprise.groupby(reports["symbol"]).transform(
        lambda s: s.shift(1).expanding(min_periods=3).std()
    )
    beat = np.sign(eps_surprise)
    streak_groups = (beat != beat.groupby(reports["symbol"]).shift(1)).cumsum()
    streak = beat.groupby([reports["symbol"], streak_groups]).cumcount() + 1
    reaction = reports["reaction"].abs()
    return pd.DataFrame(
        {
            "eps_surprise": eps_surprise,
            "eps_surprise_z": (eps_surprise / past_sd.replace(0.0, np.nan)).clip(-10, 10),
            "revenue_surprise": revenue_surprise,
            "eps_beat": beat,
            "revenue_beat": np.sign(revenue_surprise),
            "eps_growth_yoy": _ratio_change(
                reports["eps_actual"], by_symbol["eps_actual"].shift(4), 5.0
            ),
            "revenue_growth_yoy": _ratio_change(
                reports["revenue_actual"], by_symbol["revenue_actual"].shift(4), 5.0
            ),
            "revenue_growth_qoq": _ratio_change(
                reports["revenue_actual"], by_symbol["revenue_actual"].shift(1), 5.0
            ),
            "gross_margin": reports["gross_margin"],
            "gross_margin_change": reports["gross_margin"] - by_symbol["gross_margin"].shift(1),
            "operating_margin": reports["operating_margin"],
            "operating_margin_change": reports["operating_margin"]
            - by_symbol["operating_margin"].shift(1),
            "prev_eps_surprise": eps_surprise.groupby(reports["symbol"]).shift(1),
            "beat_streak": (streak * beat).where(beat.notna()),
            # reactions of earlier reports only: this report's reaction is its label
            "past_reaction_abs": reaction.groupby(reports["symbol"])
            .transform(lambda s: s.shift(1).rolling(4, min_periods=1).mean())
            .to_numpy(),
        },
        index=reports.index,
    )


def earnings_features(
    bars: pd.DataFrame, earnings: pd.DataFrame, position: np.ndarray, max_days: int
) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
    """Earnings features for each bar, whether each bar is an earnings sample, NaN shares.

    `bars` has symbol, ts, close, sorted by (symbol, ts) with a RangeIndex; `position` is each
    bar's index within its symbol's history.
    """
    n = len(bars)
    keys = pd.DataFrame({"symbol": bars["symbol"], "ts": bars["ts"], "pos": position})
    if earnings.empty:
        features = pd.DataFrame(np.nan, index=bars.index, columns=EARNINGS_FEATURES)
        features["days_since_earnings"] = float(max_days)
        nan_share = features.isna().mean()
        return features.fillna(0.0), np.zeros(n, dtype=bool), nan_share

    reports = earnings.sort_values(["symbol", "session_date", "ts"]).reset_index(drop=True)
    reports["symbol"] = reports["symbol"].astype(keys["symbol"].dtype)
    reports["session_date"] = reports["session_date"].astype(keys["ts"].dtype)
    # one report per session (the last, if a source lists two for one evening)
    reports = reports.drop_duplicates(["symbol", "session_date"], keep="last")
    reports = reports.merge(
        keys.rename(columns={"ts": "session_date", "pos": "session_pos"}),
        on=["symbol", "session_date"],
        how="inner",
    ).reset_index(drop=True)
    next_close = bars.groupby("symbol", sort=False)["close"].shift(-1)
    reaction = pd.Series(next_close / bars["close"] - 1.0)
    lookup = pd.Series(reaction.to_numpy(), index=pd.MultiIndex.from_frame(keys[["symbol", "pos"]]))
    reports["reaction"] = lookup.reindex(
        pd.MultiIndex.from_arrays([reports["symbol"], reports["session_pos"]])
    ).to_numpy()
    per_report = _report_features(reports)
    per_report["symbol"] = reports["symbol"]
    per_report["session_date"] = reports["session_date"]
    per_report["session_pos"] = reports["session_pos"]
    per_report["timing"] = reports["timing"]

    left = keys.assign(row=np.arange(n)).sort_values("ts", kind="stable")
    joined = pd.merge_asof(
        left,
        per_report.sort_values("session_date", kind="stable"),
        left_on="ts",
        right_on="session_date",
        by="symbol",
        direction="backward",
    ).sort_values("row")
    joined.index = bars.index
    days_since = (joined["pos"] - joined["session_pos"]).clip(upper=max_days)
    features = joined.reindex(columns=EARNINGS_FEATURES)
    features["days_since_earnings"] = days_since
    features["transcript_sentiment"] = 0.0
    is_sample = (days_since == 0) & joined["timing"].isin(["amc", "bmo"])
    nan_share = features.isna().mean()
    features["days_since_earnings"] = features["days_since_earnings"].fillna(float(max_days))
    return features.fillna(0.0).astype(float), is_sample.to_numpy(), nan_share
