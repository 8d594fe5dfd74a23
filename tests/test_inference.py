"""ONNX graphs of small untrained networks (MLP and LSTM) and ModelInference on them: parity
with Keras, the MC graph's statistics, the float16 variant, input checks and checksums."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from nextday.config import compose
from nextday.contracts import artifacts, tags
from nextday.contracts.metadata import ExportMetadata
from nextday.contracts.outputs import OUTPUTS
from nextday.data.store import Store
from nextday.export import metadata, parity
from nextday.export.files import write_onnx
from nextday.export.graphs import network_of
from nextday.export.settings import ExportSettings
from nextday.inference import ChecksumError, InputError, ModelInference
from nextday.inference.checks import input_columns, to_array
from nextday.inference.prediction_log import PredictionLogger
from nextday.models.mc_dropout import with_dropout_rate
from nextday.models.networks import build_network
from nextday.models.processor import FeatureProcessor
from nextday.models.spec import model_spec
from nextday.uncertainty.calibration import Calibration
from nextday.uncertainty.online import OnlineSettings, ServedOnline
from nextday.uncertainty.stored_state import TABLE as STATE_TABLE
from nextday.uncertainty.stored_state import CalibrationStore, state_rows

SCALE_FEATURES = ("vol_20d", "hl_range")
TECHNICAL = model_spec(compose(["experiment=quick"])).features


def _calibration(passes: int) -> Calibration:
    levels = tuple(np.round(np.linspace(0.05, 0.95, 19), 2))
    return Calibration(
        scale_features=SCALE_FEATURES,
        scale_weights=(-1.0, 0.5, 0.2, 0.1),
        levels=levels,
        quantiles=tuple(float(v) for v in np.linspace(-1.5, 1.5, 19)),
        sigma_factor=0.9,
        n_calibration=100,
        passes=passes,
    )


def _export(folder, overrides, passes=10, online: ServedOnline | None = None):
    """A tiny export folder (random weights), as export writes it, minus MLflow; `online`:
    the online calibration it serves (None: the static interval)."""
    cfg = compose(["experiment=quick", *overrides])
    spec = model_spec(cfg)
    rng = np.random.default_rng(0)
    x = rng.normal(0.01, 0.02, size=(400, spec.n_features)).astype(np.float32)
    model = build_network(spec, FeatureProcessor.fit(spec.features, x, x[:, 0]))
    calibration = _calibration(passes)
    files = write_onnx(model, spec, calibration, folder, 1, passes, seed=5, opset=17)
    (folder / artifacts.CARD.name).write_text("# card\n")
    settings = ExportSettings.from_config(cfg.export)
    metadata.seal(
        ExportMetadata(
            registered_model=f"nextday-{spec.name}",
            version=1,
            model=spec.name,
            arch=spec.arch,
            features=list(spec.features),
            input_columns=input_columns(spec.features, spec.window),
            outputs=list(OUTPUTS),
            trained_at="2024-01-01T00:00:00+00:00",
            metrics={},
            processor={},
            calibration=asdict(calibration),
            mc={"passes": passes, "seed": 5},
            data={},
            hyperparameters=asdict(spec),
            runs={},
            git_commit="unknown",
            onnx_opset=17,
            files=files,
            window=spec.window,
            serving=metadata.serving_policy(settings.serving, spec, x),  # ranges of x
            online=online.to_dict() if online is not None else {},
        ),
        folder,
    )
    window = spec.window
    if window > 1:
        x = rng.normal(0.01, 0.02, size=(400, window, spec.n_features)).astype(np.float32)
    return model, spec, x, files


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlp")
    return (folder, *_export(folder, []))


def test_files_are_named_by_arch_model_and_version(mlp):
    folder, _, _, _, files = mlp
    assert files["mc"] == "mlp_normal_v1.onnx"
    for name in files.values():
        assert (folder / name).stat().st_size > 0
    sums = ExportMetadata.from_json(folder / "metadata.json").sha256
    assert set(sums) == {*files.values(), "model_card.md"}
    assert ModelInference(folder).metadata.files == files  # read as ExportMetadata


def test_deterministic_graph_matches_keras_on_edge_cases(mlp):
    folder, model, spec, x, files = mlp
    session = ort.InferenceSession(str(folder / files["deterministic"]))
    cases = parity.edge_cases(x, network_of(model, spec), seed=1)
    table = parity.deterministic(model, session, cases)
    assert list(table["rows"])[-2:] == [1, 10_000]
    assert table["max_abs_diff"].max() <= 1e-5, table


def test_lstm_graphs_match_keras(tmp_path):
    model, spec, x, files = _export(tmp_path, ["arch=lstm", "arch.window=5"])
    session = ort.InferenceSession(str(tmp_path / files["deterministic"]))
    table = parity.deterministic(model, session, {"windows": x})
    assert table["max_abs_diff"].max() <= 1e-5
    inference = ModelInference(tmp_path)
    out = inference.predict_batch(x[:7])
    assert len(out) == 7
    # as a table: one column per feature and lag, the row's own day last
    columns = input_columns(spec.features, 5)
    assert columns[-1] == f"{spec.features[-1]}_lag0"
    table = pd.DataFrame(x[:7].reshape(7, -1), columns=columns)
    assert inference.predict_batch(table).shape == (7, 6)


def test_mc_graph_matches_keras_mc_dropout_statistically(mlp):
    folder, model, _, x, files = mlp
    session = ort.InferenceSession(str(folder / files["mc_optimized"]))
    result = parity.mc(model, session, x[:64], passes=10, calls=20, seed=3)
    assert parity.mc_passes(result, 0.02, (0.85, 1.15)), result
    # and a graph whose dropout differs from the model's is caught
    with with_dropout_rate(model, 0.6):
        wrong = parity.mc(model, session, x[:64], passes=10, calls=20, seed=3)
    assert not parity.mc_passes(wrong, 0.02, (0.85, 1.15)), wrong


def test_mc_outputs_apply_the_calibration(mlp):
    folder, _, spec, x, _ = mlp
    inference = ModelInference(folder)
    raw = inference.run(x[:50])
    calibration = _calibration(10)
    columns = [spec.features.index(f) for f in SCALE_FEATURES]
    scale = calibration.scale(x[:50, columns], raw["mc_sd"])
    np.testing.assert_allclose(raw["sigma"], scale * 0.9, rtol=1e-4)
    np.testing.assert_allclose(
        raw["p90"], raw["prediction"] + scale * calibration.quantile(0.9), rtol=1e-4, atol=1e-7
    )
    assert np.all(raw["p10"] < raw["p50"]) and np.all(raw["p50"] < raw["p90"])


def test_float16_variant_stays_close_to_float32(mlp):
    folder, _, _, x, files = mlp
    full = ort.InferenceSession(str(folder / files["mc"]))
    half = ort.InferenceSession(str(folder / files["mc_float16"]))
    assert half.get_inputs()[0].type == "tensor(float)"  # float32 in and out
    a = full.run(["prediction"], {"features": x})[0]
    b = half.run(["prediction"], {"features": x})[0]
    assert b.dtype == np.float32
    assert np.abs(a - b).max() < 1e-3 * max(1.0, np.abs(a).max())


def test_predict_one_row_agrees_with_the_batch(mlp):
    folder, _, spec, x, _ = mlp
    inference = ModelInference(folder, device="cpu")
    assert inference.provider == "CPUExecutionProvider"
    row = dict(zip(spec.features, x[0].tolist(), strict=True))
    one = inference.predict(row)
    assert set(one) == {"prediction", "sigma", "p10", "p50", "p90", "out_of_range"}
    assert one["out_of_range"] is False
    by_vector = inference.predict(list(x[0]))
    batch = inference.predict_batch([row, row])
    frame = inference.predict_batch(pd.DataFrame([row], index=["AAPL"]))
    assert list(frame.index) == ["AAPL"]
    # every form reaches the graph as the same row, whatever the column order
    shuffled = pd.DataFrame([row])[list(reversed(spec.features))]
    for form in ([row], [list(x[0])], shuffled):
        np.testing.assert_array_equal(to_array(form, spec.features), x[:1])
    # masks are drawn per call, so answers agree within the MC noise, not exactly
    noise = 6 * float(inference.run(x[:1])["mc_sd"][0])
    for got in (by_vector, batch.iloc[0].to_dict(), frame.iloc[0].to_dict()):
        assert abs(got["prediction"] - one["prediction"]) < noise
        assert got["p10"] < got["p90"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda f, x: pd.DataFrame(x[:3], columns=f).drop(columns=[f[2]]), "missing feature"),
        (lambda f, x: pd.DataFrame(x[:3], columns=f).assign(extra=1.0), "unexpected feature"),
        (lambda f, x: pd.DataFrame(x[:0], columns=f), "empty batch"),
        (lambda f, x: x[:3, :-1], r"shape \(rows, 20\)"),
        (lambda f, x: np.where(np.arange(20) == 4, np.nan, x[:3]), "row 0, column"),
        (lambda f, x: [dict(zip(f, x[0], strict=True)), {"ret_1d": 1.0}], "row 1: missing"),
        (
            lambda f, x: (
                pd.DataFrame(x[:2], columns=f).astype({f[1]: object}).assign(**{f[1]: ["a", "b"]})
            ),
            "is not a number",
        ),
        (lambda f, x: "ret_1d=0.1", "DataFrame, a 2-D array or a list"),
        (
            lambda f, x: pd.DataFrame(x[:2], columns=f).assign(
                **{f[0]: pd.to_datetime(["2021-01-04", "2021-01-05"])}
            ),
            r"\['ret_1d'\] \(1\) hold datetimes",
        ),
        (
            lambda f, x: pd.DataFrame(x[:2], columns=f).assign(**{f[3]: pd.to_timedelta([1, 2])}),
            "hold timedeltas",
        ),
        (lambda f, x: x[:2].astype(np.complex128), "holds complex numbers"),
        (
            lambda f, x: [{**dict(zip(f, x[0], strict=True)), f[5]: True}],
            f"row 0, column '{TECHNICAL[5]}': True is a boolean",
        ),
        (lambda f, x: [], "empty batch"),
    ],
)
def test_bad_batches_are_refused_with_the_problem_named(mlp, make, message):
    folder, _, spec, x, _ = mlp
    inference = ModelInference(folder)
    with pytest.raises(InputError, match=message):
        inference.predict_batch(make(list(spec.features), x.astype(np.float64)))


def test_bad_rows_are_refused_with_the_problem_named(mlp):
    folder, _, spec, x, _ = mlp
    inference = ModelInference(folder)
    row = dict(zip(spec.features, x[0].tolist(), strict=True))
    with pytest.raises(InputError, match="is inf"):
        inference.predict({**row, "vol_20d": float("inf")})
    with pytest.raises(InputError, match="column 'vol_20d' is NaN"):
        inference.predict({**row, "vol_20d": float("nan")})
    with pytest.raises(InputError, match="hold 20 values"):
        inference.predict(list(x[0][:5]))
    with pytest.raises(InputError, match="too large for float32"):
        inference.predict({**row, "ret_1d": 1e300})
    with pytest.raises(InputError, match="mapping of feature"):
        inference.predict(3.0)


def test_a_tampered_file_is_refused(mlp, tmp_path):
    folder, *_ = mlp
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    ModelInference(copy)  # intact: loads
    target = copy / json.loads((copy / "metadata.json").read_text())["files"]["mc_optimized"]
    target.write_bytes(target.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ChecksumError, match="does not match its checksum"):
        ModelInference(copy)


def test_keys_are_checked_before_anything_is_answered():
    import datetime as dt

    from nextday.inference.checks import InputError, check_keys

    good = check_keys(
        [("AAPL", "2021-01-04"), (" MSFT ", "2021-01-05T00:00:00"), ("KO", dt.date(2021, 1, 6))],
        3,
    )
    assert list(good["symbol"]) == ["AAPL", "MSFT", "KO"]
    assert list(good["ts"]) == list(pd.to_datetime(["2021-01-04", "2021-01-05", "2021-01-06"]))
    refused = {
        "2021-01-04T00:00:00+05:00": "not a calendar date",
        pd.Timestamp("2021-01-04", tz="UTC"): "carries a time zone",
        20210104: "is a number",
        "04/01/2021": "day/month order",
        "2021-02-30": "not a valid calendar date",
        "9999-12-31": "not a valid calendar date",  # beyond what a timestamp holds
        "2021-01-04 15:30": "not a calendar date",
    }
    for date, said in refused.items():
        with pytest.raises(InputError, match=rf"row 1: .*{said}"):
            check_keys([("AAPL", "2021-01-04"), ("AAPL", date)], 2)
    for symbol, said in {"": "empty", "X" * 33: "33 characters", 7203: "not a string"}.items():
        with pytest.raises(InputError, match=rf"row 0: .*{said}"):
            check_keys([(symbol, "2021-01-04")], 1)
    with pytest.raises(InputError, match="2 keys for 3 rows"):
        check_keys([("A", "2021-01-04")] * 2, 3)


def test_keys_repeated_across_a_batch_map_back_to_their_rows_and_the_first_refusal_is_named():
    """Each distinct symbol and date is checked once; every row still gets its own key, and
    a refusal names the earliest refused row (its symbol before its date)."""
    from nextday.inference.checks import InputError, check_keys

    symbols = [f"S{i % 7}" for i in range(300)]
    dates = ["2021-01-04" if i % 2 else "2021-01-05" for i in range(300)]
    checked = check_keys(list(zip(symbols, dates, strict=True)), 300)
    assert list(checked["symbol"]) == symbols
    assert list(checked["ts"]) == list(pd.to_datetime(dates))
    keys = list(zip(symbols, dates, strict=True))
    keys[5], keys[9] = ("", "2021-01-04"), ("A", "04/01/2021")
    with pytest.raises(InputError, match="row 5: the symbol is empty"):
        check_keys(keys, 300)
    keys[5], keys[3] = ("A", "2021-01-04"), ("A", "2021-13-01")
    with pytest.raises(InputError, match="row 3: .*not a valid calendar date"):
        check_keys(keys, 300)
    keys[3] = (7, "2021-13-01")  # both refused in one row: the symbol is named
    with pytest.raises(InputError, match="row 3: symbol 7 is not a string"):
        check_keys(keys, 300)


def _register(folder, tracking: str) -> str:
    """Log an export folder as the served pyfunc model and register it (as export does)."""
    import mlflow

    from nextday.inference import served_model
    from nextday.inference.pyfunc import EXPORT_ARTIFACT

    mlflow.set_tracking_uri(tracking)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=served_model.__file__,
            artifacts={EXPORT_ARTIFACT: str(folder)},
        )
    sums = json.loads((folder / "metadata.json").read_text())["sha256"]
    version = mlflow.register_model(
        info.model_uri, "nextday-cache-test", tags={tags.SHA256: json.dumps(sums, sort_keys=True)}
    )
    return f"models:/nextday-cache-test/{version.version}"


@pytest.mark.integration  # an MLflow registry, built twice
def test_a_rebuilt_registry_serves_its_new_model_not_a_cached_copy(tmp_path, monkeypatch):
    import mlflow

    from nextday.inference.model import cache_root, local_folder

    cache = tmp_path / "cache"
    monkeypatch.setenv("NEXTDAY_MODEL_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # the runs' artifacts go under ./mlruns
    before = mlflow.get_tracking_uri()
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    try:
        _export(tmp_path / "first", [])
        uri = _register(tmp_path / "first", tracking)
        assert uri.endswith("/1")
        assert len(ModelInference(uri).features) == 20
        assert cache_root() == cache and (cache.stat().st_mode & 0o777) == 0o700

        # the registry is rebuilt at the same URI: version 1 is now the 37-feature model
        mlflow.MlflowClient().delete_registered_model("nextday-cache-test")
        _export(tmp_path / "second", ["model=earnings"])
        assert _register(tmp_path / "second", tracking) == uri
        assert len(ModelInference(uri).features) == 37

        # a damaged cached copy is found against the registry's checksums and fetched again
        folder = local_folder(uri)
        onnx = next(folder.glob("*.optimized.onnx"))
        onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")
        again = ModelInference(uri)
        assert len(again.features) == 37
        assert again.predict_batch(np.zeros((2, 37), dtype=np.float32)).shape == (2, 6)
    finally:
        mlflow.set_tracking_uri(before)


def test_a_batch_over_the_row_limit_is_refused_before_it_is_converted(mlp):
    folder, _, spec, x, _ = mlp
    inference = ModelInference(folder, max_rows=10)
    with pytest.raises(InputError, match=r"11 rows is over the limit of 10.*export.serving"):
        inference.predict_batch([{"not": "even checked"}] * 11)
    assert inference.predict_batch(x[:10]).shape == (10, 6)
    assert ModelInference(folder).max_rows == 100_000


def test_values_far_outside_the_training_range_are_flagged_or_refused(mlp, caplog):
    import json

    folder, _, spec, x, _ = mlp
    wild = x[:4].copy()
    wild[2, 3] = 1e30  # the row the issue found answered with sigma 0
    answer = ModelInference(folder).predict_batch(wild)
    assert list(answer["out_of_range"]) == [False, False, True, False]
    assert "row 2, column" in caplog.text and "far outside the training range" in caplog.text
    meta = json.loads((folder / "metadata.json").read_text())
    meta["serving"]["out_of_range"] = "refuse"
    (folder / "metadata.json").write_text(json.dumps(meta))
    try:
        with pytest.raises(InputError, match=rf"row 2, column '{spec.features[3]}'.*refuse"):
            ModelInference(folder).predict_batch(wild)
        assert not ModelInference(folder).predict_batch(x[:4])["out_of_range"].any()
    finally:
        meta["serving"]["out_of_range"] = "flag"
        (folder / "metadata.json").write_text(json.dumps(meta))


# ---------------------------------------------------------------------------------------------
# the online calibration state, applied by serving


def _served_online(tmp_path, buckets: int):
    """An export serving PID with `buckets` volatility buckets (edge 0.02 for two), its rows
    (vol_20d 0.01 or 0.03, alternating) and keys, and a fresh SQLite store."""
    settings = OnlineSettings.from_config(
        compose([f"calibrate.online.buckets={buckets}"]).calibrate.online
    )
    online = ServedOnline(settings, (0.02,) if buckets == 2 else ())
    _, spec, x, _ = _export(tmp_path / "export", [], online=online)
    rows = x[:40].copy()
    rows[:, spec.features.index("vol_20d")] = np.tile([0.01, 0.03], 20)
    keys = [(f"S{i:02d}", "2024-03-01") for i in range(40)]
    url = f"sqlite:///{tmp_path}/store.db"
    Store(url).create()
    return tmp_path / "export", online, rows, keys, url


def _fresh(folder, **options) -> ModelInference:
    """A ModelInference on a new ONNX session: its MC draws start from the graph's seed, so
    two of them answer the same rows with the same draws."""
    from nextday.inference.model import _session

    _session.cache_clear()
    return ModelInference(folder, **options)


def test_serving_applies_the_stored_online_state_and_logs_its_multiplier(tmp_path):
    folder, online, rows, keys, url = _served_online(tmp_path, buckets=2)
    static = _fresh(folder).predict_batch(rows)
    logger = PredictionLogger(url, background=False)
    reading = {"logger": logger, "calibration": CalibrationStore(url, ttl=0)}
    # before the monitor has written a state: the static interval, logged as such (NULL)
    pd.testing.assert_frame_equal(_fresh(folder, **reading).predict_batch(rows, keys=keys), static)
    logger.flush()
    assert Store(url).read("model_predictions")["online_multiplier"].isna().all()

    served = _fresh(folder, **reading)
    state = replace(online.start(), multiplier=(0.8, 1.5), through="2024-02-29")
    Store(url).upsert(STATE_TABLE, state_rows(state, served.name, served.version))
    after = served.predict_batch(rows, keys=keys)
    m = np.tile([0.8, 1.5], 20)  # calm rows the first bucket's multiplier, wild the second's
    np.testing.assert_allclose(after["p50"], static["p50"])
    np.testing.assert_allclose(after["prediction"], static["prediction"])
    np.testing.assert_allclose(after["p90"] - after["p50"], m * (static["p90"] - static["p50"]))
    np.testing.assert_allclose(after["p50"] - after["p10"], m * (static["p50"] - static["p10"]))
    np.testing.assert_allclose(after["sigma"], m * static["sigma"], rtol=1e-6)
    logger.flush()
    logged = Store(url).read("model_predictions").sort_values("symbol")
    np.testing.assert_allclose(logged["online_multiplier"], m)
    np.testing.assert_allclose(logged["p90"], after["p90"])
    # one row takes the same path: a wild row gets the second bucket's multiplier
    row = dict(zip(served.features, rows[1].tolist(), strict=True))
    alone, corrected = _fresh(folder).predict(row), _fresh(folder, **reading).predict(row)
    assert corrected["p90"] - corrected["p50"] == pytest.approx(1.5 * (alone["p90"] - alone["p50"]))


def test_a_state_of_another_rule_or_a_static_version_serves_the_static_interval(tmp_path, caplog):
    folder, online, rows, _, url = _served_online(tmp_path, buckets=1)
    static = _fresh(folder).predict_batch(rows)
    served = _fresh(folder, calibration=CalibrationStore(url, ttl=0))
    aci = replace(online.settings, rule="aci")
    state = replace(ServedOnline(aci, ()).start(), multiplier=(2.0,))
    Store(url).upsert(STATE_TABLE, state_rows(state, served.name, served.version))
    pd.testing.assert_frame_equal(served.predict_batch(rows), static)
    assert "follows rule aci" in caplog.text
    # a version exported without an online rule never reads a state
    _export(tmp_path / "static", [])
    plain = ModelInference(tmp_path / "static", calibration=CalibrationStore(url, ttl=0))
    assert plain.online is None and plain.calibration is None


def test_the_served_model_reads_the_calibration_store_from_the_environment(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from nextday.inference.pyfunc import EXPORT_ARTIFACT, NextdayOnnxModel

    folder, _, _, _, url = _served_online(tmp_path, buckets=1)
    context = SimpleNamespace(artifacts={EXPORT_ARTIFACT: str(folder)})
    for name in ("NEXTDAY_PREDICTION_LOG_URL", "NEXTDAY_CALIBRATION_URL"):
        monkeypatch.delenv(name, raising=False)
    served = NextdayOnnxModel()
    served.load_context(context)
    assert served.inference.calibration is None  # no store named: the static interval
    monkeypatch.setenv("NEXTDAY_CALIBRATION_URL", url)
    monkeypatch.setenv("NEXTDAY_CALIBRATION_TTL", "5")
    served.load_context(context)
    reader = served.inference.calibration
    assert (
        reader is not None and reader.ttl == 5.0 and reader.store.url.database.endswith("store.db")
    )
    assert served.inference.logger is None  # reading the state does not log predictions


def test_the_served_model_runs_onnx_runtime_with_the_exports_threads_or_the_environments(
    mlp, monkeypatch
):
    """export.serving.threads and spinning (1 and off by default) reach the served model's
    session; NEXTDAY_ORT_THREADS / NEXTDAY_ORT_SPINNING override them; a bad value is named."""
    from types import SimpleNamespace

    from nextday.inference.pyfunc import EXPORT_ARTIFACT, NextdayOnnxModel

    folder = mlp[0]
    context = SimpleNamespace(artifacts={EXPORT_ARTIFACT: str(folder)})
    for name in ("NEXTDAY_ORT_THREADS", "NEXTDAY_ORT_SPINNING", "NEXTDAY_PREDICTION_LOG_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NEXTDAY_FOLLOW_ALIAS", "none")

    def served_options():
        served = NextdayOnnxModel()
        served.load_context(context)
        options = served.inference.session.get_session_options()
        spinning = options.get_session_config_entry("session.intra_op.allow_spinning")
        return options.intra_op_num_threads, spinning

    assert served_options() == (1, "0")
    monkeypatch.setenv("NEXTDAY_ORT_THREADS", "2")
    monkeypatch.setenv("NEXTDAY_ORT_SPINNING", "1")
    assert served_options() == (2, "1")
    monkeypatch.setenv("NEXTDAY_ORT_THREADS", "0")  # ONNX Runtime's default count
    assert served_options()[0] == 0
    monkeypatch.setenv("NEXTDAY_ORT_THREADS", "two")
    with pytest.raises(ValueError, match="NEXTDAY_ORT_THREADS='two'"):
        served_options()
    export = compose(["experiment=quick"]).export
    export.serving.threads = -1  # past the schema (refused at compose): the settings' own check
    with pytest.raises(ValueError, match=r"export.serving.threads=-1"):
        ExportSettings.from_config(export)
