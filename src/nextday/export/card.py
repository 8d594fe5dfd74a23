"""The model card of a registered version: the version's description and `model_card.md`.

Written for the person deciding whether to use the model: what it is for, what it is not
for, what data it saw, how it compares with the trivial and the best baselines, how far its
intervals can be trusted, where the pictures behind those numbers lie, and when it must be
replaced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from nextday.contracts import metrics as metric_names
from nextday.contracts.metadata import ExportMetadata
from nextday.contracts.pictures import (
    COVERAGE_BY_MONTH,
    LOSS_CURVES,
    PREDICTED_VS_ACTUAL,
    RELIABILITY,
    Picture,
)
from nextday.evaluation import claims
from nextday.export.gate import Check
from nextday.models.architectures import architecture
from nextday.models.spec import ModelSpec
from nextday.pages import markdown
from nextday.uncertainty.online import ServedOnline, describe_served

TEMPLATE = """# Model card: {registered_model} version {version}

{arch_name} predicting each stock's next-day return (close[t+1] / close[t] - 1) from
{n_features} features known at close t, with an MC-dropout interval calibrated on validation
rows. Exported from run `{export_run}` (code {git_commit}).

## Intended use and limits
- For research and for ranking stocks within one day's cross-section, as one signal among
  others. Judged on {judged_rows}.
- Not investment advice and not a trading system: costs, capacity and risk are not modelled.
- Daily returns are mostly noise: the model's point forecasts explain little of the next
  move ({skill_line}). Use the interval (p10-p90), not the point, to size expectations.
- Trained on {data_source}; on other markets or periods its skill is unknown until
  backtested there.

## Data
- {symbols} symbols, {first_date} to {last_date} ({rows:,} rows).
- Segments (chronological, embargoed): {segments}.

## Metrics (test segment, same rows for every forecast)
{metrics_table}

{significance_line}

{model_pictures}

## Calibration
- MC dropout, {passes} passes per row, plus a scale model and split-conformal quantiles
  ({n_calibration:,} validation rows).
- Test coverage of the 80% interval: {coverage:.3f} (width {width:.5f}).
- Served: {served_calibration}.
{online_line}
{calibration_pictures}

The pictures are artifacts of the runs that drew them, not files of this model: open the run
in the MLflow UI (its Artifacts tab, folder `report/`), or fetch one with
`mlflow artifacts download -u <runs:/ URI>`.

## Acceptance checks at export
{checks}

## Ethical considerations
- Predictions can move real money; a wrong model loses it. The gate, the backtest and the
  monitor exist because a model can look good in-sample and fail live.
- The data are prices and company reports, with no personal data.
- The numbers above are honest about weak skill: do not quote the model's MAE without the
  zero predictor's beside it.

## Update policy
- Retrain when the monitor reports drift or a rolling MAE above its limit, and at least
  every quarter (earnings seasons change the earnings model's inputs).
- A new version serves only if it passes the acceptance checks and is not worse than the
  production version on the same validation data; otherwise it stays a challenger.
- Roll back with `python -m nextday rollback model={model}`.
"""


JUDGED_ROWS = {
    "normal": "ordinary days (no earnings report before the next open)",
    "earnings": "earnings days (a report lands between close t and open t+1)",
    "all": "every day",
}
DATA_SOURCES = {
    "synthetic": "the built-in synthetic market",
    "yfinance": "Yahoo Finance daily bars",
    "csv": "user-supplied CSV files",
}


def _table(metrics: dict[str, float], names: tuple[str, ...]) -> str:
    rows = [("model (ONNX, MC mean)", metric_names.MODEL), ("zero", "zero")]
    for name in ("mean", "linear", "tree"):
        if metric_names.point("test", "mae", name) in metrics:
            rows.append((name, name))
    if metric_names.point("test", "mae", metric_names.ORACLE) in metrics:
        rows.append(("oracle (the floor)", metric_names.ORACLE))
    frame = pd.DataFrame(
        [
            {
                "forecast": label,
                **{
                    n: metric_names.read_optional(metrics, metric_names.point("test", n, forecast))
                    for n in names
                },
            }
            for label, forecast in rows
        ]
    )
    return markdown.table(frame).replace("| nan ", "| n/a ")


def _pictures(runs: Mapping[str, str], pictures: Sequence[Picture]) -> str:
    """Which run drew `pictures` (one of `runs`, step -> run id), then a line per picture:
    what it shows and its URI."""
    (step,) = {next(s for s in picture.steps if s in runs) for picture in pictures}
    lines = [f"- {picture.caption}: `{picture.uri(runs[step])}`" for picture in pictures]
    return "\n".join([f"Pictures of the {step} run `{runs[step]}`:", *lines])


def render(
    metadata: ExportMetadata, checks: Sequence[Check], data_source: str, *, significance: float
) -> str:
    """The card's text; `data_source` is the config's `data.source`, `significance` the
    gate's level (export.gate.significance), at which the card may say "beats". The pictures
    it links lie in the model (train or tune) and calibrate runs of `metadata.runs`."""
    metrics, runs = metadata.metrics, metadata.runs
    spec = ModelSpec.from_dict(metadata.hyperparameters)
    online = ServedOnline.of_version(metadata.online)
    data = metadata.data
    skill = metric_names.read_optional(metrics, metric_names.point("test", "skill"))
    dm_p = metric_names.read_optional(metrics, metric_names.DM_ZERO_MAE_P)
    segments = ", ".join(
        f"{name} {data['segments'][name]['first_date']} to {data['segments'][name]['last_date']}"
        for name in ("train", "val", "test")
        if name in data["segments"]
    )
    return TEMPLATE.format(
        registered_model=metadata.registered_model,
        version=metadata.version,
        arch_name=architecture(spec.arch).describe(spec),
        n_features=len(metadata.features),
        export_run=runs["export"],
        git_commit=metadata.git_commit,
        judged_rows=JUDGED_ROWS[spec.evaluate_rows],
        skill_line=f"test skill vs the zero predictor {skill:+.4f}",
        data_source=DATA_SOURCES.get(data_source, data_source),
        symbols=data["symbols"],
        first_date=data["first_date"],
        last_date=data["last_date"],
        rows=data["rows"],
        segments=segments,
        metrics_table=_table(metrics, ("mae", "rmse", "dir_acc", "ic")),
        significance_line=_significance_line(dm_p, significance),
        model_pictures=_pictures(runs, (PREDICTED_VS_ACTUAL, LOSS_CURVES)),
        calibration_pictures=_pictures(runs, (RELIABILITY, COVERAGE_BY_MONTH)),
        passes=metadata.mc["passes"],
        n_calibration=metadata.calibration["n_calibration"],
        coverage=metric_names.read_optional(metrics, metric_names.coverage("test", 0.8)),
        width=metric_names.read_optional(metrics, metric_names.width("test", 0.8)),
        served_calibration=describe_served(online),
        online_line=_online_line(metrics, online),
        checks="\n".join(
            f"- {'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in checks
        ),
        model=metadata.model,
    )


def _online_line(metrics: Mapping[str, float], online: ServedOnline | None) -> str:
    """The online rule replayed over the test days, beside the static interval."""
    if online is None or metric_names.coverage("test", 0.8, online=True) not in metrics:
        return ""
    covered, wide, score = (
        metric_names.read(metrics, name("test", 0.8, online=True), "the export")
        for name in (metric_names.coverage, metric_names.width, metric_names.interval_score)
    )
    static = metric_names.read_optional(metrics, metric_names.interval_score("test", 0.8))
    return (
        f"- The online rule replayed over the test days (from m = 1 on the first): coverage "
        f"{covered:.3f}, width {wide:.5f}, interval score {score:.5f} (static {static:.5f}).\n"
    )


def _significance_line(p_zero: float, level: float) -> str:
    sentence = claims.versus("the zero predictor", p_zero, level, subject="The model") + "."
    return sentence if claims.outcome(p_zero, level) == claims.BEATS else f"**{sentence}**"
