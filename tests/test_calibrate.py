"""calibrate: interval metrics by hand, conformal coverage, validation-only fitting, MC dropout."""

import mlflow
import numpy as np
import pandas as pd
import pytest

from nextday.config import compose
from nextday.evaluation import intervals
from nextday.models.mc_dropout import mc_samples
from nextday.models.networks import build_network
from nextday.models.processor import FeatureProcessor
from nextday.models.spec import model_spec
from nextday.models.training import predict
from nextday.steps.inputs import load_model, load_prepared
from nextday.uncertainty.assessment import AssessmentSettings
from nextday.uncertainty.calibration import (
    Calibration,
    CalibrationSettings,
    calibrate,
    conformal_quantiles,
)

COMPARED = ("coverage", "width", "interval_score")  # of static, ACI and PID alike


def test_interval_metrics_on_hand_made_cases():
    lower = np.array([-1.0, -1.0, 0.0, 0.5])
    upper = np.array([1.0, 1.0, 2.0, 1.0])
    actual = np.array([0.0, 1.0, -1.0, 3.0])  # inside, on the edge, below by 1, above by 2
    assert intervals.coverage(lower, upper, actual) == 0.5
    assert intervals.width(lower, upper) == pytest.approx((2 + 2 + 2 + 0.5) / 4)
    # alpha = 0.2: penalty 2/0.2 = 10 per unit outside
    assert intervals.interval_score(lower, upper, actual, 0.8) == pytest.approx(
        (6.5 + 10 * 1 + 10 * 2) / 4
    )
    assert intervals.pinball(np.zeros(2), np.array([1.0, -1.0]), 0.9) == pytest.approx(
        (0.9 + 0.1) / 2
    )


def test_crps_of_quantiles_approaches_the_normal_closed_form():
    from scipy import stats

    levels = np.linspace(0, 1, 1001)[1:-1]
    quantiles = stats.norm.ppf(levels)[None, :].repeat(3, axis=0)
    actual = np.array([0.0, 1.0, -2.0])
    closed = [
        y * (2 * stats.norm.cdf(y) - 1) + 2 * stats.norm.pdf(y) - 1 / np.sqrt(np.pi) for y in actual
    ]
    assert intervals.crps_from_quantiles(quantiles, levels, actual) == pytest.approx(
        np.mean(closed), rel=0.01
    )


def _heteroskedastic(n, rng):
    vol = np.exp(rng.normal(np.log(0.015), 0.4, n))
    features = np.column_stack([vol, vol * np.exp(rng.normal(0, 0.2, n))])
    noise = rng.standard_t(4, n) / np.sqrt(2) * vol  # fat tails, scale follows vol
    return features, np.full(n, 1e-3), noise


def test_conformal_intervals_reach_their_coverage_on_exchangeable_data():
    rng = np.random.default_rng(0)
    features, mc_sd, y = _heteroskedastic(30_000, rng)
    train, val, test = slice(0, 10_000), slice(10_000, 15_000), slice(15_000, 30_000)
    zero = np.zeros(30_000)
    cal = calibrate(
        ["a", "b"],
        (features[train], mc_sd[train], y[train]),
        (features[val], mc_sd[val], zero[val], y[val]),
        grid=99,
        passes=1,
    )
    scale = cal.scale(features[test], mc_sd[test])
    n = test.stop - test.start
    for level in (0.5, 0.8, 0.9):
        low, high = cal.interval(zero[test], scale, level)
        covered = intervals.coverage(low, high, y[test])
        error = 3 * np.sqrt(level * (1 - level) / 5_000) + 3 * np.sqrt(level * (1 - level) / n)
        assert abs(covered - level) < error, (level, covered)
    # the scale model earns its keep against a constant interval of the same coverage: a
    # better interval score, and coverage that holds in calm and in wild rows alike
    low, high = cal.interval(zero[test], scale, 0.8)
    covered = intervals.coverage(low, high, y[test])
    half = np.quantile(np.abs(y[test]), covered)
    ours = intervals.interval_score(low, high, y[test], 0.8)
    assert ours < intervals.interval_score(-half + zero[test], half + zero[test], y[test], 0.8)
    wild = features[test][:, 0] > np.quantile(features[test][:, 0], 0.8)
    assert abs(intervals.coverage(low[wild], high[wild], y[test][wild]) - 0.8) < 0.03
    assert intervals.coverage(-half, half, y[test][wild]) < 0.7


def test_conformal_quantiles_apply_the_finite_sample_correction():
    values = np.arange(1, 21.0)  # n = 20
    # upper: the ceil(21 * 0.9) = 19th smallest; lower: the floor(21 * 0.1) = 2nd smallest
    assert conformal_quantiles(values, np.array([0.9]))[0] == 19.0
    assert conformal_quantiles(values, np.array([0.1]))[0] == 2.0
    with pytest.raises(ValueError, match="at least 20"):
        conformal_quantiles(values[:5], np.array([0.5]))


def test_calibration_uses_validation_rows_only():
    rng = np.random.default_rng(1)
    features, mc_sd, y = _heteroskedastic(6_000, rng)
    zero = np.zeros(3_000)
    train = (features[:3_000], mc_sd[:3_000], y[:3_000])
    base = calibrate(["a", "b"], train, (features[3_000:], mc_sd[3_000:], zero, y[3_000:]), 99, 1)
    # nothing else goes in: the same inputs give the same calibration ...
    again = calibrate(["a", "b"], train, (features[3_000:], mc_sd[3_000:], zero, y[3_000:]), 99, 1)
    assert again == base
    # ... and doubling the validation residuals doubles the conformal quantiles
    doubled = calibrate(
        ["a", "b"], train, (features[3_000:], mc_sd[3_000:], zero, 2 * y[3_000:]), 99, 1
    )
    np.testing.assert_allclose(doubled.quantiles, 2 * np.array(base.quantiles))


def test_calibration_round_trips_through_json(tmp_path):
    rng = np.random.default_rng(2)
    features, mc_sd, y = _heteroskedastic(2_000, rng)
    cal = calibrate(["a", "b"], (features, mc_sd, y), (features, mc_sd, np.zeros(2_000), y), 19, 5)
    cal.to_json(tmp_path / "c.json")
    assert Calibration.from_json(tmp_path / "c.json") == cal


@pytest.fixture(scope="module")
def network():
    spec = model_spec(compose(["experiment=quick"]))
    x = np.random.default_rng(0).normal(size=(300, 20)).astype(np.float32)
    return build_network(spec, FeatureProcessor.fit(spec.features, x, x[:, 0] * 0.01)), x


def test_mc_passes_and_seed_are_honoured(network):
    model, x = network
    a = mc_samples(model, x, passes=7, seed=11)
    b = mc_samples(model, x, passes=7, seed=11)
    c = mc_samples(model, x, passes=7, seed=12)
    assert a.shape == (7, 300)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.all(a.std(axis=0) > 0)  # dropout is on


def test_mc_mean_with_dropout_off_is_the_deterministic_prediction(network):
    model, x = network
    samples = mc_samples(model, x, passes=5, seed=3, dropout=False)
    np.testing.assert_allclose(samples.mean(axis=0), predict(model, x), rtol=1e-5, atol=1e-9)
    assert np.all(samples.std(axis=0) < 1e-9)


def test_quick_calibrate_logs_coverage_beside_the_raw_mc_interval(quick_chain, tmp_path):
    """The calibrate run of the session's quick chain, read; what it downloads goes to
    tmp_path (`root`). MLflow stays pointed at the chain's store after `open`."""
    root, train_id = tmp_path, quick_chain.runs["train"]
    with quick_chain.open("calibrated") as (_, composed):
        cfg = composed()
    run = mlflow.get_run(quick_chain.runs["calibrate"])
    assert run.data.tags["nextday.step"] == "calibrate"
    assert run.data.tags["nextday.input.train"] == train_id
    metrics = run.data.metrics
    for name in (
        "test_coverage_80",
        "test_width_80",
        "test_interval_score_80",
        "test_crps",
        "test_pinball_10",
        "test_pinball_50",
        "test_pinball_90",
        "raw_test_coverage_80",
        "const_test_width_80",
        "val_coverage_80",
        *(f"test_{rule}_{m}_80" for rule in ("aci", "pid") for m in COMPARED),
    ):
        assert name in metrics, name
    assert metrics["raw_test_coverage_80"] < 0.5  # dropout alone is far too narrow
    assert abs(metrics["val_coverage_80"] - 0.8) < 0.02  # conformal on validation rows
    assert 0.7 < metrics["test_coverage_80"] < 0.9
    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/calibration_report.md")
    assert "Reliability" in text and "volatility" in text and "Conformal PID" in text
    # static, ACI and PID side by side by volatility quintile and by month, on every test row
    tables = {
        name: pd.read_csv(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id,
                artifact_path=f"report/coverage_by_{name}.csv",
                dst_path=str(root / "tables"),
            )
        )
        for name in ("volatility", "month")
    }
    assert list(tables["volatility"]["volatility"]) == ["1 calm", "2", "3", "4", "5 wild"]
    assert tables["volatility"]["rows"].sum() == tables["month"]["rows"].sum()
    for method in ("static", "aci", "pid"):
        assert {f"{method}_{m}" for m in COMPARED} <= set(tables["month"]), method
    cal = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/calibration.json")
    assert cal["passes"] == 8 and len(cal["quantiles"]) == 99

    # the refit backtest calibrates each fold with Calibration.fit: on the same model and
    # rows it must give exactly the calibration this step logged (and export deploys)
    prepared = load_prepared(run.data.tags["nextday.input.prepare"], root / "check")
    model = load_model(train_id, root / "check")
    settings = CalibrationSettings.from_config(cfg.calibrate, model.spec)
    refitted = Calibration.fit(model, model.arrange(prepared.dataset, prepared.truth), settings)
    logged = Calibration.from_json(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="calibration.json", dst_path=str(root / "check")
        )
    )
    assert refitted.scale_features == logged.scale_features
    assert refitted.n_calibration == logged.n_calibration
    for field in ("scale_weights", "quantiles"):
        np.testing.assert_allclose(getattr(refitted, field), getattr(logged, field), rtol=1e-12)
    assert refitted.sigma_factor == pytest.approx(logged.sigma_factor, rel=1e-12)


def test_the_online_rules_correct_the_headline_interval():
    settings = AssessmentSettings.from_config(compose().calibrate)
    assert settings.online.level == settings.level == 0.8
    with pytest.raises(ValueError, match="calibrate.online.level 0.5 differs"):
        AssessmentSettings.from_config(compose(["calibrate.online.level=0.5"]).calibrate)


def test_apply_gives_the_served_outputs_of_the_calibrated_interval():
    rng = np.random.default_rng(4)
    features, mc_sd, y = _heteroskedastic(3_000, rng)
    cal = calibrate(["a", "b"], (features, mc_sd, y), (features, mc_sd, np.zeros(3_000), y), 99, 6)
    samples = rng.normal(0.001, 0.002, size=(6, 500))
    out = cal.apply(samples, features[:500])
    assert list(out) == ["prediction", "sigma", "p10", "p50", "p90"]
    mean, sd = samples.mean(axis=0), samples.std(axis=0)
    scale = cal.scale(features[:500], sd)
    low, high = cal.interval(mean, scale, 0.8)
    np.testing.assert_allclose(out["prediction"], mean)
    np.testing.assert_allclose(out["p10"], low)
    np.testing.assert_allclose(out["p90"], high)
    np.testing.assert_allclose(out["sigma"], scale * cal.sigma_factor)
    assert np.all(out["p10"] < out["p50"]) and np.all(out["p50"] < out["p90"])
