"""export on the quick preset: ONNX files, metadata, a registered version, the promotion
gate, promote/rollback by hand, and download with checksums."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import onnx
import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from nextday.config import compose
from nextday.contracts import artifacts, tags
from nextday.contracts.metadata import ExportMetadata
from nextday.contracts.reference import DriftReference
from nextday.data.store import Store
from nextday.export import graphs, parity
from nextday.export.files import write_onnx
from nextday.export.served import SERVED_PACKAGES
from nextday.inference import ChecksumError, ModelInference
from nextday.models.data import Segment
from nextday.models.networks import build_network
from nextday.models.processor import FeatureProcessor
from nextday.models.spec import model_spec
from nextday.monitoring.reference import build_reference
from nextday.steps.export import run_export
from nextday.steps.registry_commands import (
    run_download,
    run_promote,
    run_rollback,
    run_versions,
)
from nextday.uncertainty import report as calibration_report

NAME = "nextday-normal"


@pytest.fixture(scope="module")
def store(quick_chain):
    """One tracking store with a calibrated quick model (a copy of the session's chain before
    its export) and three exports of it:
    v1 fails the gate (significance 0) and serves the static interval, v2 passes it (checks
    relaxed), v3 fails against production (must be 50% better than v2 on validation); v2
    and v3 serve the online rule."""
    with quick_chain.open("calibrated", copy=True) as (root, cfg):
        relaxed = [
            "export.gate.significance=1.0",
            "export.gate.coverage_band=[0.0,1.0]",
            "export.gate.online_score_slack=1.0",
        ]
        runs = [
            run_export(cfg("export.gate.significance=0.0", "export.online=false")),
            run_export(cfg(*relaxed)),
            run_export(cfg(*relaxed, "export.gate.max_val_mae_increase=-0.5")),
        ]
        yield root, cfg, runs


def test_every_link_of_the_card_and_the_reports_opens_a_picture(store):
    """The card's runs:/ URIs, and the relative links of the validation and calibration
    reports, name PNGs their runs logged."""
    _, _, runs = store
    export = mlflow.get_run(runs[0])
    train_id = export.data.tags[tags.input_tag("train")]
    calibrate_id = export.data.tags[tags.input_tag("calibrate")]
    client = mlflow.MlflowClient()
    version = client.get_model_version(
        export.data.tags[tags.REGISTERED_MODEL], export.data.tags[tags.VERSION]
    )
    uris = re.findall(r"`(runs:/\S+\.png)`", version.description)
    assert {uri.split("/")[1] for uri in uris} == {train_id, calibrate_id} and len(uris) == 4
    for run_id, text in (
        (train_id, "validation_report.md"),
        (calibrate_id, calibration_report.REPORT),
    ):
        links = re.findall(
            r"!\[[^\]]+\]\(([^)]+)\)", mlflow.artifacts.load_text(f"runs:/{run_id}/{text}")
        )
        assert links, text
        uris += [f"runs:/{run_id}/{link}" for link in links]
    for uri in uris:
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        logged = {
            f.path: f.file_size for f in client.list_artifacts(run_id, path.rpartition("/")[0])
        }
        assert logged.get(path, 0) > 1000, f"{uri} is not a logged picture"


def test_export_logs_checked_files_and_metadata(store):
    root, _, runs = store
    run = mlflow.get_run(runs[0])
    assert run.data.tags["nextday.step"] == "export"
    assert run.data.tags["nextday.input.calibrate"]
    metrics = run.data.metrics
    assert metrics["parity_max_abs_diff"] <= 1e-5
    assert metrics["parity_mc_share_abs_z_above_4"] <= 0.02
    assert 0.9 <= metrics["parity_mc_spread_ratio"] <= 1.1
    assert metrics["fp16_max_abs_err_prediction"] < 1e-3
    assert metrics["parity_calibration_max_rel_diff"] <= 1e-5
    assert metrics["parity_calibration_sd_ulps"] <= 16
    for name in ("test_mae", "baseline_zero_test_mae", "test_coverage_80", "dm_zero_mae_p"):
        assert np.isfinite(metrics[name]), name
    inference = ModelInference(f"models:/{NAME}/1")
    folder, meta = inference.folder, inference.metadata
    assert meta == ExportMetadata.from_json(folder / artifacts.METADATA.name)
    assert meta.files["mc"] == "mlp_normal_v1.onnx"
    assert len(meta.features) == 20 and meta.window == 1
    assert meta.runs["export"] == runs[0] and set(meta.runs) >= {"prepare", "train"}
    assert meta.data["symbols"] == 30 and meta.git_commit
    assert meta.calibration["passes"] == meta.mc["passes"] == 8
    assert meta.float16_on_gpu is False  # export.float16: the GPU default of ModelInference
    assert "test_mae" in meta.metrics and "beta_1" not in meta.hyperparameters
    assert set(meta.sha256) == {*meta.files.values(), artifacts.CARD.name}
    card = (folder / artifacts.CARD.name).read_text()
    for section in ("Intended use", "Data", "Metrics", "Calibration", "Ethical", "Update policy"):
        assert f"## {section}" in card
    # the card judges "beats" at the gate's level (export.gate.significance=0 for v1)
    assert "level 0)" in card and "PASS parity_calibration" in card
    # the drift reference the monitor reads, inside the served model
    reference = DriftReference.from_json(folder / meta.files["reference"])
    assert meta.files["reference"] == artifacts.REFERENCE.name
    assert list(reference.features) == meta.features and reference.window_days > 0
    report = mlflow.artifacts.load_text(f"runs:/{runs[0]}/export_report.md")
    assert "calibration vs Calibration.apply" in report and "`parity_calibration`" in report
    # v1 (export.online=false) serves the static interval, v2 the online rule of calibrate
    assert meta.online == {} and "no online correction" in card
    assert "test_online_coverage_80" not in metrics
    online = ModelInference(f"models:/{NAME}/2").metadata
    assert online.online["rule"] == "pid" and online.online["edges"] == []
    online_card = (ModelInference(f"models:/{NAME}/2").folder / artifacts.CARD.name).read_text()
    assert "corrected after deployment by online PID" in online_card, online_card
    assert "The online rule replayed over the test days" in online_card
    replayed = mlflow.get_run(runs[1]).data.metrics
    for name in ("coverage", "width", "interval_score"):
        assert np.isfinite(replayed[f"test_online_{name}_80"]), name
    assert replayed["test_online_width_80"] != replayed["test_width_80"]


def test_gate_decides_production_and_challenger(store):
    client = mlflow.MlflowClient()
    v1, v2, v3 = (client.get_model_version(NAME, str(v)) for v in (1, 2, 3))
    assert v1.tags[tags.GATE].startswith("failed: beats_zero")
    assert v2.tags[tags.GATE] == "passed"
    assert "vs_production" in v3.tags[tags.GATE]
    assert client.get_model_version_by_alias(NAME, "production").version == 2
    assert client.get_model_version_by_alias(NAME, "challenger").version == 3
    assert v2.current_stage == "Production"
    assert "Model card" in v2.description and v2.tags["metric.test_mae"]
    assert v2.tags[f"{tags.CHECK}parity_deterministic"].startswith("pass")
    assert v2.tags[f"{tags.CHECK}parity_calibration"].startswith("pass")
    # which calibration each version serves, and the gate's word on the online one
    assert v1.tags[tags.CALIBRATION] == "static"
    assert v1.tags[f"{tags.CHECK}online_calibration"].startswith("pass: serves the static")
    assert v2.tags[tags.CALIBRATION] == v3.tags[tags.CALIBRATION] == "static + online PID"
    assert v2.tags[f"{tags.CHECK}online_calibration"].startswith("pass: serves online PID")
    assert mlflow.get_run(v2.run_id).data.tags[tags.GATE] == "production"
    # the MLflow model: a DataFrame with the feature columns in, five columns out
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@production")
    schema = model.metadata.get_input_schema().inputs
    names = [c.name for c in schema if c.required]
    assert names == v2.tags[tags.FEATURES].split(",") and len(names) == 20
    # the optional keys under which a request's predictions are logged
    assert [(c.name, c.required) for c in schema if not c.required] == [
        ("symbol", False),
        ("date", False),
    ]
    out = model.predict(pd.DataFrame(np.full((3, 20), 0.01), columns=names))
    assert list(out.columns) == ["prediction", "sigma", "p10", "p50", "p90", "out_of_range"]


def test_an_online_rule_that_does_not_hold_leaves_the_version_static():
    """The online rule is served only where its replay over the test days holds; otherwise
    the version serves its static interval and is not held back for it."""
    from nextday.export.gate import online_calibration, served_online
    from nextday.export.settings import GateSettings
    from nextday.uncertainty.online import OnlineSettings, ServedOnline

    settings = GateSettings.from_config(compose().export.gate)  # band 0.75-0.85, slack 1%
    offered = ServedOnline(OnlineSettings.from_config(compose().calibrate.online), ())
    static = {"test_interval_score_80": 0.0600}
    holds = static | {"test_online_coverage_80": 0.80, "test_online_interval_score_80": 0.0605}
    costly = holds | {"test_online_interval_score_80": 0.0607}  # 1.2% above static
    outside = holds | {"test_online_coverage_80": 0.86}
    assert served_online(holds, offered, settings) is offered
    assert online_calibration(holds, offered, settings).detail.startswith("serves online PID")
    for worse in (costly, outside):
        assert served_online(worse, offered, settings) is None
        check = online_calibration(worse, offered, settings)
        assert check.passed and check.detail.startswith("serves the static interval: online PID")
    assert served_online(holds, None, settings) is None


def test_promote_and_rollback_by_hand(store):
    _, cfg, _ = store
    client = mlflow.MlflowClient()
    run_promote(cfg("version=3"))
    assert client.get_model_version_by_alias(NAME, "production").version == 3
    assert client.get_model_version_by_alias(NAME, "previous-production").version == 2
    assert client.get_model_version(NAME, "2").current_stage == "Archived"  # kept, not deleted
    assert run_rollback(cfg()) == "2"
    assert client.get_model_version_by_alias(NAME, "production").version == 2
    assert client.get_model_version(NAME, "3").current_stage == "Archived"
    with pytest.raises(ValueError, match="already production"):
        run_rollback(cfg("version=2"))
    with pytest.raises(ValueError, match="no version 99"):
        run_download(cfg("version=99"))


def test_versions_lists_every_version_with_the_gates_decision(store, capsys):
    _, cfg, _ = store
    table = run_versions(cfg())
    mine = table[table["model"] == NAME]
    assert list(mine["version"]) == [1, 2, 3]
    gates = list(mine["gate"])
    assert gates[0].startswith("failed: beats_zero") and gates[1] == "passed"
    assert list(mine["calibration"]) == ["static", "static + online PID", "static + online PID"]
    assert (mine["test_mae"] != "-").all() and NAME in capsys.readouterr().out


def test_download_verifies_checksums_and_keeps_a_good_copy(store):
    root, cfg, _ = store
    path = run_download(cfg("alias=production"))
    assert path == root / "models" / "normal" / "2"
    meta = ExportMetadata.from_json(path / artifacts.METADATA.name)
    assert (path / meta.files["mc"]).exists()
    local = ModelInference(path)
    assert local.version == "2" and local.predict_batch(np.full((2, 20), 0.01)).shape == (2, 6)
    # corrupt the stored artifact: the next download is refused, the good copy stays
    source = mlflow.MlflowClient().get_model_version(NAME, "2").source
    stored = list(root.glob(f"mlartifacts/**/{meta.files['mc']}"))
    stored = [p for p in stored if "v2" in p.name]
    assert stored, source
    originals = {p: p.read_bytes() for p in stored}
    try:
        for p, content in originals.items():
            p.write_bytes(content + b"tampered")
        with pytest.raises(ChecksumError, match="mlp_normal_v2.onnx"):
            run_download(cfg("version=2"))
    finally:  # later tests serve this version
        for p, content in originals.items():
            p.write_bytes(content)
    assert ModelInference(path).version == "2"


def test_the_graphs_calibration_is_calibration_apply(tmp_path):
    """The MC graph's calibration part, on MC samples of the Keras model, answers what
    `Calibration.apply` answers on the same samples; a graph of another calibration does not."""
    from nextday.models.mc_dropout import mc_samples
    from nextday.uncertainty.calibration import Calibration

    spec = model_spec(compose(["experiment=quick"]))
    rng = np.random.default_rng(0)
    x = rng.normal(0.01, 0.02, size=(300, spec.n_features)).astype(np.float32)
    model = build_network(spec, FeatureProcessor.fit(spec.features, x, x[:, 0]))
    calibration = Calibration(
        scale_features=("vol_20d", "hl_range"),
        scale_weights=(-1.0, 0.5, 0.2, 0.1),
        levels=tuple(np.round(np.linspace(0.05, 0.95, 19), 2)),
        quantiles=tuple(float(v) for v in np.linspace(-1.5, 1.5, 19)),
        sigma_factor=0.9,
        n_calibration=100,
        passes=8,
    )
    files = write_onnx(model, spec, calibration, tmp_path, 1, 8, seed=5, opset=17)
    part = graphs.calibration_part(onnx.load(tmp_path / files["mc"]))
    assert [i.name for i in part.graph.input] == [graphs.SAMPLES, graphs.INPUT_NAME]
    limits = compose([]).export.parity
    tolerance = limits.calibration_tolerance
    for samples in (mc_samples(model, x, 8, seed=1), rng.normal(0.0, 0.03, size=(8, 300))):
        difference = parity.calibration_difference(
            tmp_path / files["mc"], calibration, spec.features, samples, x
        )
        assert difference.max_relative <= tolerance, difference
        assert difference.sd_ulps <= limits.calibration_sd_ulps, difference
        assert difference.max_abs <= 1e-5, difference
    samples = mc_samples(model, x, 8, seed=1)
    # a graph of another calibration is far outside the tolerance: one quantile shifted by 1%
    # of its value, every quantile 10% wider, or the scale read from other feature columns
    shifted = list(calibration.quantiles)
    shifted[1] *= 1.01  # the 10% level: p10
    wrong_features = ("hl_range", "vol_20d")
    for other in (
        replace(calibration, quantiles=tuple(shifted)),
        replace(calibration, quantiles=tuple(1.1 * q for q in calibration.quantiles)),
        replace(calibration, scale_features=wrong_features),
    ):
        wrong = parity.calibration_difference(
            tmp_path / files["mc"], other, spec.features, samples, x
        )
        assert wrong.max_relative > 100 * tolerance, (other, wrong)


def test_the_drift_reference_keeps_its_json_shape(tmp_path):
    """reference.json as the monitor has always read it: every feature's and the prediction's
    decile edges, shares, sample and window PSIs, the window and the validation figures."""
    rng = np.random.default_rng(0)

    def segment(start: str, days: int, symbols: int = 4) -> Segment:
        dates = np.repeat(pd.bdate_range(start, periods=days).to_numpy(), symbols)
        rows = pd.DataFrame({"date": dates, "label": rng.normal(0, 0.02, len(dates))})
        flat = rng.normal(0, 1, (len(dates), 2))
        return Segment(rows=rows, x=flat, flat=flat)

    train, val = segment("2024-01-01", 60), segment("2024-06-03", 20)
    outputs = {
        "train": {"prediction": rng.normal(0, 0.01, len(train.rows))},
        "val": {"prediction": rng.normal(0, 0.01, len(val.rows))},
    }
    metrics = {"val_mae": 0.015, "val_coverage_80": 0.79}
    reference = build_reference(["a", "b"], train, val, outputs, metrics, drift_days=10)
    path = reference.to_json(tmp_path / artifacts.REFERENCE.name)
    written = json.loads(path.read_text())
    assert set(written) == {"features", "prediction", "window_days", "val_mae", "val_coverage_80"}
    assert list(written["features"]) == ["a", "b"]
    for distribution in (*written["features"].values(), written["prediction"]):
        assert set(distribution) == {"edges", "shares", "sample", "window_psi"}
        assert len(distribution["shares"]) == len(distribution["edges"]) + 1
    # windows of 10 dates every 5: over the training dates, and over training and validation
    assert len(written["features"]["a"]["window_psi"]) == len(range(0, 60 - 10 + 1, 5))
    assert len(written["prediction"]["window_psi"]) == len(range(0, 80 - 10 + 1, 5))
    assert len(written["prediction"]["sample"]) == len(train.rows) + len(val.rows)
    assert written["window_days"] == 10 and written["val_coverage_80"] == 0.79
    assert DriftReference.from_json(path) == reference


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_answers_and_refuses_bad_input(store):
    """The real scoring server on a loopback port, checked against ModelInference."""
    root, _, _ = store
    port = _free_port()
    # mlflow models serve execs `uvicorn` from PATH: the environment's bin must be on it
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        # requests that carry symbol and date get logged into this store
        "NEXTDAY_PREDICTION_LOG_URL": f"sqlite:///{root}/served.db",
    }
    server = subprocess.Popen(
        [
            str(Path(bin_dir) / "mlflow"),
            "models", "serve", "-m", f"models:/{NAME}@production",
            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.5)
        inference = ModelInference(f"models:/{NAME}@production")
        rows = pd.DataFrame(
            np.random.default_rng(0).normal(0.01, 0.005, size=(64, 20)),
            columns=inference.features,
        )
        expected = inference.predict_batch(rows)
        spread = inference.run(rows.to_numpy(np.float32))["mc_sd"]

        def invoke(payload):
            return requests.post(f"{url}/invocations", json=payload, timeout=30)

        split = json.loads(rows.to_json(orient="split", index=False))
        for payload in (
            {"dataframe_split": split},
            {"dataframe_records": rows.to_dict(orient="records")},
            {"inputs": {column: rows[column].tolist() for column in rows}},  # columnar tensors
        ):
            answer = invoke(payload)
            assert answer.status_code == 200, answer.text
            got = pd.DataFrame(answer.json()["predictions"])
            assert list(got.columns) == ["prediction", "sigma", "p10", "p50", "p90", "out_of_range"]
            assert not got["out_of_range"].any()
            assert len(got) == 64
            # both draw their own dropout masks: equal within the MC noise of 8 passes
            assert np.all(np.abs(got["prediction"] - expected["prediction"]) < 6 * spread + 1e-6)
            np.testing.assert_allclose(
                got["p90"] - got["p10"], expected["p90"] - expected["p10"], rtol=0.2
            )

        bad = {
            "missing column": {"dataframe_split": {**split, "columns": split["columns"][:-1], "data": [r[:-1] for r in split["data"]]}},
            "NaN": {"dataframe_records": [{**rows.iloc[0].to_dict(), "vol_20d": None}]},
            "text": {"dataframe_records": [{**rows.iloc[0].to_dict(), "ret_1d": "abc"}]},
            "empty": {"dataframe_split": {"columns": split["columns"], "data": []}},
        }  # fmt: skip
        for problem, payload in bad.items():
            answer = invoke(payload)
            assert answer.status_code == 400, (problem, answer.status_code, answer.text[:300])
            assert answer.json()["message"], problem
        missing = invoke(bad["missing column"]).json()["message"]
        assert split["columns"][-1] in missing
        assert "row 0, column 'vol_20d' is NaN" in invoke(bad["NaN"]).json()["message"]
        assert invoke(bad["empty"]).status_code == 400

        # with keys: answered as before, and every row lands in model_predictions (half of
        # them sent as dataframe_split, half as columnar inputs)
        keyed = rows.assign(symbol=[f"S{i:03d}" for i in range(64)], date="2024-03-01")
        first, second = keyed.iloc[:32], keyed.iloc[32:]
        for payload in (
            {"dataframe_split": json.loads(first.to_json(orient="split", index=False))},
            {"inputs": {column: second[column].tolist() for column in second}},
        ):
            answer = invoke(payload)
            assert answer.status_code == 200, answer.text
            assert len(answer.json()["predictions"]) == 32
        unkeyed = keyed.astype({"symbol": object})
        unkeyed.loc[3, "symbol"] = None
        refused = invoke({"dataframe_records": unkeyed.to_dict(orient="records")})
        assert refused.status_code == 400 and "row 3" in refused.json()["message"]
        # keys checked at the door: 400 naming the row, and nothing of the request logged
        for column, value, said in (
            ("date", "2021-01-04T00:00:00+05:00", "not a calendar date"),
            ("date", 20210104, "20210104"),
            ("date", "04/01/2021", "day/month order"),
            ("symbol", "X" * 40, "40 characters"),
            ("symbol", "  ", "the symbol is empty"),
        ):
            bad_keys = keyed.assign(symbol=[f"BAD{i:03d}" for i in range(64)]).astype(
                {column: object}
            )
            bad_keys.loc[5, column] = value
            answer = invoke({"dataframe_records": bad_keys.to_dict(orient="records")})
            assert answer.status_code == 400, (value, answer.text[:300])
            assert (
                "row 5" in answer.json()["message"] or column == "date" and isinstance(value, int)
            ), answer.json()["message"]
            assert said in answer.json()["message"], answer.json()["message"]
        store = Store(f"sqlite:///{root}/served.db")
        deadline = time.time() + 30
        while True:  # the server's logger writes in the background, about once a second
            with contextlib.suppress(sa.exc.OperationalError, pd.errors.DatabaseError):
                logged = store.read("model_predictions")
                if len(logged) == 64:
                    break
            assert time.time() < deadline, "the served predictions were not logged"
            time.sleep(0.5)
        assert set(logged["symbol"]) == set(keyed["symbol"])
        assert (logged["ts"] == pd.Timestamp("2024-03-01")).all()
        assert (logged["model_name"] == NAME).all() and (logged["model_version"] == "2").all()
        assert (logged["latency_ms"] > 0).all()
        assert (logged["p10"] <= logged["p90"]).all() and logged["actual"].isna().all()

        # stopped right after answering: the rows still buffered are written before it exits
        last = rows.iloc[:16].assign(symbol=[f"LAST{i:02d}" for i in range(16)], date="2024-03-04")
        answer = invoke({"dataframe_split": json.loads(last.to_json(orient="split", index=False))})
        assert answer.status_code == 200, answer.text
        children = _children(server.pid)  # the uvicorn process that holds the model
        assert children, "mlflow models serve runs uvicorn in a child process"
        server.terminate()  # the CLI dies; uvicorn gets SIGTERM on its parent's death
        server.wait(timeout=30)
        deadline = time.time() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in children):
            assert time.time() < deadline, "the scoring server did not exit"
            time.sleep(0.1)
        written = store.read("model_predictions", "ts = :day", {"day": "2024-03-04"})
        assert sorted(written["symbol"]) == sorted(last["symbol"])
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in found.read_text().split()] if found.exists() else []


def test_the_serving_path_imports_nothing_of_the_training_stack():
    training = ("tensorflow", "keras", "sklearn", "omegaconf", "hydra", "optuna", "tf2onnx")
    probe = (
        "import sys, nextday.inference.served_model, nextday.inference.prediction_log; "
        f"print([m for m in {training!r} if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow(seconds=60)  # with the module's store
def test_a_registered_version_runs_anywhere_with_uv(store, tmp_path):
    """`mlflow models predict --env-manager uv` in a folder outside the repository: uv builds
    the model's own environment from its requirements (from PyPI), without nextday installed;
    the serving code comes from the model's code/ folder. Also the Dockerfile MLflow makes."""
    root, _, _ = store
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/2")
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/2", dst_path=str(tmp_path)))
    requirements = (folder / "requirements.txt").read_text().split()
    assert [r.split("==")[0] for r in requirements] == list(SERVED_PACKAGES)
    assert (folder / "code" / "nextday" / "inference" / "pyfunc.py").is_file()
    names = [c.name for c in model.metadata.get_input_schema().inputs if c.required]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rows = pd.DataFrame(np.full((3, len(names)), 0.01), columns=names)
    (elsewhere / "request.json").write_text(
        json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split", index=False))})
    )
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db", PATH=f"{bin_dir}:{env['PATH']}")
    mlflow_cli = str(Path(bin_dir) / "mlflow")
    done = subprocess.run(
        [mlflow_cli, "models", "predict", "-m", f"models:/{NAME}/2", "-i", "request.json",
         "-t", "json", "-o", "answer.json", "--env-manager", "uv"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    answer = pd.DataFrame(json.loads((elsewhere / "answer.json").read_text())["predictions"])
    assert list(answer.columns) == ["prediction", "sigma", "p10", "p50", "p90", "out_of_range"]
    assert len(answer) == 3 and (answer["p10"] <= answer["p90"]).all()

    # the same version outside the repository with a calibration store: it applies the online
    # state found there (a new process: the same MC draws, so p50 agrees to the digit)
    from nextday.uncertainty.online import ServedOnline
    from nextday.uncertainty.stored_state import TABLE, state_rows

    url = f"sqlite:///{elsewhere}/calibration.db"
    calibration_store = Store(url)
    calibration_store.create()
    served = ServedOnline.of_version(
        ExportMetadata.from_json(next(folder.rglob("metadata.json"))).online
    )
    state = replace(served.start(), multiplier=(1.5,), through="2024-01-02")
    calibration_store.upsert(TABLE, state_rows(state, NAME, "2"))
    done = subprocess.run(
        [mlflow_cli, "models", "predict", "-m", f"models:/{NAME}/2", "-i", "request.json",
         "-t", "json", "-o", "online.json", "--env-manager", "uv"],
        cwd=elsewhere, env=env | {"NEXTDAY_CALIBRATION_URL": url}, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    online = pd.DataFrame(json.loads((elsewhere / "online.json").read_text())["predictions"])
    np.testing.assert_allclose(online["p50"], answer["p50"])
    np.testing.assert_allclose(online["p90"] - online["p50"], 1.5 * (answer["p90"] - answer["p50"]))

    built = subprocess.run(
        [mlflow_cli, "models", "generate-dockerfile", "-m", f"models:/{NAME}/2",
         "--output-directory", "docker", "--env-manager", "virtualenv"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    dockerfile = (elsewhere / "docker" / "Dockerfile").read_text()
    assert "model_dir" in dockerfile
    copied = elsewhere / "docker" / "model_dir"
    assert (next(copied.rglob("requirements.txt")).read_text().split()) == requirements
    assert next(copied.rglob("pyfunc.py")).parent.name == "inference"
    assert next(copied.rglob("metadata.json")).is_file()
