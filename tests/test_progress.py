"""Progress a person sees: rate-limited loop lines, one line per epoch and per trial, and the
table `main` ends with."""

from __future__ import annotations

import logging

import numpy as np
import optuna
import pandas as pd
import pytest

from nextday.config import compose
from nextday.models.data import Segment
from nextday.models.networks import build_network
from nextday.models.processor import FeatureProcessor
from nextday.models.spec import model_spec
from nextday.models.training import Inputs, fit, seed_everything
from nextday.reports import summary
from nextday.timing import Progress, duration
from nextday.tuning.progress import TrialLog, show_bar
from nextday.tuning.pruning import ReportObjective


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _messages(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


def test_progress_speaks_at_most_every_few_seconds_and_once_at_the_end(caplog):
    caplog.set_level(logging.INFO, logger="nextday.timing")
    clock = FakeClock()
    progress = Progress("backtest", "days", 10, every_seconds=5, clock=clock)
    for _ in range(9):
        clock.now += 2  # one day every 2 s: a line at most every 5 s
        progress.advance()
    assert _messages(caplog, "nextday.timing") == [
        "backtest: days 3/10 (30%), 6.0 s, about 14 s left",
        "backtest: days 6/10 (60%), 12 s, about 8.0 s left",
        "backtest: days 9/10 (90%), 18 s, about 2.0 s left",
    ]
    clock.now += 1  # the last day: said at once, however soon after the previous line
    progress.advance(detail="all days")
    assert _messages(caplog, "nextday.timing")[-1] == (
        "backtest: days 10/10 (100%), done in 19 s (all days)"
    )


def test_durations_read_as_people_say_them():
    assert [duration(s) for s in (0.84, 42.4, 185, 4800)] == [
        "0.8 s",
        "42 s",
        "3 min 5 s",
        "1 h 20 min",
    ]


def _tiny_fit(callbacks=None):
    seed_everything(0)
    spec = model_spec(compose(["experiment=quick", "model.max_epochs=3", "train.patience=10"]))
    rng = np.random.default_rng(0)
    width = len(spec.features)
    x, x_val = (rng.normal(size=(n, width)).astype(np.float32) for n in (600, 200))
    y, y_val = (0.01 * x[:, 0]).astype(np.float32), (0.01 * x_val[:, 0]).astype(np.float32)
    network = build_network(spec, FeatureProcessor.fit(spec.features, x, y))
    train, val = Inputs(x, y, np.ones(600)), Inputs(x_val, y_val, np.ones(200))
    return spec, fit(network, spec, train, val, callbacks=callbacks), (x_val, y_val)


def test_training_logs_one_line_per_epoch_with_losses_time_and_best(caplog):
    caplog.set_level(logging.INFO, logger="nextday.models.training")
    spec, result, _ = _tiny_fit()
    lines = _messages(caplog, "nextday.models.training")
    assert result.epochs_run == 3 and len(lines) == 3
    best = int(np.argmin(result.history["val_loss"])) + 1
    for epoch, line in enumerate(lines, start=1):
        assert line.startswith(f"fit {spec.name}/{spec.arch}: epoch {epoch}/3, loss ")
        assert ", val loss " in line and " s; best val loss " in line
    assert lines[-1].endswith(f"(epoch {best})")
    loss = result.history["val_loss"][0]
    assert f"val loss {loss:.5g}," in lines[0]


def test_a_trials_epoch_line_shows_its_objective_and_a_pruned_trial_stops_there(caplog):
    """tune's objective reaches the epoch line; the pruner stops the fit after the epoch it
    pruned at, which is logged too."""
    caplog.set_level(logging.INFO, logger="nextday.models.training")
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    trial = study.ask()  # any MAE is above 0: pruned after the first epoch
    rng = np.random.default_rng(1)
    spec = model_spec(compose(["experiment=quick"]))
    x_val = rng.normal(size=(200, len(spec.features))).astype(np.float32)
    dates = pd.bdate_range("2022-01-03", periods=20).repeat(10)
    rows = pd.DataFrame({"date": dates, "label": 0.01 * x_val[:, 0]})
    reporter = ReportObjective(trial, Segment(rows, x_val, x_val), "mae", lambda e, v: None)
    _, result, _ = _tiny_fit([reporter])
    lines = _messages(caplog, "nextday.models.training")
    assert result.epochs_run == 1 and len(lines) == 1
    assert ", val_mae " in lines[0]
    assert reporter.pruned is not None and "pruned after epoch 1" in str(reporter.pruned)


def test_each_finished_trial_is_logged_with_best_and_time_left(caplog):
    caplog.set_level(logging.INFO, logger="nextday.tuning.progress")
    clock = FakeClock()
    study = optuna.create_study(direction="minimize")
    values = iter([0.5, 0.2, None])

    def objective(trial: optuna.Trial) -> float:
        clock.now += 10  # each trial takes 10 s
        value = next(values)
        if value is None:
            raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=3, callbacks=[TrialLog(4, "mae", None, clock)])
    assert _messages(caplog, "nextday.tuning.progress") == [
        "tune: trial 0 COMPLETE, val mae 0.5; best 0.5 (trial 0); 3 of 4 trials left, "
        "about 30 s left",
        "tune: trial 1 COMPLETE, val mae 0.2; best 0.2 (trial 1); 2 of 4 trials left, "
        "about 20 s left",
        "tune: trial 2 PRUNED; best 0.2 (trial 1); 1 of 4 trials left, about 10 s left",
    ]


def test_a_timeout_that_binds_is_said_in_the_time_left():
    clock = FakeClock()
    trials = TrialLog(10, "mae", timeout=25, clock=clock)
    clock.now += 10
    trials.finished = 1
    assert trials.time_left() == (
        "9 of 10 trials left, at most about 25 s left: tune.timeout=25 s starts no trial after 15 s"
    )
    clock.now += 20
    trials.finished = 2
    assert trials.time_left().endswith("tune.timeout=25 s has passed: done")


def test_the_progress_bar_setting():
    assert show_bar(True) is True and show_bar(False) is False
    assert show_bar("auto") is False  # pytest captures stdout: no terminal
    with pytest.raises(ValueError, match="tune.progress_bar='sometimes'"):
        show_bar("sometimes")


def _outcomes() -> list[summary.StepOutcome]:
    ran, reused = summary.RAN, summary.REUSED
    return [
        summary.StepOutcome(
            "prepare",
            reused,
            12.34,
            {"rows": 21000.0, "symbols": 30.0},
            {"nextday.data.first_date": "2022-01-03", "nextday.data.last_date": "2023-12-29"},
            "p1",
        ),
        summary.StepOutcome(
            "train.normal",
            ran,
            40.0,
            {"test_ic": 0.0312, "test_mae": 0.011949, "baseline_zero_test_mae": 0.011951},
            run_id="t1",
        ),
        summary.StepOutcome(
            "calibrate.normal",
            ran,
            8.0,
            {"test_coverage_80": 0.8123, "raw_test_coverage_80": 0.2, "test_width_80": 0.03},
            run_id="c1",
        ),
        summary.StepOutcome(
            "export.normal",
            ran,
            20.0,
            tags={"nextday.version": "3", "nextday.gate": "challenger: beats zero | mae"},
            run_id="e1",
        ),
        summary.StepOutcome(
            "backtest.normal",
            ran,
            10.5,
            {
                "bt_strategy_sharpe": -2.384,
                "bt_strategy_sharpe_ci_low": -3.1,
                "bt_strategy_sharpe_ci_high": float("nan"),
            },
            run_id="b1",
        ),
        summary.StepOutcome("earnings", summary.SKIPPED, note="no earnings reports in the data"),
    ]


def test_the_summary_table_names_each_step_its_run_and_its_key_figure():
    text = summary.table(_outcomes(), total_seconds=95.0)
    lines = text.splitlines()
    assert lines[:2] == [
        "| step | run | seconds | key figure | run id |",
        "|---|---|---:|---|---|",
    ]
    assert lines[2:8] == [
        "| prepare | reused | 12.3 | 21,000 rows, 30 symbols, 2022-01-03..2023-12-29 | p1 |",
        "| train.normal | ran | 40.0 | test IC 0.0312, test MAE 0.011949 vs zero 0.011951 | t1 |",
        "| calibrate.normal | ran | 8.0 | test coverage of the 80% interval 0.812 | c1 |",
        "| export.normal | ran | 20.0 | version 3: challenger: beats zero \\| mae | e1 |",
        "| backtest.normal | ran | 10.5 | Sharpe after costs -2.38 [-3.10, n/a] | b1 |",
        "| earnings | skipped |  | no earnings reports in the data |  |",
    ]
    assert lines[-1].endswith("This main took 1 min 35 s.")
