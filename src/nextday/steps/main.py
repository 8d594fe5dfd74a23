"""`main`: the whole chain, each step as its own (child) MLflow run, linked to its inputs.

Prepare, then for both models (normal, then earnings): train, calibrate, export (register,
promote if the gate passes) and backtest the exported version. A model the data cannot train
(the earnings model on price-only data) is skipped with its reason, in the log and in the
main run's tags `nextday.skipped` and `nextday.skipped.<model>`.

A step already run with the same inputs, the same values of the config groups it read and the
same code is reused, not redone (nextday.reuse); `reuse=false` runs everything again.

It ends with a summary table (`nextday.reports.summary`), in the log and as `summary.md` on
the main run: each step, ran or reused, its seconds and its key figure.

`main` builds and judges the versions; it does not forecast. The daily run is `forecast`
(then `monitor`), scheduled after each close on the production versions main promoted.
"""

from __future__ import annotations

import logging
import time

import mlflow
from omegaconf import DictConfig

from nextday.config import compose
from nextday.contracts import metrics as metric_names
from nextday.contracts import tags
from nextday.models.data import SEGMENTS, DataRequirementError, check_segments
from nextday.models.spec import model_spec
from nextday.reports import summary
from nextday.reuse import Chain
from nextday.steps import catalog
from nextday.tracking import step_run

log = logging.getLogger(__name__)

MODELS = ("normal", "earnings")


def _cannot_train(cfg: DictConfig, prepare_run_id: str) -> str | None:
    """Why the model of `cfg` cannot be trained on the prepared data (None: it can), from the
    row counts the prepare run logged: the same check train makes, before any work."""
    logged = mlflow.MlflowClient().get_run(prepare_run_id).data.metrics
    run = f"prepare run {prepare_run_id}"
    counts = {}
    for segment in SEGMENTS:
        rows = int(metric_names.read(logged, metric_names.segment_rows(segment), run))
        earnings = int(metric_names.read(logged, metric_names.segment_earnings_rows(segment), run))
        counts[segment] = {"all": rows, "earnings": earnings, "normal": rows - earnings}
    try:
        check_segments(model_spec(cfg), counts, int(cfg.model.min_segment_rows))
    except DataRequirementError as error:
        return str(error)
    return None


def run_main(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, str]:
    """Run (or reuse) every step in order under one parent run; return the step -> run id
    map.

    `overrides` are the user's Hydra overrides; each model's steps compose them with
    `model=<name>` (the user's `model.*` keys still apply to both models).
    """
    from nextday.data.store import open_store

    started = time.perf_counter()
    overrides = [o for o in (overrides or []) if not o.startswith("model=")]
    with step_run(cfg, "main") as parent:
        chain = Chain(parent, bool(cfg.reuse), lambda: open_store(cfg).count("ohlcv") > 0)
        runs = {
            "prepare": chain.step("prepare", "prepare", catalog.BY_NAME["prepare"].load(), cfg, {})
        }
        skipped: dict[str, str] = {}
        for model in MODELS:
            reason = _cannot_train(compose([*overrides, f"model={model}"]), runs["prepare"])
            if reason:
                skipped[model] = reason
                log.warning("main: model=%s skipped: %s", model, reason)
                mlflow.set_tag(f"{tags.SKIPPED_REASON}{model}", reason[:5000])
                continue
            for step in catalog.model_chain():
                upstream, consumed = step.consumes, step.input_override
                assert upstream and consumed, f"{step.name}: a chain step names its input"
                source = runs[upstream if upstream == "prepare" else f"{upstream}.{model}"]
                runs[f"{step.name}.{model}"] = chain.step(
                    step.name,
                    f"{step.name}.{model}",
                    step.load(),
                    compose([*overrides, f"model={model}", consumed.format(source)]),
                    {upstream: source},
                )
        if len(skipped) == len(MODELS):
            raise DataRequirementError(
                "no model can be trained on this data: "
                + "; ".join(f"{m}: {why}" for m, why in skipped.items())
            )
        mlflow.set_tags({f"{tags.VERSION_RUN}{step}": run_id for step, run_id in runs.items()})
        mlflow.set_tag(tags.SKIPPED, ", ".join(skipped) if skipped else "none")
        mlflow.set_tag(tags.REUSED, ", ".join(chain.reused) if chain.reused else "none")
        done = [label for label in runs if label not in chain.reused]
        log.info(
            "main: ran %s; reused %s (parent run %s)",
            ", ".join(done) or "nothing",
            ", ".join(chain.reused) or "nothing",
            parent.info.run_id,
        )
        text = summary.table(_outcomes(runs, chain.reused, skipped), time.perf_counter() - started)
        log.info("main: summary\n%s", text)
        mlflow.log_text(text, summary.SUMMARY)
        return runs


def _outcomes(
    runs: dict[str, str], reused: dict[str, str], skipped: dict[str, str]
) -> list[summary.StepOutcome]:
    """The summary's rows in the chain's order (a skipped model: one row with its reason)."""
    client = mlflow.MlflowClient()

    def outcome(label: str) -> summary.StepOutcome:
        status = summary.REUSED if label in reused else summary.RAN
        return summary.StepOutcome.from_run(label, status, client.get_run(runs[label]))

    outcomes = [outcome("prepare")]
    for model in MODELS:
        if model in skipped:
            outcomes.append(summary.StepOutcome(model, summary.SKIPPED, note=skipped[model]))
        else:
            outcomes += [outcome(f"{step.name}.{model}") for step in catalog.model_chain()]
    return outcomes
