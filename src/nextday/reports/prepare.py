"""What a prepare run reports about the data it built: the quality report, the market's
stylized facts, the dataset's segments and row accounting, the EDA, and the run's metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from nextday.contracts import artifacts
from nextday.contracts import metrics as metric_names
from nextday.dataset.split import split_summary
from nextday.features import FEATURE_GROUPS
from nextday.pages import markdown
from nextday.reports.eda import write_eda_report
from nextday.reports.market_facts import check_facts, measure_facts


def write_reports(cfg, market, quality, build, out: Path) -> dict[str, float]:
    """Every report of a prepare run under `out` (features.json, reports/, regimes.csv);
    returns the metrics they measured (stylized facts, EDA)."""
    (out / "features.json").write_text(json.dumps(FEATURE_GROUPS, indent=2))
    reports = out / "reports"
    reports.mkdir()
    (reports / "quality.md").write_text(quality.to_markdown())
    quality.problems.to_csv(reports / "quality_problems.csv", index=False)
    quality.by_symbol.to_csv(reports / "quality_by_symbol.csv", index=False)

    facts = measure_facts(market)
    checked = check_facts(facts)
    metrics = {f"fact_{k}": float(v) for k, v in facts.items() if v == v}
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
    splits_json = {
        k: {c: str(v) for c, v in row.items()} for k, row in splits.to_dict("index").items()
    }
    (reports / "splits.json").write_text(json.dumps(splits_json, indent=2))
    eda_metrics = write_eda_report(build.dataset, FEATURE_GROUPS, reports / "eda")
    metrics.update({k: float(v) for k, v in eda_metrics.items()})
    if market.regimes is not None:
        market.regimes.to_csv(out / artifacts.REGIMES.path, index=False)
    return metrics


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


def prepare_metrics(quality, build, written: dict, timings: dict) -> dict[str, float]:
    """The prepare run's metrics: sizes, store writes, quality counts, row accounting, NaN
    shares, segment sizes and stage times."""
    dataset = build.dataset
    metrics = {
        metric_names.ROWS: len(dataset),
        metric_names.SYMBOLS: dataset["symbol"].nunique(),
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
        metrics[metric_names.segment_rows(segment)] = int(row["rows"])
        metrics[metric_names.segment_earnings_rows(segment)] = int(row["earnings_rows"])
    return {k: float(v) for k, v in metrics.items()}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
