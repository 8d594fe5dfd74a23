"""Every symbol scored by the production versions: the earnings model where the as-of row is
an earnings sample (its report came out after this close, or before the next open at the pre-
open run), the normal model otherwise; the answers as `forecasts` rows and as the prediction
log's rows (one per answer, with the version that gave it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nextday.contracts.outputs import OUT_OF_RANGE, OUTPUTS
from nextday.daily import ForecastRefused
from nextday.features import ALL_FEATURES

NORMAL, EARNINGS = "normal", "earnings"


class VersionMismatchError(ForecastRefused):
    """A production version takes inputs the daily run cannot compute."""


@dataclass
class Scorers:
    """The production version of each model (a ModelInference), or why there is none."""

    models: dict[str, object] = field(default_factory=dict)  # model -> ModelInference
    missing: dict[str, str] = field(default_factory=dict)  # model -> why it does not score
    # without an earnings version, the normal model answers the earnings samples too
    fallback: bool = True

    def describe(self) -> dict[str, str]:
        found = {m: f"{i.name} v{i.version}" for m, i in self.models.items()}  # type: ignore[attr-defined]
        return found | {m: f"not scored: {why}" for m, why in self.missing.items()}


def check_inputs(inference, model: str) -> None:
    """The version's inputs are features the daily run computes, one row per symbol."""
    unknown = [f for f in inference.features if f not in ALL_FEATURES]
    if unknown:
        raise VersionMismatchError(
            f"{inference.name} v{inference.version} (model={model}) takes "
            f"{unknown[:5]} which the store's bars cannot give (the daily run computes the "
            f"{len(ALL_FEATURES)} features of docs/features.md): refused"
        )
    if inference.window > 1:
        raise VersionMismatchError(
            f"{inference.name} v{inference.version} (model={model}) is a sequence "
            f"model (window {inference.window}); the daily run scores one feature row per "
            "symbol: refused"
        )


def route(features: pd.DataFrame, pending: set[str], session: str) -> pd.Series:
    """Which model answers each row: earnings on an earnings sample, normal otherwise; at the
    pre-open run only the symbols whose report was pending (the others' evening rows stand)."""
    model = pd.Series(np.where(features["is_earnings"], EARNINGS, NORMAL), index=features.index)
    if session == "pre_open":
        model = model.where(features["symbol"].isin(pending) & features["is_earnings"])
    return model


class _Collected:
    """A logger for ModelInference that keeps the rows, to write them with the forecast in
    one transaction (the prediction log's rows, exactly as a served answer logs them)."""

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []

    def log(self, frame: pd.DataFrame) -> None:
        self.frames.append(frame)


@dataclass
class Scored:
    forecasts: pd.DataFrame  # the `forecasts` table's rows (created_at left to the writer)
    predictions: pd.DataFrame  # the prediction log's rows
    skipped: dict[str, str]  # symbol -> why it has no forecast
    notes: list[str]  # what the routing had to decide


def score(
    scorers: Scorers,
    features: pd.DataFrame,
    routed: pd.Series,
    pending: set[str],
    target: pd.Timestamp,
    session: str,
) -> Scored:
    """Each routed row answered by its model's production version. A row routed to a model
    without one falls back to the other model where it can take the row (an earnings sample
    to the normal model), with the reason; otherwise it is skipped, named."""
    skipped: dict[str, str] = {}
    if scorers.fallback and EARNINGS in scorers.missing and NORMAL in scorers.models:
        routed = routed.where(routed != EARNINGS, NORMAL)  # the normal model takes any row
    parts, logged = [], []
    for model, rows in features.groupby(routed, sort=True):
        inference = scorers.models.get(str(model))
        if inference is None:
            why = scorers.missing.get(str(model), "no production version")
            skipped |= {
                s: f"the {model} model has no production version ({why})" for s in rows["symbol"]
            }
            continue
        collector = _Collected()
        inference.restart_draws()  # type: ignore[attr-defined]
        inference.logger = collector  # type: ignore[attr-defined]
        try:
            answer = inference.predict_batch(  # type: ignore[attr-defined]
                rows[inference.features],  # type: ignore[attr-defined]
                keys=rows[["symbol", "ts"]].rename(columns={"ts": "date"}),
            )
        finally:
            inference.logger = None  # type: ignore[attr-defined]
        logged += collector.frames
        parts.append(
            pd.DataFrame(
                {
                    "as_of": rows["ts"].to_numpy(),
                    "symbol": rows["symbol"].to_numpy(),
                    "target_date": target,
                    "model": str(model),
                    "model_name": inference.name,  # type: ignore[attr-defined]
                    "model_version": inference.version,  # type: ignore[attr-defined]
                    "prediction": answer["prediction"].to_numpy(),
                    **{name: answer[name].to_numpy() for name in OUTPUTS if name != "prediction"},
                    "out_of_range": answer[OUT_OF_RANGE].to_numpy(dtype=bool),
                    "earnings_pending": rows["symbol"].isin(pending).to_numpy()
                    & (str(model) == NORMAL),
                    "session": session,
                }
            )
        )
    notes = []
    fallback = int((features["is_earnings"].to_numpy() & routed.eq(NORMAL).to_numpy()).sum())
    if fallback and EARNINGS in scorers.missing:
        notes.append(
            f"{fallback} earnings sample(s) scored by the normal model: the earnings model has "
            f"no production version ({scorers.missing[EARNINGS]})"
        )
    forecasts = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    predictions = pd.concat(logged, ignore_index=True) if logged else pd.DataFrame()
    return Scored(forecasts, predictions, skipped, notes)
