"""train: real training on the quick preset, and the behaviours the numbers rest on."""

import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from nextday.config import compose
from nextday.features import ALL_FEATURES, TECHNICAL_FEATURES
from nextday.models.data import arrange
from nextday.models.model import NextdayModel
from nextday.models.networks import build_network, transfer_weights
from nextday.models.processor import FeatureProcessor
from nextday.models.spec import ConfigError, check_dataset_columns, model_spec
from nextday.models.training import Inputs, fit, predict, seed_everything
from nextday.models.windows import window_index
from nextday.steps.train import run_train


def _spec(*overrides):
    return model_spec(compose(["experiment=quick", *overrides]))


def _toy_dataset(n_symbols=4, n_days=60, seed=0):
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2022-01-03", periods=n_days)
    frame = pd.DataFrame(
        [(f"S{s}", d) for s in range(n_symbols) for d in days], columns=["symbol", "date"]
    )
    position = np.tile(np.arange(n_days), n_symbols)
    frame["split"] = np.where(position < 40, "train", np.where(position < 50, "val", "test"))
    frame["is_earnings"] = rng.random(len(frame)) < 0.1
    frame["label"] = rng.normal(0, 0.01, len(frame))
    for name in ALL_FEATURES:
        frame[name] = rng.normal(0, 1, len(frame)).astype(np.float32)
    return frame


@pytest.fixture(scope="module")
def quick_run(quick_chain):
    """The train run of the session's quick chain (read, not added to)."""
    with quick_chain.open("calibrated") as (_, cfg):
        runs = quick_chain.runs
        yield mlflow.get_run(runs["train"]), runs["prepare"], cfg()


def test_quick_train_logs_every_metric_beside_baselines_and_oracle(quick_run):
    run, prepare_id, _ = quick_run
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["nextday.step"] == "train" and tags["nextday.model"] == "normal"
    assert tags["nextday.input.prepare"] == prepare_id
    metrics = run.data.metrics
    for segment in ("val", "test"):
        for metric in ("mae", "rmse", "r2", "dir_acc", "ic", "skill"):
            assert f"{segment}_{metric}" in metrics, f"{segment}_{metric}"
            assert f"oracle_{segment}_{metric}" in metrics
            for baseline in ("linear", "tree"):
                assert f"baseline_{baseline}_{segment}_{metric}" in metrics
        assert (
            f"baseline_zero_{segment}_mae" in metrics and f"baseline_mean_{segment}_mae" in metrics
        )
    for name in (
        "dm_zero_mse_stat",
        "dm_zero_mse_p",
        "dm_zero_mae_p",
        "dm_best_mse_p",
        "target_test_mae",
    ):
        assert name in metrics, name
    # the oracle is the floor: no forecast beats it on MAE by more than noise
    assert metrics["oracle_test_mae"] <= metrics["baseline_zero_test_mae"]
    client = mlflow.MlflowClient()
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert len(history) == metrics["epochs_run"] and [m.step for m in history] == list(
        range(len(history))
    )
    report = {f.path for f in client.list_artifacts(run.info.run_id, "report")}
    for plot in (
        "loss_curves",
        "predicted_vs_actual",
        "error_histogram",
        "error_by_move_size",
        "ic_by_month",
    ):
        assert f"report/{plot}.png" in report
    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/validation_report.md")
    assert "zero predictor" in text and "Permutation importance" in text


def test_logged_model_predicts_what_the_run_measured(quick_run):
    run, _, _ = quick_run
    folder = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="model_files"
    )
    processor = FeatureProcessor.from_json(f"{folder}/processor.json")
    spec = json.loads(Path(folder, "spec.json").read_text())
    assert list(processor.features) == spec["features"] == TECHNICAL_FEATURES
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    x = np.zeros((3, 20), dtype=np.float32) + np.array(processor.center, dtype=np.float32)
    assert np.asarray(model.predict(x)).shape[0] == 3


def test_processor_sees_training_rows_only(quick_run):
    _, _, cfg = quick_run
    dataset = _toy_dataset()
    dataset.loc[dataset["split"] != "train", TECHNICAL_FEATURES] += 1000.0
    cfg = OmegaConf.merge(cfg, {"model": {"max_epochs": 1}})
    trained = NextdayModel(model_spec(cfg)).fit(dataset)
    train_rows = (dataset["split"] == "train") & ~dataset["is_earnings"]
    training = dataset.loc[train_rows, TECHNICAL_FEATURES].to_numpy(dtype=np.float64)
    q = float(cfg.train.processor.clip_quantile)
    median = np.median(training, axis=0)
    upper = [np.quantile(c[c > m], 1 - 2 * q) for c, m in zip(training.T, median, strict=True)]
    np.testing.assert_allclose(trained.processor_.upper, upper, rtol=1e-6, atol=1e-9)
    expected = np.median(trained.processor_.clip(training), axis=0)
    np.testing.assert_allclose(trained.processor_.center, expected, atol=1e-5)
    assert max(trained.processor_.upper) < 10


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path):
    seed_everything(0)
    spec = _spec("model.max_epochs=40", "train.patience=3", "train.learning_rate=0.01")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 20)).astype(np.float32)
    y = (0.01 * x[:, 0]).astype(np.float32)
    x_val = rng.normal(size=(500, 20)).astype(np.float32)
    y_val = (-0.01 * x_val[:, 0]).astype(np.float32)  # the opposite relation: val loss rises
    processor = FeatureProcessor.fit(spec.features, x, y)
    model = build_network(spec, processor)
    result = fit(
        model,
        spec,
        Inputs(x, y, np.ones(2000)),
        Inputs(x_val, y_val, np.ones(500)),
        checkpoint=tmp_path / "best.keras",
    )
    assert result.stopped_early and result.epochs_run == result.best_epoch + 1 + spec.patience
    assert result.epochs_run < 40
    best = keras.models.load_model(tmp_path / "best.keras")
    np.testing.assert_allclose(predict(model, x_val), predict(best, x_val), atol=1e-7)
    final_loss = model.evaluate(x_val, y_val, verbose=0)
    assert final_loss == pytest.approx(min(result.history["val_loss"]), rel=1e-4)


@pytest.mark.integration  # two 60-epoch fits: 17 s on two cores
def test_sample_weights_reach_the_loss():
    spec = _spec(
        "train.loss=mse", "model.max_epochs=60", "train.learning_rate=0.01", "train.patience=60"
    )
    x = np.zeros((400, 20), dtype=np.float32)
    heavy = np.arange(400) < 40
    y = np.where(heavy, 0.05, -0.01).astype(np.float32)
    outcomes = []
    for weight in (1.0, 20.0):
        seed_everything(1)
        weights = np.where(heavy, weight, 1.0)
        model = build_network(spec, FeatureProcessor.fit(spec.features, x, y))
        fit(model, spec, Inputs(x, y, weights), Inputs(x, y, weights))
        outcomes.append(float(predict(model, x[:1])[0]))
        target = np.average(y, weights=weights)
        assert outcomes[-1] == pytest.approx(target, abs=0.004)
    assert outcomes[1] - outcomes[0] > 0.02


def test_lstm_windows_use_only_past_rows_of_the_same_symbol():
    symbols = np.array(["A"] * 5 + ["B"] * 4)
    index, valid = window_index(symbols, 3)
    assert valid.tolist() == [False, False, True, True, True, False, False, True, True]
    assert index[4].tolist() == [2, 3, 4] and index[8].tolist() == [6, 7, 8]
    dataset = _toy_dataset(n_symbols=3, n_days=60)
    codes = dataset["symbol"].str[1:].astype(int)
    dataset["ret_1d"] = codes * 1e4 + dataset["date"].rank(method="dense")  # symbol and day
    spec = _spec("arch=lstm", "arch.window=5")
    data = arrange(spec, dataset)
    column = TECHNICAL_FEATURES.index("ret_1d")
    for segment in data.judged.values():
        windows = segment.x[:, :, column]
        assert np.all(np.diff(windows, axis=1) == 1)  # consecutive earlier days, in order
        np.testing.assert_array_equal(windows[:, -1], segment.flat[:, column])  # ends at t
        assert np.all(windows // 1e4 == (windows[:, -1:] // 1e4))  # one symbol per window
    assert data.dropped_without_window == 3 * 4


def test_transfer_copies_the_normal_models_weights_by_feature_name():
    normal = _spec()
    earnings = _spec("model=earnings")
    x = np.random.default_rng(0).normal(size=(50, 37)).astype(np.float32)
    source = build_network(normal, FeatureProcessor.fit(normal.features, x[:, :20], x[:, 0]))
    target = build_network(earnings, FeatureProcessor.fit(earnings.features, x, x[:, 0]))
    fresh = target.get_layer("dense_0").get_weights()[0].copy()
    assert transfer_weights(source, target, normal.features, earnings.features) == 4
    kernel = target.get_layer("dense_0").get_weights()[0]
    np.testing.assert_array_equal(kernel[:20], source.get_layer("dense_0").get_weights()[0])
    np.testing.assert_array_equal(kernel[20:], fresh[20:])
    np.testing.assert_array_equal(
        target.get_layer("output").get_weights()[0], source.get_layer("output").get_weights()[0]
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["arch.dropout=[-0.1,0.2,0.0]"], "dropout rates must be in"),
        (["arch.dropout=[0.3,0.2]"], "one rate per layer"),
        (["arch.name=transformer"], "arch='transformer' is unknown"),
        (["model.feature_groups=[technical,news]"], "unknown groups"),
    ],
)
def test_bad_config_fails_before_training(overrides, message, root):
    cfg = compose(["experiment=quick", f"paths.root={root}", *overrides])
    with pytest.raises(ConfigError, match=message):
        run_train(cfg)
    assert not (root / "mlflow.db").exists()  # failed before any run was started


def test_feature_list_that_does_not_match_the_dataset_is_named():
    dataset = _toy_dataset().drop(columns=["rsi_14", "eps_surprise"])
    with pytest.raises(ConfigError, match=r"36 of the 37 .*missing: \['eps_surprise'\]"):
        check_dataset_columns(
            _spec("model=earnings"), dataset.drop(columns=[]).assign(rsi_14=0).columns
        )


def test_the_same_seed_gives_the_same_model():
    spec = _spec("model.max_epochs=3")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 20)).astype(np.float32)
    y = (0.01 * x[:, 1] + rng.normal(0, 0.01, 600)).astype(np.float32)
    predictions = []
    for _ in range(2):
        seed_everything(7)
        model = build_network(spec, FeatureProcessor.fit(spec.features, x, y))
        fit(
            model,
            spec,
            Inputs(x, y, np.ones(600)),
            Inputs(x[:100], y[:100], np.ones(100)),
            steps_per_execution=8,
        )
        predictions.append(predict(model, x))
    np.testing.assert_array_equal(predictions[0], predictions[1])


def test_too_few_earnings_samples_are_refused_with_the_counts():
    from nextday.models.data import DataRequirementError, check_segments, segment_counts

    spec = model_spec(compose(["model=earnings"]))
    dataset = _toy_dataset()
    counts = segment_counts(dataset)
    have = {s: counts[s]["earnings"] for s in ("val", "test")}
    needed = max(have.values()) + 1
    with pytest.raises(DataRequirementError) as caught:
        check_segments(spec, counts, needed)
    message = str(caught.value)
    assert f"needs at least {needed} rows" in message
    for segment, n in have.items():
        assert f"{segment} (earnings rows): {n:,}" in message
    assert "data.earnings_path" in message
    check_segments(spec, counts, min(have.values()))  # enough: no error
