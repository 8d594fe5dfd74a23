"""`prepare`: raw data from a source -> validated bars in the store -> features -> the dataset.

Logs one MLflow run (tag nextday.step=prepare) with the dataset (Parquet, registered with
`mlflow.log_input`), features.json, the data-quality report, the market-facts report, the
exploratory report, the split table and the oracle (synthetic data only, kept apart).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.models import infer_signature
from omegaconf import DictConfig

from nextday.data.quality import validate
from nextday.data.sources import load_market
from nextday.data.store import Store
from nextday.dataset.build import build_dataset
from nextday.dataset.split import split_summary
from nextday.features import FEATURE_GROUPS
from nextday.reports import markdown
from nextday.reports.eda import write_eda_report
from nextday.reports.market_facts import check_facts, measure_facts
from nextday.tracking import artifact_dir, step_run

log = logging.getLogger(__name__)

DATASET_ARTIFACT = "dataset/dataset.parquet"
TRUTH_ARTIFACT = "oracle/truth.parquet"
DEGENERATE_ARTIFACT = "dataset/degenerate_features.json"
DEGENERATE_POLICIES = ("drop", "keep")


@contextmanager
def _stage(name: str, timings: dict[str, float]):
    log.info("prepare: %s ...", name)
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start
    log.info("prepare: %s done in %.1f s", name, timings[name])


def open_store(cfg: DictConfig) -> Store:
    store = Store(
        str(cfg.store.url),
        password_env=cfg.store.get("password_env"),
        batch_rows=int(cfg.store.batch_rows),
    )
    store.create(timescaledb=bool(cfg.store.get("timescaledb", False)))
    return store


def run_prepare(cfg: DictConfig) -> str:
    """Run prepare as an MLflow run and return its run id."""
    timings: dict[str, float] = {}
    if str(cfg.quality.degenerate_features) not in DEGENERATE_POLICIES:
        raise ValueError(
            f"quality.degenerate_features={cfg.quality.degenerate_features!r}: expected one of "
            f"{DEGENERATE_POLICIES}"
        )
    with step_run(cfg, "prepare") as run, artifact_dir(cfg) as out:
        with _stage("connect store", timings):
            store = open_store(cfg)
        mlflow.set_tag("nextday.store", store.display_url)
        with _stage(f"load {cfg.data.source} data", timings):
            market = load_market(cfg.data)
        with _stage("validate", timings):
            market, quality = validate(market, cfg.quality)
        with _stage("features, labels, splits", timings):
            build = build_dataset(
                market,
                warmup_days=int(cfg.features.warmup_days),
                max_days_since_earnings=int(cfg.features.max_days_since_earnings),
                label_outlier=float(cfg.features.label_outlier),
                split=dict(cfg.split),
            )
        with _stage("write store", timings):
            written = store.upsert_many(
                {
                    "ohlcv": market.ohlcv.assign(source=market.source),
                    "earnings": market.earnings.assign(source=market.source),
                    "feature_history": build.feature_history,
                }
            )
        with _stage("reports", timings):
            _write_reports(cfg, market, quality, build, out)
        with _stage("log artifacts", timings):
            _log_dataset(build, out, str(cfg.quality.degenerate_features))
            mlflow.log_artifacts(str(out))

        dataset = build.dataset
        metrics = {
            "rows": len(dataset),
            "symbols": dataset["symbol"].nunique(),
            "earnings_rows": int(dataset["is_earnings"].sum()),
            "earnings_share": float(dataset["is_earnings"].mean()),
            "dates": dataset["date"].nunique(),
            **{f"store_{table}_rows_written": n for table, n in written.items()},
            **{f"quality_{kind}": n for kind, n in quality.counts().items()},
            "quality_symbols_dropped": len(quality.dropped_symbols),
            **{f"count_{name}": value for name, value in build.counts.items()},
            **{f"nan_frac_{name}": float(v) for name, v in build.nan_share.items()},
            "label_outliers": len(build.label_outliers),
            "degenerate_features": len(build.degenerate),
            **{f"time_{_slug(name)}_s": seconds for name, seconds in timings.items()},
        }
        for segment, row in split_summary(dataset).iterrows():
            metrics[f"{segment}_rows"] = int(row["rows"])
            metrics[f"{segment}_earnings_rows"] = int(row["earnings_rows"])
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.set_tags(
            {
                "nextday.data.source": market.source,
                "nextday.data.first_date": str(dataset["date"].min().date()),
                "nextday.data.last_date": str(dataset["date"].max().date()),
            }
        )
        for note in market.notes:
            log.warning("prepare: %s", note)
        if build.degenerate:
            log.warning(
                "prepare: %d feature(s) carry nothing on this data (%s): %s",
                len(build.degenerate),
                "dropped from every model" if cfg.quality.degenerate_features == "drop" else "kept",
                "; ".join(f"{name}: {why}" for name, why in build.degenerate.items()),
            )
        log.info(
            "prepare: %s rows, %s symbols, %s earnings samples -> run %s",
            f"{len(dataset):,}",
            dataset["symbol"].nunique(),
            int(dataset["is_earnings"].sum()),
            run.info.run_id,
        )
        return run.info.run_id


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _dataset_source(uri: str):
    """The dataset's source for its artifact URI. MLflow resolves file:/ s3:/ gs:/ ... URIs,
    but has no source for mlflow-artifacts:/ (a tracking server that proxies artifacts): that
    one is recorded as the server's HTTP URL for the same file."""
    if not uri.startswith("mlflow-artifacts:"):
        return resolve_dataset_source(uri)
    from urllib.parse import urlparse

    from mlflow.data.http_dataset_source import HTTPDatasetSource

    parsed = urlparse(uri)
    base = f"http://{parsed.netloc}" if parsed.netloc else mlflow.get_tracking_uri()
    path = parsed.path.lstrip("/")
    return HTTPDatasetSource(f"{base.rstrip('/')}/api/2.0/mlflow-artifacts/artifacts/{path}")


def _log_dataset(build, out: Path, degenerate_policy: str) -> None:
    path = out / DATASET_ARTIFACT
    path.parent.mkdir(parents=True, exist_ok=True)
    build.dataset.to_parquet(path, index=False, compression="zstd")
    # A metadata-only dataset: MLflow's from_pandas profiles the whole frame, which takes
    # longer than all of prepare at the seed's scale. The digest is the Parquet file's hash.
    (out / DEGENERATE_ARTIFACT).write_text(
        json.dumps({"policy": degenerate_policy, "features": build.degenerate}, indent=2)
    )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    with warnings.catch_warnings():
        # a local artifact URI matches two equivalent source types; MLflow picks either
        warnings.filterwarnings("ignore", message="The specified dataset source")
        source = _dataset_source(mlflow.get_artifact_uri(DATASET_ARTIFACT))
    schema = infer_signature(build.dataset.head(1000)).inputs
    dataset = MetaDataset(source, name="nextday-dataset", digest=digest, schema=schema)
    mlflow.log_input(dataset, context="prepare")
    if build.truth is not None:
        truth_path = out / TRUTH_ARTIFACT
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        build.truth.to_parquet(truth_path, index=False)


def _write_reports(cfg, market, quality, build, out: Path) -> None:
    (out / "features.json").write_text(json.dumps(FEATURE_GROUPS, indent=2))
    reports = out / "reports"
    reports.mkdir()
    (reports / "quality.md").write_text(quality.to_markdown())
    quality.problems.to_csv(reports / "quality_problems.csv", index=False)
    quality.by_symbol.to_csv(reports / "quality_by_symbol.csv", index=False)

    facts = measure_facts(market)
    checked = check_facts(facts)
    mlflow.log_metrics({f"fact_{k}": float(v) for k, v in facts.items() if v == v})
    (reports / "market_facts.json").write_text(json.dumps(facts, indent=2))
    (reports / "market_facts.md").write_text(_facts_markdown(market.source, facts, checked))

    splits = split_summary(build.dataset)
    splits.to_csv(reports / "splits.csv")
    per_symbol = build.dataset.pivot_table(
        index="symbol", columns="split", values="label", aggfunc="size", fill_value=0
    )
    per_symbol.to_csv(reports / "rows_per_symbol_split.csv")
    build.label_outliers.to_csv(reports / "label_outliers.csv", index=False)
    nan = build.nan_share.rename("nan_fraction").to_frame()
    (reports / "dataset.md").write_text(_dataset_markdown(cfg, market, build, splits, nan))
    mlflow.log_dict(
        {k: {c: str(v) for c, v in row.items()} for k, row in splits.to_dict("index").items()},
        "reports/splits.json",
    )
    eda_metrics = write_eda_report(build.dataset, FEATURE_GROUPS, reports / "eda")
    mlflow.log_metrics({k: float(v) for k, v in eda_metrics.items()})
    if market.regimes is not None:
        market.regimes.to_csv(reports / "regimes.csv", index=False)


def _facts_markdown(source: str, facts: dict, checked: pd.DataFrame) -> str:
    holds = checked["holds"].dropna()
    lines = [
        f"# Stylized facts of the {source} market",
        "",
        f"{int(holds.sum())} of {len(holds)} facts within the range real US equities show.",
        "",
        markdown.table(checked),
        "",
        "## Everything measured",
        "",
        markdown.table(pd.DataFrame({"measure": list(facts), "value": list(facts.values())})),
    ]
    return "\n".join(lines) + "\n"


def _dataset_markdown(cfg, market, build, splits: pd.DataFrame, nan: pd.DataFrame) -> str:
    dataset = build.dataset
    lines = [
        "# Dataset",
        "",
        f"Source: `{market.source}`. {len(dataset):,} rows of {dataset['symbol'].nunique()} "
        f"symbols from {dataset['date'].min().date()} to {dataset['date'].max().date()}; "
        f"{int(dataset['is_earnings'].sum()):,} earnings samples "
        f"({dataset['is_earnings'].mean():.2%}).",
        "",
        "Label: close[t+1] / close[t] - 1 to the symbol's next bar. Features at t use data known "
        "at close t (earnings: the report published after close t). "
        f"Split by date {cfg.split.train:.0%}/{cfg.split.val:.0%}/{cfg.split.test:.0%} with an "
        f"embargo of {cfg.split.embargo_days} trading dates between segments.",
        "",
        "## Segments",
        "",
        markdown.table(splits, index=True),
        "",
        "## Row accounting",
        "",
        markdown.table(
            pd.DataFrame({"step": list(build.counts), "rows": list(build.counts.values())})
        ),
        "",
        f"## Label outliers (|label| > {cfg.features.label_outlier}): "
        f"{len(build.label_outliers)} rows, kept as they are",
        "",
        "## NaN fraction of each feature after the warm-up, before filling",
        "",
        "Rows with a missing technical feature are dropped; missing earnings features take "
        "neutral values (0; `days_since_earnings` its cap).",
        "",
        markdown.table(nan, index=True),
    ]
    if build.degenerate:
        action = (
            "dropped from every model's inputs"
            if cfg.quality.degenerate_features == "drop"
            else "kept (quality.degenerate_features=keep)"
        )
        lines += [
            "",
            f"## Degenerate features: {len(build.degenerate)}, {action}",
            "",
            markdown.table(
                pd.DataFrame(
                    {"feature": list(build.degenerate), "why": list(build.degenerate.values())}
                )
            ),
        ]
    if dataset["is_earnings"].sum() == 0:
        lines[2:2] = [
            "",
            "**No earnings samples exist in this data** (no earnings data given).",
            "",
        ]
    for note in market.notes:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"
