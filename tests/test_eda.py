"""Tests of the exploratory data report (nextday.reports.eda)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextday.reports.eda import write_eda_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNGS = ("feature_histograms.png", "feature_correlation.png", "return_distributions.png")
GROUPS = {
    "technical": ["ret_1d", "ret_5d", "ret_5d_copy", "vol_20d", "rsi_14"],
    "earnings": ["eps_surprise", "transcript_sentiment", "days_since_earnings"],
}


def make_dataset(n: int = 3000, earnings_share: float = 0.05, seed: int = 1) -> pd.DataFrame:
    """Random rows with a planted collinear pair (ret_5d, ret_5d_copy) and a constant feature."""
    rng = np.random.default_rng(seed)
    symbols = rng.choice([f"S{i:02d}" for i in range(20)], size=n)
    dates = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 500, n), unit="D")
    split = np.where(
        np.arange(n) < 0.7 * n, "train", np.where(np.arange(n) < 0.85 * n, "val", "test")
    )
    is_earnings = rng.random(n) < earnings_share
    label = rng.standard_t(4, n) * 0.01 + is_earnings * rng.normal(0, 0.06, n)
    ret_5d = rng.normal(0, 0.03, n)
    frame = pd.DataFrame(
        {
            "symbol": symbols,
            "date": dates,
            "split": split,
            "is_earnings": is_earnings,
            "label": label,
            "ret_1d": rng.normal(0, 0.015, n).astype(np.float32),
            "ret_5d": ret_5d,
            "ret_5d_copy": ret_5d + rng.normal(0, 0.001, n),
            "vol_20d": rng.lognormal(-4, 0.3, n),
            "rsi_14": rng.uniform(0, 100, n),
            "eps_surprise": np.where(is_earnings, rng.normal(0, 0.1, n), 0.0),
            "transcript_sentiment": np.zeros(n, dtype=np.float32),
            "days_since_earnings": rng.integers(0, 126, n).astype(np.float64),
        }
    )
    frame.loc[rng.random(n) < 0.02, "vol_20d"] = np.nan
    return frame


def table_row(markdown: str, feature: str) -> list[str]:
    """Cells of the feature table's row for `feature`."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] == feature and len(cells) == 11:
            return cells
    raise AssertionError(f"no table row for {feature}")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path, dict]:
    dataset = make_dataset()
    # val/test rows get huge feature values: the table must not see them
    other = dataset["split"] != "train"
    dataset.loc[other, "rsi_14"] = 1e6
    dataset.loc[other, "transcript_sentiment"] = 123.0
    out = tmp_path_factory.mktemp("eda")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        metrics = write_eda_report(dataset, GROUPS, out, seed=0)
    return dataset, out, metrics


def test_pngs_are_written(report):
    _, out, _ = report
    for name in PNGS:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 5000, name


def test_markdown_sections_and_images(report):
    dataset, out, _ = report
    text = (out / "eda.md").read_text()
    for heading in (
        "## Summary",
        "## Features",
        "## Most collinear feature pairs",
        "## Return distributions",
    ):
        assert heading in text
    for name in PNGS:
        assert f"]({name})" in text
    assert f"rows: {len(dataset):,}" in text
    assert "| train | 2,100 |" in text and "| val | 450 |" in text and "| test | 450 |" in text


def test_planted_collinear_pair_is_first(report):
    _, out, metrics = report
    text = (out / "eda.md").read_text()
    first = re.search(r"^\| 1 \| (\S+) \| (\S+) \| ([+-][0-9.]+) \|$", text, re.MULTILINE)
    assert first is not None
    assert {first.group(1), first.group(2)} == {"ret_5d", "ret_5d_copy"}
    assert float(first.group(3)) > 0.99
    assert "pair(s) have |correlation| > 0.9" in text
    assert metrics["eda_max_abs_feature_corr"] == pytest.approx(float(first.group(3)), abs=1e-3)
    assert metrics["eda_pairs_abs_corr_above_0_9"] == 1.0


def test_constant_feature_and_only_train_rows(report):
    dataset, out, metrics = report
    text = (out / "eda.md").read_text()
    constant = table_row(text, "transcript_sentiment")
    assert constant[-1] == "constant"
    assert float(constant[8]) == 0.0  # max: the val/test value 123 is not seen
    rsi = table_row(text, "rsi_14")
    train_max = dataset.loc[dataset["split"] == "train", "rsi_14"].max()
    assert float(rsi[8]) == pytest.approx(train_max, rel=1e-3)
    assert float(table_row(text, "vol_20d")[9]) > 0  # NaN fraction
    assert metrics["eda_constant_features"] == 1.0


def test_metrics_match_direct_computation(report):
    dataset, _, metrics = report
    train = dataset[dataset["split"] == "train"]
    normal = train.loc[~train["is_earnings"], "label"]
    earnings = train.loc[train["is_earnings"], "label"]
    assert metrics["eda_normal_label_sd"] == pytest.approx(normal.std(ddof=1))
    assert metrics["eda_earnings_label_sd"] == pytest.approx(earnings.std(ddof=1))
    assert metrics["eda_earnings_label_abs_mean"] == pytest.approx(earnings.abs().mean())
    assert metrics["eda_normal_label_kurtosis"] == pytest.approx(
        ((normal - normal.mean()) ** 4).mean() / normal.var(ddof=0) ** 2 - 3
    )
    assert metrics["eda_earnings_label_kurtosis"] > metrics["eda_normal_label_kurtosis"] - 10
    assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())


def test_no_earnings_dataset(tmp_path):
    dataset = make_dataset(n=1500, earnings_share=0.0)
    metrics = write_eda_report(dataset, GROUPS, tmp_path)
    text = (tmp_path / "eda.md").read_text()
    assert "no earnings days" in text
    assert not any(name.startswith("eda_earnings_label") for name in metrics)
    assert "eda_normal_label_sd" in metrics
    for name in PNGS:
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_sampling_is_seeded_and_bounded(tmp_path):
    dataset = make_dataset(n=2000)
    first = write_eda_report(dataset, GROUPS, tmp_path / "a", max_rows=500, seed=3)
    second = write_eda_report(dataset, GROUPS, tmp_path / "b", max_rows=500, seed=3)
    assert first == second
    assert first["eda_sample_rows"] == 500.0
    assert "500 sampled rows" in (tmp_path / "a" / "eda.md").read_text()


def test_missing_feature_column_raises(tmp_path):
    dataset = make_dataset(n=300).drop(columns=["rsi_14"])
    with pytest.raises(KeyError, match="rsi_14"):
        write_eda_report(dataset, GROUPS, tmp_path)
