"""Metrics and the Diebold-Mariano test against hand computations."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nextday.evaluation import claims
from nextday.evaluation.diebold_mariano import diebold_mariano
from nextday.evaluation.evaluate import evaluate
from nextday.evaluation.metrics import (
    cross_section_min,
    daily_ic,
    ic_undefined_reason,
    point_metrics,
)
from nextday.pages.markdown import decimals_to_tell_apart, digits_to_tell_apart, table


def test_point_metrics_on_a_hand_made_case():
    dates = np.array(["d1"] * 4 + ["d2"] * 4)
    actual = np.array([0.01, -0.02, 0.03, 0.0, 0.02, 0.01, -0.01, -0.03])
    prediction = np.array([0.02, -0.01, 0.01, 0.01, 0.01, 0.00, 0.00, -0.02])
    with cross_section_min(4):  # a hand-sized cross-section
        m = point_metrics(prediction, actual, dates)
    error = prediction - actual
    assert m["mae"] == pytest.approx(np.mean(np.abs(error)))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(error**2)))
    assert m["r2"] == pytest.approx(1 - np.sum(error**2) / np.sum((actual - actual.mean()) ** 2))
    # direction: rows with a non-zero actual only (7 of them); prediction 0 counts as wrong
    moved = actual != 0
    assert m["dir_acc"] == pytest.approx(
        np.mean(np.sign(prediction[moved]) == np.sign(actual[moved]))
    )
    expected_ic = np.mean(
        [
            stats.spearmanr(prediction[:4], actual[:4])[0],
            stats.spearmanr(prediction[4:], actual[4:])[0],
        ]
    )
    assert m["ic"] == pytest.approx(expected_ic)
    assert m["skill"] == pytest.approx(1 - m["mae"] / np.mean(np.abs(actual)))


def test_constant_predictor_has_no_ic_and_zero_skill():
    actual = np.array([0.01, -0.02, 0.03, 0.01])
    m = point_metrics(np.zeros(4), actual, np.array(["d"] * 4))
    assert np.isnan(m["ic"]) and m["skill"] == 0.0
    assert daily_ic(np.zeros(4), actual, np.array(["d"] * 4)).empty


def test_evaluate_names_metrics_the_design_way():
    actual = np.array([0.01, -0.02, 0.03, 0.01])
    dates = np.array(["d"] * 4)
    with cross_section_min(4):
        names = evaluate(
            {"model": actual * 0.5, "zero": np.zeros(4), "oracle": actual}, actual, dates, "test"
        )
    assert {"test_mae", "test_ic", "baseline_zero_test_mae", "oracle_test_ic"} <= set(names)
    assert "baseline_zero_test_ic" not in names  # undefined, never logged as NaN


def test_diebold_mariano_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    days = pd.bdate_range("2024-01-01", periods=60).repeat(5).to_numpy()
    actual = rng.normal(0, 0.02, len(days))
    error_a = rng.normal(0, 0.01, len(days))
    error_b = rng.normal(0, 0.012, len(days))
    result = diebold_mariano(error_a, error_b, days, loss="mse")
    daily = pd.Series(error_a**2 - error_b**2).groupby(days).mean().to_numpy()
    n = len(daily)
    dm = daily.mean() / np.sqrt(np.mean((daily - daily.mean()) ** 2) / n)
    dm *= np.sqrt((n + 1 - 2) / n)  # Harvey-Leybourne-Newbold for h = 1
    assert result.n_dates == 60
    assert result.statistic == pytest.approx(dm)
    assert result.p_better == pytest.approx(stats.t(n - 1).cdf(dm))
    assert result.statistic < 0 and result.p_better < 0.05  # a has the smaller errors
    assert actual.size == len(days)


def test_diebold_mariano_rejects_equal_forecasts_at_its_nominal_rate():
    rng = np.random.default_rng(1)
    days = pd.bdate_range("2024-01-01", periods=100).repeat(3).to_numpy()
    p_values = []
    for _ in range(400):
        a, b = rng.standard_t(4, (2, len(days))) * 0.01
        p_values.append(diebold_mariano(a, b, days, loss="mae").p_value)
    rejected = np.mean(np.array(p_values) < 0.05)
    assert 0.02 <= rejected <= 0.085


def test_ic_uses_only_dates_with_enough_symbols():
    rng = np.random.default_rng(3)
    dates = np.array(["wide"] * 12 + ["narrow"] * 3)
    actual = rng.normal(size=15)
    prediction = actual + rng.normal(size=15)
    with cross_section_min(10):
        daily = daily_ic(prediction, actual, dates)
        assert list(daily.index) == ["wide"]
        assert daily["wide"] == pytest.approx(stats.spearmanr(prediction[:12], actual[:12])[0])
        assert ic_undefined_reason(dates) is None
        narrow = point_metrics(prediction[12:], actual[12:], dates[12:])
        assert np.isnan(narrow["ic"])
        reason = ic_undefined_reason(dates[12:])
        assert "no date has at least 10 symbols" in reason and "the widest has 3" in reason


def test_claims_say_beats_only_below_the_level():
    assert claims.versus("the zero predictor", 0.003, 0.05).startswith(
        "the model beats the zero predictor (one-sided Diebold-Mariano p = 0.003 < 0.05)"
    )
    text = claims.versus("the zero predictor", 0.2, 0.05)
    assert "does not beat" in text and "not significant" in text and "p = 0.2" in text
    assert "beats" not in text.replace("does not beat", "")
    assert claims.outcome(float("nan"), 0.05) == claims.UNTESTED
    assert claims.outcome(0.049, 0.05) == claims.BEATS


def test_tables_print_enough_digits_to_tell_compared_numbers_apart():
    maes = [0.0119512, 0.0119534]
    assert digits_to_tell_apart(maes) == 5
    assert decimals_to_tell_apart([1.21605, 1.21956]) == 3
    assert decimals_to_tell_apart([1.19512, 1.19534]) == 4
    text = table(pd.DataFrame({"forecast": ["model", "zero"], "mae": maes}))
    assert "0.011951 |" in text and "0.011953 |" in text
