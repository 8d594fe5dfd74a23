"""Every PNG nextday draws has a title, axis labels and labelled colorbars, and the reports
that talk about a picture link it where it lies.

Each plotting function draws from small made-up inputs while `Figure.savefig` is wrapped: the
wrapper records what the figure says about itself, then saves it for real.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from nextday.backtest import plots as backtest_plots
from nextday.config import compose
from nextday.contracts import pictures
from nextday.contracts.metadata import ExportMetadata
from nextday.evaluation import plots, signal_plots, validation_report
from nextday.evaluation.judging import Judgement, JudgingSettings
from nextday.evaluation.metrics import cross_section_min
from nextday.evaluation.signal_analytics import analyze, forward_returns
from nextday.export import card, gate
from nextday.models.spec import model_spec
from nextday.monitoring import calibration
from nextday.monitoring import report as monitor_report
from nextday.monitoring.accuracy import daily_series, summarize
from nextday.monitoring.judge import Monitoring
from nextday.monitoring.settings import MonitorSettings
from nextday.reports.eda import write_eda_report
from nextday.uncertainty import report as calibration_report
from nextday.uncertainty.assessment import Assessment
from nextday.uncertainty.online import OnlineSettings, ServedOnline, volatility_edges

RNG = np.random.default_rng(7)
DATES = pd.bdate_range("2024-01-02", periods=60)


@dataclass(frozen=True)
class Saved:
    """What one saved figure says: its titles, the labels of each axes that draws data, and
    its colorbars' labels. An axes shares the label of an axes it shares that axis with (the
    bottom panel names the dates of the panels above), and a grid's supxlabel/supylabel
    label every panel."""

    file: str
    titles: list[str]
    data_axes: list[tuple[str, str]]  # (x label, y label)
    colorbars: list[str]


def describe(figure: Figure, file) -> Saved:
    def text(part) -> str:
        return part.get_text() if part is not None else ""

    def shared(axis, side: str) -> str:
        siblings = getattr(axis, f"get_shared_{side}_axes")().get_siblings(axis)
        return next((s for s in (getattr(a, f"get_{side}label")() for a in siblings) if s), "")

    sup_x, sup_y = text(figure._supxlabel), text(figure._supylabel)
    titles, data_axes, colorbars = [text(figure._suptitle)], [], []
    for axis in figure.axes:
        if not axis.get_visible():
            continue
        colorbar = getattr(axis, "_colorbar", None)
        if colorbar is not None:
            vertical = colorbar.orientation == "vertical"
            colorbars.append(axis.get_ylabel() if vertical else axis.get_xlabel())
            continue
        titles += [axis.get_title(loc) for loc in ("left", "center", "right")]
        if axis.axison and axis.has_data():
            data_axes.append((shared(axis, "x") or sup_x, shared(axis, "y") or sup_y))
    return Saved(Path(str(file)).name, titles, data_axes, colorbars)


@pytest.fixture
def saved(monkeypatch) -> list[Saved]:
    """Every figure saved in the test, described just before it is written."""
    records: list[Saved] = []
    original = Figure.savefig

    def recording(figure, fname, *args, **kwargs):
        records.append(describe(figure, fname))
        return original(figure, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return records


# ---------------------------------------------------------------------------------------------
# made-up inputs


def returns(n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions, actuals and dates: 10 symbols a day."""
    actual = RNG.normal(0, 0.02, n)
    return actual * 0.2 + RNG.normal(0, 0.004, n), actual, np.repeat(DATES, 10)[:n].to_numpy()


def spec():
    return model_spec(compose(["experiment=quick"]))


def assessment() -> Assessment:
    """An assessment with the tables the calibration report shows and the metrics it quotes."""
    nominal = np.round(np.arange(0.1, 1.0, 0.1), 2)
    reliability = pd.DataFrame({"nominal": nominal, "observed": nominal * 0.95})
    months = pd.Index(["2024-01", "2024-02", "2024-03"], name="month")
    quoted = ("coverage_80", "width_80", "interval_score_80")
    metrics = {
        "passes": 8.0,
        "calibration_rows": 500.0,
        "test_crps": 0.01,
        "test_pinball_10": 0.002,
        "const_same_coverage_test_width_80": 0.05,
        **{f"{prefix}test_{name}": 0.8 for prefix in ("", "raw_", "const_") for name in quoted},
    }
    tables = {
        "reliability_val": reliability,
        "reliability_test": reliability,
        "coverage_by_volatility": pd.DataFrame(
            {
                "rows": [50, 50],
                **{f"{m}_coverage": [0.8, 0.78] for m in ("static", "aci", "pid")},
                **{f"{m}_width": [0.04, 0.06] for m in ("static", "aci", "pid")},
            },
            index=pd.Index(["1 calm", "5 wild"], name="bucket"),
        ),
        "coverage_by_month": pd.DataFrame(
            {
                "rows": [20, 21, 19],
                **{f"{m}_coverage": [0.82, 0.77, 0.8] for m in ("static", "aci", "pid")},
            },
            index=months,
        ),
        "dropout_experiment": pd.DataFrame({"dropout": [0.1, 0.3], "coverage_80": [0.1, 0.2]}),
    }
    online = OnlineSettings.from_config(compose().calibrate.online)
    return Assessment(
        metrics,
        tables,
        ServedOnline(online, volatility_edges(RNG.uniform(0.01, 0.03, 500), online.buckets)),
    )


def monitoring() -> tuple[Monitoring, MonitorSettings]:
    settings = MonitorSettings(
        model=None,
        as_of=None,
        window_days=5,
        coverage_days=5,
        drift_days=20,
        mae_multiple=1.5,
        coverage_band=(0.7, 0.9),
        psi_limit=0.25,
        window_margin=3.0,
        ks_pvalue=0.001,
        min_rows=200,
    )
    predicted, actual, dates = returns()
    predictions = pd.DataFrame(
        {
            "ts": dates,
            "predicted": predicted,
            "p10": predicted - 0.02,
            "p90": predicted + 0.02,
            "actual": actual,
            "latency_ms": RNG.uniform(0.5, 2.0, len(actual)),
        }
    ).assign(error=lambda f: f["predicted"] - f["actual"])
    daily = daily_series(predictions, settings.window_days, settings.coverage_days)
    drift = pd.DataFrame({"feature": ["ret_1d", "vol_20d"], "psi": [0.05, 0.4], "psi_limit": 0.25})
    summary = summarize(predictions, daily, val_mae=0.015, actuals_before=0)
    online = ServedOnline(OnlineSettings.from_config(compose().calibrate.online), ())
    served = predictions.assign(
        online_multiplier=1.1, p50=predicted, p10=predicted - 0.022, p90=predicted + 0.022
    )
    vol = RNG.uniform(0.01, 0.03, len(served))
    checked = calibration.judge(served, vol, online, settings.coverage_days)
    return Monitoring(predictions, summary, daily, drift, drift.iloc[1:], [], checked), settings


def eda_dataset(n: int = 800) -> pd.DataFrame:
    split = np.where(
        np.arange(n) < 0.7 * n, "train", np.where(np.arange(n) < 0.85 * n, "val", "test")
    )
    earnings = RNG.random(n) < 0.1
    return pd.DataFrame(
        {
            "symbol": RNG.choice(["A", "B", "C"], n),
            "date": pd.Timestamp("2024-01-01") + pd.to_timedelta(RNG.integers(0, 200, n), "D"),
            "split": split,
            "is_earnings": earnings,
            "label": RNG.normal(0, 0.02, n) + earnings * RNG.normal(0, 0.05, n),
            "ret_1d": RNG.normal(0, 0.015, n),
            "rsi_14": RNG.uniform(0, 100, n),
            "eps_surprise": np.where(earnings, RNG.normal(0, 0.1, n), 0.0),
        }
    )


def signal_analytics(groups: bool = True):
    """The analytics of a noisy copy of the next return, 30 symbols x 120 days."""
    n_symbols, days = 30, pd.bdate_range("2023-01-02", periods=120)
    frame = pd.DataFrame(
        {
            "symbol": np.tile([f"S{i:02d}" for i in range(n_symbols)], len(days)),
            "date": np.repeat(days, n_symbols),
            "sector": np.tile([f"G{i % 3}" for i in range(n_symbols)], len(days)),
        }
    )
    frame["label"] = RNG.normal(0, 0.02, len(frame))
    signal = frame["label"].to_numpy() + RNG.normal(0, 0.03, len(frame))
    forward = forward_returns(frame)
    return analyze(
        signal, frame["symbol"], frame["date"], forward, frame["sector"] if groups else None, 5
    )


def backtest_daily() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rolling_mae": RNG.uniform(0.010, 0.012, len(DATES)),
            "rolling_zero_mae": RNG.uniform(0.011, 0.013, len(DATES)),
            "rolling_ic": RNG.normal(0.02, 0.01, len(DATES)),
            "rolling_coverage": RNG.uniform(0.75, 0.85, len(DATES)),
        },
        index=DATES,
    )


def book_returns() -> dict[str, pd.Series]:
    return {name: pd.Series(RNG.normal(0, 0.01, len(DATES)), DATES) for name in ("model", "zero")}


# ---------------------------------------------------------------------------------------------
# every plotting function


def _evaluation_plots(folder: Path) -> None:
    predicted, actual, dates = returns()
    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.2, 2.0]}
    plots.loss_curves(history, 2, folder / "loss_curves.png")
    plots.predicted_vs_actual(predicted, actual, folder / "pva.png", "model: predicted vs actual")
    plots.error_histogram({"model": predicted - actual, "zero": -actual}, folder / "errors.png")
    plots.error_by_move_size({"model": predicted, "zero": 0 * actual}, actual, folder / "size.png")
    with cross_section_min(5):
        plots.ic_by_month({"model": predicted}, actual, dates, folder / "ic_by_month.png")


def _calibration_plots(folder: Path) -> None:
    calibration_report.write(folder, spec(), assessment(), level=0.8)


def _monitor_plots(folder: Path) -> None:
    watched, settings = monitoring()
    monitor_report.write(watched, "nextday-normal", "1", settings, folder)


def _eda_plots(folder: Path) -> None:
    groups = {"technical": ["ret_1d", "rsi_14"], "earnings": ["eps_surprise"]}
    write_eda_report(eda_dataset(), groups, folder)


def _signal_plots(folder: Path) -> None:
    analytics, without_groups = signal_analytics(), signal_analytics(groups=False)
    signal_plots.ic_decay({"model": analytics, "noise": without_groups}, folder / "decay.png")
    signal_plots.quantile_returns(analytics, folder / "quantiles.png")
    signal_plots.monthly_ic(analytics, folder / "monthly.png")
    signal_plots.group_ic(analytics, folder / "groups.png")


def _backtest_plots(folder: Path) -> None:
    daily = backtest_daily()
    backtest_plots.equity(book_returns(), folder / "equity.png")
    backtest_plots.rolling(daily, folder / "rolling.png")
    backtest_plots.coverage(daily, 0.8, folder / "coverage.png")
    capacity = pd.DataFrame(
        {"book": ["model"] * 3, "capital": [1e6, 1e7, 1e8], "sharpe": [1.2, 0.9, 0.1]}
    )
    backtest_plots.capacity(capacity, folder / "capacity.png")
    table = pd.DataFrame(
        {"Sharpe": [0.9, 0.1], "turnover (%)": [40.0, 0.0]}, index=["model", "zero"]
    )
    backtest_plots.table_png(table.reset_index(), folder / "table.png", "Books by regime")


def _backtest_comparison(folder: Path) -> None:
    table = pd.DataFrame(
        {"Sharpe after costs": [0.9, 0.1], "MAE (return)": [0.011, 0.012]}, index=["model", "zero"]
    )
    backtest_plots.comparison(table, folder / "at_a_glance.png")


DRAWERS: dict[str, Callable[[Path], None]] = {
    "evaluation.plots": _evaluation_plots,
    "uncertainty.report": _calibration_plots,
    "monitoring.report": _monitor_plots,
    "reports.eda": _eda_plots,
    "evaluation.signal_plots": _signal_plots,
    "backtest.plots": _backtest_plots,
    "backtest.plots.comparison": _backtest_comparison,
}
EXPECTED_FILES = {
    "evaluation.plots": 5,
    "uncertainty.report": 2,
    "monitoring.report": 5,
    "reports.eda": 3,
    "evaluation.signal_plots": 4,
    "backtest.plots": 5,
    "backtest.plots.comparison": 1,
}


@pytest.mark.parametrize("drawer", list(DRAWERS))
def test_every_png_has_a_title_axis_labels_and_labelled_colorbars(drawer, saved, tmp_path):
    DRAWERS[drawer](tmp_path)
    assert len(saved) == EXPECTED_FILES[drawer], [s.file for s in saved]
    for figure in saved:
        assert any(title.strip() for title in figure.titles), f"{figure.file}: no title"
        for x_label, y_label in figure.data_axes:
            assert x_label.strip() and y_label.strip(), f"{figure.file}: {x_label!r}, {y_label!r}"
        for label in figure.colorbars:
            assert label.strip(), f"{figure.file}: a colorbar without a label"
        assert any(tmp_path.rglob(figure.file)), f"{figure.file} was not written"


# ---------------------------------------------------------------------------------------------
# the reports link their pictures


def linked_images(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]+\]\(([^)]+)\)", markdown)


def test_the_validation_report_shows_the_pictures_train_draws():
    predicted, actual, _ = returns()
    judged = Judgement(
        metrics={
            "test_mae": 0.0151,
            "test_skill": 0.01,
            "test_ic": 0.05,
            "train_rows": 1000,
            "epochs_run": 12,
            "best_epoch": 9,
        },
        tables={"test": pd.DataFrame({"mae": [0.0151, 0.0153]}, index=["model", "zero"])},
        dm={"dm_zero_mae_p": 0.2, "dm_best_mae_p": 0.4},
        best_baseline="tree",
        zero_test_mae=0.0153,
        ic_text="0.0500",
        by_size=pd.DataFrame({"model": [0.01, 0.03]}, index=["0.000+", "0.020+"]),
        by_month=pd.DataFrame({"model": [0.04, 0.06]}, index=["2024-01", "2024-02"]),
    )
    settings = JudgingSettings(np.nan, 100, 1, 5, 0.05)
    text = validation_report.render(spec(), judged, settings)
    assert linked_images(text) == [p.path for p in pictures.MODEL_PICTURES]
    # each beside what it illustrates: the loss curves by the epochs, IC by month by its table
    assert text.index("best epoch 9") < text.index(pictures.LOSS_CURVES.path)
    assert text.index("## IC by month") < text.index(pictures.IC_BY_MONTH.path)


def test_the_calibration_report_shows_the_pictures_beside_it(tmp_path):
    report = calibration_report.write(tmp_path, spec(), assessment(), level=0.8)
    links = linked_images(report.read_text())
    assert links == [pictures.RELIABILITY.path, pictures.COVERAGE_BY_MONTH.path]
    for link in links:  # relative to the report: in the run's artifacts as on disk
        assert (report.parent / link).stat().st_size > 1000, link


@pytest.mark.parametrize("model_step", ["train", "tune"])
def test_the_card_links_the_pictures_of_the_runs_behind_it(model_step):
    trained = spec()
    runs = {"prepare": "p" * 32, model_step: "m" * 32, "calibrate": "c" * 32, "export": "e" * 32}
    metadata = ExportMetadata(
        registered_model="nextday-normal",
        version=1,
        model="normal",
        arch=trained.arch,
        features=list(trained.features),
        input_columns=[],
        outputs=[],
        trained_at="",
        metrics={"test_mae": 0.015, "baseline_zero_test_mae": 0.0152, "dm_zero_mae_p": 0.3},
        processor={},
        calibration={"n_calibration": 500},
        mc={"passes": 8, "seed": 1},
        data={"first_date": "", "last_date": "", "symbols": 30, "rows": 100, "segments": {}},
        hyperparameters=asdict(trained),
        runs=runs,
        git_commit="abc",
        onnx_opset=17,
        files={},
    )
    checks = [gate.beats_zero(0.3, significance=0.05)]
    text = card.render(metadata, checks, "synthetic", significance=0.05)
    expected = {
        f"runs:/{'m' * 32}/report/predicted_vs_actual.png": "## Metrics",
        f"runs:/{'m' * 32}/report/loss_curves.png": "## Metrics",
        f"runs:/{'c' * 32}/report/reliability.png": "## Calibration",
        f"runs:/{'c' * 32}/report/coverage_by_month.png": "## Calibration",
    }
    sections = re.split(r"^(?=## )", text, flags=re.M)
    for uri, heading in expected.items():
        (section,) = [s for s in sections if s.startswith(heading)]
        assert f"`{uri}`" in section, uri
    assert f"Pictures of the {model_step} run `{'m' * 32}`" in text
