"""Exploratory report of a prepared dataset: feature distributions, collinearity, label tails.

`write_eda_report` writes three PNGs and `eda.md` into a folder and returns scalar metrics to
log to MLflow. Feature statistics and correlations use only the `train` split (a seeded sample
of at most `max_rows` rows), so nothing about validation or test data leaks into choices made
from the report; the label statistics use every train row (one column, cheap); the summary
counts rows of every split.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import PercentFormatter
from scipy import stats

logger = logging.getLogger(__name__)

HISTOGRAMS_PNG = "feature_histograms.png"
CORRELATION_PNG = "feature_correlation.png"
RETURNS_PNG = "return_distributions.png"
REPORT_MD = "eda.md"

CLIP_PERCENTILES = (0.5, 99.5)  # display range of each feature histogram
HIGH_CORR = 0.9  # pairs above this |correlation| are flagged
TOP_PAIRS = 10
BIG_MOVE = 0.05  # share of |label| above this is reported
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class FeatureStats:
    """Distribution of one feature on the train sample (NaN/inf excluded from the moments)."""

    name: str
    group: str
    mean: float
    sd: float
    min: float
    p1: float
    median: float
    p99: float
    max: float
    nan_fraction: float
    skew: float
    constant: bool


@dataclass(frozen=True)
class LabelStats:
    """Distribution of the label (next-day return) on one kind of day."""

    n: int
    mean: float
    sd: float
    skew: float
    kurtosis: float  # excess (Fisher) kurtosis
    abs_mean: float
    big_share: float  # share of |label| > BIG_MOVE


def _feature_names(dataset: pd.DataFrame, feature_groups: dict[str, list[str]]) -> list[str]:
    """All feature names, group by group in order; raises if one is missing from `dataset`."""
    names = [name for group in feature_groups.values() for name in group]
    missing = [name for name in names if name not in dataset.columns]
    if missing:
        raise KeyError(f"feature columns missing from the dataset: {missing}")
    return names


def _group_of(feature_groups: dict[str, list[str]]) -> dict[str, str]:
    """Map each feature name to its group."""
    return {name: group for group, names in feature_groups.items() for name in names}


def _train_positions(dataset: pd.DataFrame) -> np.ndarray:
    """Row positions of the train split; raises if there are none."""
    positions = np.flatnonzero(dataset["split"].to_numpy() == "train")
    if positions.size == 0:
        raise ValueError("the dataset has no 'train' rows to describe")
    return positions


def _sample_positions(positions: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """A seeded sample (sorted) of at most `max_rows` of `positions`."""
    if positions.size <= max_rows:
        return positions
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(positions, size=max_rows, replace=False))


def _feature_matrix(dataset: pd.DataFrame, positions: np.ndarray, names: list[str]) -> np.ndarray:
    """Float64 [rows x features] of the sampled rows, with ±inf turned into NaN."""
    values = dataset[names].iloc[positions].to_numpy(dtype=np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def _column_stats(name: str, group: str, column: np.ndarray) -> FeatureStats:
    """Statistics of one feature column (NaN = missing or non-finite)."""
    finite = column[~np.isnan(column)]
    nan_fraction = 1.0 - finite.size / column.size if column.size else float("nan")
    if finite.size == 0:
        nan = float("nan")
        return FeatureStats(name, group, nan, nan, nan, nan, nan, nan, nan, 1.0, nan, True)
    p1, median, p99 = np.percentile(finite, [1, 50, 99])
    low, high = float(finite.min()), float(finite.max())
    constant = low == high
    sd = 0.0 if constant or finite.size < 2 else float(np.std(finite, ddof=1))
    skew = float("nan") if constant else float(stats.skew(finite))
    return FeatureStats(
        name=name,
        group=group,
        mean=float(finite.mean()),
        sd=sd,
        min=low,
        p1=float(p1),
        median=float(median),
        p99=float(p99),
        max=high,
        nan_fraction=nan_fraction,
        skew=skew,
        constant=constant,
    )


def feature_statistics(
    values: np.ndarray, names: list[str], groups: dict[str, str]
) -> list[FeatureStats]:
    """Statistics of every feature column of `values`."""
    return [_column_stats(name, groups[name], values[:, j]) for j, name in enumerate(names)]


def feature_correlation(values: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Pearson correlation of the features (pairwise complete); NaN where a column is constant."""
    frame = pd.DataFrame(values, columns=names)
    if not np.isnan(values).any():
        corr = np.full((len(names), len(names)), np.nan)
        varying = (
            np.flatnonzero(values.min(axis=0) < values.max(axis=0))
            if len(values)
            else np.empty(0, dtype=np.intp)
        )
        if len(varying) > 0:
            corr[np.ix_(varying, varying)] = np.atleast_2d(np.corrcoef(values[:, varying].T))
        return pd.DataFrame(corr, index=names, columns=names)
    return frame.corr()


def top_correlated_pairs(corr: pd.DataFrame, top: int = TOP_PAIRS) -> list[tuple[str, str, float]]:
    """The `top` feature pairs by |correlation| (pairs with an undefined correlation skipped)."""
    matrix = corr.to_numpy()
    rows, cols = np.triu_indices_from(matrix, k=1)
    values = matrix[rows, cols]
    ok = ~np.isnan(values)
    rows, cols, values = rows[ok], cols[ok], values[ok]
    order = np.argsort(-np.abs(values), kind="stable")[:top]
    names = list(corr.columns)
    return [(names[rows[i]], names[cols[i]], float(values[i])) for i in order]


def label_statistics(labels: np.ndarray) -> LabelStats:
    """Moments and tail shares of labels (NaN labels dropped)."""
    labels = labels[np.isfinite(labels)]
    n = int(labels.size)
    nan = float("nan")
    if n == 0:
        return LabelStats(0, nan, nan, nan, nan, nan, nan)
    sd = float(np.std(labels, ddof=1)) if n > 1 else nan
    varying = n > 1 and labels.min() < labels.max()
    return LabelStats(
        n=n,
        mean=float(labels.mean()),
        sd=sd,
        skew=float(stats.skew(labels)) if varying else nan,
        kurtosis=float(stats.kurtosis(labels, fisher=True)) if varying else nan,
        abs_mean=float(np.abs(labels).mean()),
        big_share=float((np.abs(labels) > BIG_MOVE).mean()),
    )


def _label_split(dataset: pd.DataFrame, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Train labels of normal days and of earnings days."""
    labels = dataset["label"].to_numpy(dtype=np.float64)[positions]
    earnings = dataset["is_earnings"].to_numpy(dtype=bool)[positions]
    return labels[~earnings], labels[earnings]


# ---------------------------------------------------------------------------------------------
# Figures


def _draw_clipped_histogram(ax: plt.Axes, column: np.ndarray, fs: FeatureStats, colour: str) -> str:
    """Histogram of one varying feature within its display percentiles; returns the title.

    A point mass (one bin holding over half the values, e.g. an earnings feature that is 0 on
    normal days) gets a log y-axis so the rest of the distribution stays visible.
    """
    low, high = np.percentile(column, CLIP_PERCENTILES)
    if low == high:
        low, high = fs.min, fs.max
    shown = column[(column >= low) & (column <= high)]
    counts, edges = np.histogram(shown, bins=40, range=(low, high))
    ax.stairs(counts, edges, fill=True, color=colour)
    if counts.max() > 0.5 * shown.size:
        ax.set_yscale("log")
        return f"{fs.name} (log y)"
    return fs.name


def _plot_histograms(
    values: np.ndarray, feature_stats: list[FeatureStats], path: Path, n_rows: int
) -> None:
    """One small histogram per feature, each clipped to its 0.5-99.5 percentile range."""
    n = len(feature_stats)
    ncols = min(6, max(n, 1))
    nrows = max(math.ceil(n / ncols), 1)
    height = 1.9 * nrows + 0.9
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, height), squeeze=False)
    colours: dict[str, str] = {}
    try:
        for j, (ax, fs) in enumerate(zip(axes.flat, feature_stats, strict=False)):
            colour = colours.setdefault(fs.group, f"C{len(colours)}")
            column = values[:, j]
            column = column[~np.isnan(column)]
            title = fs.name
            if column.size == 0:
                ax.text(0.5, 0.5, "all NaN", ha="center", va="center", transform=ax.transAxes)
            elif fs.constant:
                ax.bar([fs.min], [column.size], width=1.0, color=colour)
                title = f"{fs.name} (constant {fs.min:.4g})"
            else:
                title = _draw_clipped_histogram(ax, column, fs, colour)
            ax.set_title(f"{title} [{fs.group}]", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.tick_params(axis="y", which="both", left=False, labelleft=False)
        for ax in axes.flat[n:]:
            ax.set_visible(False)
        fig.suptitle(
            f"Feature distributions, train split ({n_rows:,} sampled rows)\neach clipped to its "
            f"{CLIP_PERCENTILES[0]}-{CLIP_PERCENTILES[1]} percentile range for display",
            fontsize=10,
            y=1 - 0.1 / height,
            va="top",
        )
        # one label for every panel: the values are in each feature's own unit
        fig.supxlabel("feature value (the feature's own unit)", fontsize=8, y=0.05 / height)
        fig.supylabel("rows (count; log scale where marked)", fontsize=8, x=0.005)
        # fixed margins: tight_layout costs seconds on a grid of ~40 axes
        fig.subplots_adjust(
            left=0.025,
            right=0.98,
            bottom=0.45 / height,
            top=1 - 0.8 / height,
            wspace=0.15,
            hspace=0.6,
        )
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)


def _plot_correlation(corr: pd.DataFrame, groups: dict[str, str], path: Path) -> None:
    """Heatmap of the feature correlation matrix (-1..1; grey where undefined)."""
    names = list(corr.columns)
    size = max(4.0, 0.22 * len(names) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    try:
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="lightgrey")
        image = ax.imshow(
            np.ma.masked_invalid(corr.to_numpy()), cmap=cmap, vmin=-1, vmax=1, aspect="equal"
        )
        ticks = np.arange(len(names))
        ax.set_xticks(ticks, names, rotation=90, fontsize=6)
        ax.set_yticks(ticks, names, fontsize=6)
        for k in range(1, len(names)):  # lines between feature groups
            if groups[names[k]] != groups[names[k - 1]]:
                ax.axhline(k - 0.5, color="black", linewidth=0.8)
                ax.axvline(k - 0.5, color="black", linewidth=0.8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Pearson correlation")
        ax.set_title("Feature correlation, train split (grey: constant feature)", fontsize=10)
        ax.set(xlabel="feature", ylabel="feature")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def _legend_label(kind: str, s: LabelStats) -> str:
    """Legend text with the moments of one label distribution."""
    return (
        f"{kind} (n={s.n:,}): mean {s.mean:+.3%}, s.d. {s.sd:.2%}, "
        f"skew {s.skew:.2f}, excess kurtosis {s.kurtosis:.1f}"
    )


def _density(values: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Histogram density of `values` over `bins`, normalised by all values (outside ones too)."""
    counts, _ = np.histogram(values, bins=bins)
    return counts / (max(values.size, 1) * np.diff(bins))


def _plot_returns(
    normal: np.ndarray,
    earnings: np.ndarray,
    normal_stats: LabelStats,
    earnings_stats: LabelStats,
    path: Path,
) -> None:
    """Density histograms of the label on normal vs earnings days (log y) with a Gaussian."""
    normal = normal[np.isfinite(normal)]
    earnings = earnings[np.isfinite(earnings)]
    both = np.concatenate([normal, earnings])
    fig, ax = plt.subplots(figsize=(9, 6))
    try:
        if both.size == 0:
            ax.text(0.5, 0.5, "no labels", ha="center", va="center", transform=ax.transAxes)
            ax.set_title("Next-day return (label), train split: no labels", fontsize=10)
        else:
            low, high = np.percentile(both, [0.05, 99.95])
            bound = max(abs(low), abs(high), 1e-6)
            bins = np.linspace(-bound, bound, 101)
            shown = []
            if normal.size:
                density = _density(normal, bins)
                ax.stairs(
                    density,
                    bins,
                    fill=True,
                    alpha=0.45,
                    color="C0",
                    label=_legend_label("normal days", normal_stats),
                )
                shown.append(density)
            if earnings.size:
                density = _density(earnings, bins)
                ax.stairs(
                    density,
                    bins,
                    linewidth=1.6,
                    color="C3",
                    label=_legend_label("earnings days", earnings_stats),
                )
                shown.append(density)
            if normal.size > 1 and normal_stats.sd > 0:
                grid = np.linspace(-bound, bound, 400)
                gauss = stats.norm.pdf(grid, normal_stats.mean, normal_stats.sd)
                ax.plot(
                    grid, gauss, "k--", linewidth=0.8, label="Gaussian with the normal-day s.d."
                )
            positive = np.concatenate(shown)
            positive = positive[positive > 0]
            ax.set_yscale("log")
            if positive.size:
                ax.set_ylim(positive.min() / 2, positive.max() * 3)
            ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
            ax.set_title(
                "Next-day return (label), train split: normal vs earnings days"
                + ("" if earnings.size else " (no earnings days in the data)")
                + f"\nlog density; the {np.mean(np.abs(both) > bound):.2%} of returns beyond "
                f"±{bound:.1%} are not drawn",
                fontsize=10,
            )
        ax.set_xlabel("next-day return (%)")
        ax.set_ylabel("density (per unit of return, log scale)")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Markdown


def _fmt(value: float, digits: int = 4) -> str:
    """A number for a table: `digits` significant digits, '-' when undefined."""
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.{digits}g}"


def _summary_lines(dataset: pd.DataFrame) -> list[str]:
    """The summary section: size, symbols, dates, earnings share, rows per split."""
    dates = pd.to_datetime(dataset["date"])
    earnings = dataset["is_earnings"].to_numpy(dtype=bool)
    lines = [
        "## Summary",
        "",
        f"- rows: {len(dataset):,}",
        f"- symbols: {dataset['symbol'].nunique():,}",
        f"- dates: {dates.min().date()} to {dates.max().date()} ({dates.nunique():,} days)",
        f"- earnings days: {int(earnings.sum()):,} rows ({earnings.mean():.2%} of rows)"
        if earnings.any()
        else "- earnings days: none (the data has no earnings days)",
        "",
        "| split | rows | symbols | first date | last date | earnings rows | earnings share |",
        "|---|---:|---:|---|---|---:|---:|",
    ]
    splits = list(SPLITS) + sorted(set(dataset["split"].unique()) - set(SPLITS))
    for split in splits:
        part = dataset["split"].to_numpy() == split
        if not part.any():
            lines.append(f"| {split} | 0 | 0 | - | - | 0 | - |")
            continue
        part_dates = dates[part]
        lines.append(
            f"| {split} | {int(part.sum()):,} | {dataset['symbol'][part].nunique():,} "
            f"| {part_dates.min().date()} | {part_dates.max().date()} "
            f"| {int(earnings[part].sum()):,} | {earnings[part].mean():.2%} |"
        )
    return lines


def _feature_table_lines(feature_stats: list[FeatureStats], n_rows: int) -> list[str]:
    """The feature table section."""
    lines = [
        "## Features",
        "",
        f"Train split only, {n_rows:,} sampled rows. NaN fraction counts NaN and ±inf; the "
        "other columns ignore them. Skew is the sample skewness.",
        "",
        "| feature | group | mean | s.d. | min | p1 | median | p99 | max | NaN fraction | skew |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fs in feature_stats:
        if fs.nan_fraction == 1.0:
            skew = "all NaN"
        elif fs.constant:
            skew = "constant"
        else:
            skew = _fmt(fs.skew, 3)
        cells = [fs.mean, fs.sd, fs.min, fs.p1, fs.median, fs.p99, fs.max]
        lines.append(
            f"| {fs.name} | {fs.group} | "
            + " | ".join(_fmt(v) for v in cells)
            + f" | {fs.nan_fraction:.3f} | {skew} |"
        )
    constant = [fs.name for fs in feature_stats if fs.constant]
    if constant:
        lines += [
            "",
            f"Constant on the train sample (carry no information): {', '.join(constant)}.",
        ]
    return lines


def _collinearity_lines(pairs: list[tuple[str, str, float]], corr: pd.DataFrame) -> list[str]:
    """The most-collinear-pairs section."""
    lines = [
        "## Most collinear feature pairs",
        "",
        f"Pearson correlation on the train sample, top {TOP_PAIRS} by |correlation| "
        "(constant features have none).",
        "",
        "| rank | feature A | feature B | correlation |",
        "|---:|---|---|---:|",
    ]
    lines += [f"| {k} | {a} | {b} | {r:+.3f} |" for k, (a, b, r) in enumerate(pairs, start=1)]
    matrix = corr.to_numpy()
    rows, cols = np.triu_indices_from(matrix, k=1)
    values = matrix[rows, cols]
    high = np.flatnonzero(np.abs(np.nan_to_num(values)) > HIGH_CORR)
    lines.append("")
    if high.size:
        names = list(corr.columns)
        listed = ", ".join(f"{names[rows[i]]} / {names[cols[i]]}" for i in high)
        lines.append(
            f"**{high.size} pair(s) have |correlation| > {HIGH_CORR}** ({listed}): nearly "
            "redundant; consider dropping one of each for linear models."
        )
    else:
        lines.append(f"No pair has |correlation| > {HIGH_CORR}.")
    return lines


def _returns_lines(normal: LabelStats, earnings: LabelStats) -> list[str]:
    """The return-distribution section."""
    lines = [
        "## Return distributions",
        "",
        "Label (next-day return) on every train row, NaN labels dropped. s.d. uses ddof=1; "
        "skew and excess kurtosis are the (biased) sample moments.",
        "",
    ]
    if earnings.n == 0:
        lines += [
            "**The data has no earnings days** (e.g. bars without earnings dates), so only "
            "normal days are described.",
            "",
        ]
    lines += [
        f"| days | n | mean | s.d. | skew | excess kurtosis | mean abs r | share abs r > "
        f"{BIG_MOVE:.0%} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    kinds = [("normal", normal)] + ([("earnings", earnings)] if earnings.n else [])
    for kind, s in kinds:
        lines.append(
            f"| {kind} | {s.n:,} | {_fmt(s.mean)} | {_fmt(s.sd)} | {_fmt(s.skew, 3)} "
            f"| {_fmt(s.kurtosis, 3)} | {_fmt(s.abs_mean)} | {_fmt(s.big_share, 3)} |"
        )
    if earnings.n and normal.n and normal.abs_mean > 0:
        lines += [
            "",
            f"Earnings days move {earnings.abs_mean / normal.abs_mean:.1f}x as much as normal "
            "days (mean |r|).",
        ]
    return lines


def _markdown(
    dataset: pd.DataFrame,
    feature_stats: list[FeatureStats],
    n_rows: int,
    pairs: list[tuple[str, str, float]],
    corr: pd.DataFrame,
    normal: LabelStats,
    earnings: LabelStats,
) -> str:
    """The whole eda.md text."""
    lines = ["# Exploratory data analysis", ""]
    lines += _summary_lines(dataset) + [""]
    lines += _feature_table_lines(feature_stats, n_rows) + [""]
    lines += [f"![Feature histograms]({HISTOGRAMS_PNG})", ""]
    lines += _collinearity_lines(pairs, corr) + [""]
    lines += [f"![Feature correlation]({CORRELATION_PNG})", ""]
    lines += _returns_lines(normal, earnings) + [""]
    lines += [f"![Return distributions]({RETURNS_PNG})", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Entry point


def _metrics(
    corr: pd.DataFrame,
    feature_stats: list[FeatureStats],
    normal: LabelStats,
    earnings: LabelStats,
    n_rows: int,
) -> dict[str, float]:
    """Scalar metrics for MLflow; undefined ones are left out (never NaN)."""
    matrix = corr.to_numpy()
    upper = np.abs(matrix[np.triu_indices_from(matrix, k=1)])
    upper = upper[~np.isnan(upper)]
    metrics: dict[str, float] = {
        "eda_sample_rows": float(n_rows),
        "eda_constant_features": float(sum(fs.constant for fs in feature_stats)),
        "eda_pairs_abs_corr_above_0_9": float((upper > HIGH_CORR).sum()),
        "eda_earnings_share": earnings.n / max(normal.n + earnings.n, 1),
    }
    if upper.size:
        metrics["eda_max_abs_feature_corr"] = float(upper.max())
    for kind, s in (("normal", normal), ("earnings", earnings)):
        if s.n == 0:
            continue
        metrics[f"eda_{kind}_label_n"] = float(s.n)
        metrics[f"eda_{kind}_label_mean"] = s.mean
        metrics[f"eda_{kind}_label_sd"] = s.sd
        metrics[f"eda_{kind}_label_skew"] = s.skew
        metrics[f"eda_{kind}_label_kurtosis"] = s.kurtosis
        metrics[f"eda_{kind}_label_abs_mean"] = s.abs_mean
        metrics[f"eda_{kind}_label_share_abs_gt_5pct"] = s.big_share
    return {name: float(v) for name, v in metrics.items() if np.isfinite(v)}


def write_eda_report(
    dataset: pd.DataFrame,
    feature_groups: dict[str, list[str]],
    out_dir: Path,
    max_rows: int = 200_000,
    seed: int = 0,
) -> dict[str, float]:
    """Write the EDA figures and eda.md into `out_dir`; return metrics to log to MLflow.

    Feature statistics and correlations come from a seeded sample of at most `max_rows` train
    rows; label statistics from all train rows. Earnings metrics are left out when the data has
    no earnings days.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = _feature_names(dataset, feature_groups)
    groups = _group_of(feature_groups)
    train = _train_positions(dataset)
    sample = _sample_positions(train, max_rows, seed)
    values = _feature_matrix(dataset, sample, names)

    feature_stats = feature_statistics(values, names, groups)
    corr = feature_correlation(values, names)
    pairs = top_correlated_pairs(corr)
    normal_labels, earnings_labels = _label_split(dataset, train)
    normal, earnings = label_statistics(normal_labels), label_statistics(earnings_labels)

    _plot_histograms(values, feature_stats, out_dir / HISTOGRAMS_PNG, len(sample))
    _plot_correlation(corr, groups, out_dir / CORRELATION_PNG)
    _plot_returns(normal_labels, earnings_labels, normal, earnings, out_dir / RETURNS_PNG)
    text = _markdown(dataset, feature_stats, len(sample), pairs, corr, normal, earnings)
    (out_dir / REPORT_MD).write_text(text, encoding="utf-8")
    logger.info("wrote EDA report (%d train rows sampled) to %s", len(sample), out_dir)
    return _metrics(corr, feature_stats, normal, earnings, len(sample))
