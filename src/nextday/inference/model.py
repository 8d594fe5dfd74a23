"""ModelInference: an exported model's calibrated MC-dropout graph, ready to answer.

It loads a registry URI (`models:/nextday-normal@production`, `models:/nextday-normal/3`) or
a local folder written by export (`metadata.json` beside the ONNX files), checks every file
against the SHA-256 in the metadata, and runs the graph with ONNX Runtime: the CUDA provider
when present (the float16 variant there if asked), the CPU one with the ORT-optimized graph
otherwise. Sessions are cached per file, provider and thread count.

With `calibration` (a `CalibrationStore`: a store URL and a time-to-live), a version
exported with an online calibration (metadata `online`) serves its interval corrected by the
latest online state the monitor wrote to that store's `calibration_state`
(`uncertainty.stored_state`, re-read every `ttl` seconds): p10 and p90 move away from p50 by
the row's multiplier m and sigma is scaled by m; the static interval until a state exists.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nextday.contracts import artifacts, tags
from nextday.contracts.metadata import ExportMetadata
from nextday.inference.checks import InputError, check_keys, input_columns, row_count, to_array
from nextday.inference.outputs import OUT_OF_RANGE, OUTPUTS
from nextday.uncertainty.online import VOLATILITY_FEATURE, ServedOnline

if TYPE_CHECKING:
    from nextday.uncertainty.stored_state import CalibrationStore, StoredState

log = logging.getLogger(__name__)

METADATA = artifacts.METADATA.name
CACHE_ENV = "NEXTDAY_MODEL_CACHE"
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


# the export's serving policy (export.serving; metadata.json "serving"); older exports
# without one get these
DEFAULT_SERVING = {"max_rows": 100_000, "out_of_range": "flag", "range_multiple": 10.0}
RANGE_POLICIES = ("flag", "refuse")


def _allowed_bounds(serving: dict, features: list[str], window: int):
    """Per input column: training min - m x range .. max + m x range (None: no ranges)."""
    ranges = serving.get("ranges")
    if not ranges:
        return None
    multiple = float(serving["range_multiple"])
    low = np.array([ranges[f][0] for f in features], dtype=np.float64)
    high = np.array([ranges[f][1] for f in features], dtype=np.float64)
    width = np.maximum(high - low, 1e-12)
    low, high = low - multiple * width, high + multiple * width
    return np.tile(low, window), np.tile(high, window)


class ChecksumError(RuntimeError):
    """A model file whose SHA-256 is not the one its metadata records."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_metadata(folder: Path) -> Path:
    """The metadata.json of an export folder or of an MLflow model that holds one."""
    folder = Path(folder)
    if (folder / METADATA).exists():
        return folder / METADATA
    found = sorted(folder.rglob(METADATA))
    if not found:
        raise FileNotFoundError(f"no {METADATA} under {folder}: not a nextday export")
    return found[0]


def verify(folder: Path, checksums: Mapping[str, str]) -> None:
    """Every file of `checksums` (file -> SHA-256: `ExportMetadata.sha256`, or the registry's
    version tag) must be there with that checksum."""
    for name, expected in checksums.items():
        path = Path(folder) / name
        if not path.exists():
            raise ChecksumError(f"{path} is missing (listed in {METADATA})")
        actual = sha256(path)
        if actual != expected:
            raise ChecksumError(
                f"{path} does not match its checksum: sha256 {actual[:16]}..., "
                f"metadata says {expected[:16]}...; refusing to use it"
            )


def cache_root() -> Path:
    """Where registry and run models are kept once downloaded: NEXTDAY_MODEL_CACHE, else
    ~/.cache/nextday/models; created private to the user (mode 0700)."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "nextday" / "models")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def local_folder(source: str | Path) -> Path:
    """A local folder for `source`: itself, or a registry/run URI downloaded once.

    A registry version's copy is keyed by what the registry says the version is (its source
    run, its model URI and the SHA-256 of every file that export recorded in the registry's
    version tag), not by its name and number alone: a registry rebuilt under the same URI
    with another model as version 1 gets a new copy. On every load the copy is checked
    against the registry's checksums and downloaded again when it differs.
    """
    text = str(source)
    if not text.startswith(("models:/", "runs:/")):
        folder = Path(text)
        if not folder.exists():
            raise FileNotFoundError(f"no model folder {folder}")
        return find_metadata(folder).parent
    import mlflow

    expected: dict | None = None
    if text.startswith("models:/"):
        name, number = _name_and_version(text)
        version = mlflow.MlflowClient().get_model_version(name, number)
        recorded = version.tags.get(tags.SHA256)  # export's checksums, as JSON
        expected = json.loads(recorded) if recorded else None
        resolved = f"models:/{name}/{version.version}"
        identity = f"{resolved}|{version.run_id}|{version.source}|{recorded}"
    else:
        resolved = identity = text
    key = hashlib.sha256(f"{mlflow.get_tracking_uri()}|{identity}".encode()).hexdigest()[:24]
    root = cache_root()
    target = root / key
    for attempt in range(2):
        if not target.exists():
            staging = Path(tempfile.mkdtemp(prefix="download-", dir=root))
            try:
                mlflow.artifacts.download_artifacts(artifact_uri=resolved, dst_path=str(staging))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            try:
                staging.rename(target)
            except OSError:  # another process got there first
                shutil.rmtree(staging, ignore_errors=True)
        folder = find_metadata(target).parent
        try:
            if expected is not None:
                verify(folder, expected)
            return folder
        except ChecksumError:
            if attempt == 1:
                raise
            shutil.rmtree(target, ignore_errors=True)  # a stale or damaged copy: fetch again
    raise AssertionError("unreachable")


def _name_and_version(uri: str) -> tuple[str, str]:
    """`models:/name/3` or `models:/name@alias` as (name, version): aliases move, versions
    do not."""
    import mlflow

    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    name, _, number = rest.rpartition("/")
    if not name or not number:
        raise ValueError(f"{uri!r}: expected models:/<name>/<version> or models:/<name>@<alias>")
    if number.isdigit():
        return name, number
    client = mlflow.MlflowClient()
    if number.lower() == "latest":
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise ValueError(f"{uri!r}: {name} has no versions")
        return name, str(max(int(v.version) for v in versions))
    staged = [  # a legacy stage such as Production
        v for v in client.search_model_versions(f"name = '{name}'")
        if str(v.current_stage).lower() == number.lower()
    ]  # fmt: skip
    if not staged:
        raise ValueError(f"{uri!r}: no version of {name} is in stage {number!r}")
    return name, str(max(int(v.version) for v in staged))


@functools.lru_cache(maxsize=32)
def _session(path: str, digest: str, provider: str, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers = [provider] if provider == CPU else [provider, CPU]
    return ort.InferenceSession(path, options, providers=providers)


class ModelInference:
    """predict(one row) and predict_batch(many rows) -> prediction, sigma, p10, p50, p90.

    `metadata` is the export's `ExportMetadata` (metadata.json), checked against its files."""

    def __init__(
        self,
        source: str | Path,
        device: str = "auto",
        float16: bool | None = None,
        threads: int | None = None,
        logger=None,
        max_rows: int | None = None,
        calibration: CalibrationStore | None = None,
    ) -> None:
        import onnxruntime as ort

        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
        self.folder = local_folder(source)
        self.metadata = ExportMetadata.from_json(self.folder / METADATA)
        verify(self.folder, self.metadata.sha256)
        available = ort.get_available_providers()
        if device == "cuda" and CUDA not in available:
            raise RuntimeError(f"device=cuda but ONNX Runtime offers only {available}")
        use_cuda = device != "cpu" and CUDA in available
        files = self.metadata.files
        if float16 is None:  # the export's choice (export.float16)
            float16 = self.metadata.float16_on_gpu
        if use_cuda:
            role = "mc_float16" if float16 else "mc"
        else:
            role = "mc_optimized"  # float16 is for GPUs: the CPU runs float32
        self.file = self.folder / files[role]
        self._session_key = (
            str(self.file),
            self.metadata.sha256[files[role]],
            CUDA if use_cuda else CPU,
            threads,
        )
        self.session = _session(*self._session_key)
        self.provider = self.session.get_providers()[0]
        self.features: list[str] = list(self.metadata.features)
        self.window = int(self.metadata.window)
        self.input_name = self.session.get_inputs()[0].name
        self.logger = logger  # a nextday.monitoring.logger.PredictionLogger, or None
        self.output_names = [o.name for o in self.session.get_outputs()]
        serving = {**DEFAULT_SERVING, **self.metadata.serving}
        self.max_rows = int(max_rows or serving["max_rows"])
        self.out_of_range = str(serving["out_of_range"])
        if self.out_of_range not in RANGE_POLICIES:
            raise ValueError(f"serving.out_of_range={self.out_of_range!r}: one of {RANGE_POLICIES}")
        self._bounds = _allowed_bounds(serving, self.features, self.window)
        self.online = ServedOnline.of_version(self.metadata.online)
        self.calibration: StoredState | None = None
        if calibration is not None and self.online is not None:
            self.calibration = calibration.reader(self.name, self.version, self.online)
        elif calibration is not None:
            log.info(
                "%s v%s was exported without an online calibration: the static interval",
                self.name, self.version,
            )  # fmt: skip
        columns = input_columns(self.features, self.window)
        lagged = VOLATILITY_FEATURE if self.window <= 1 else f"{VOLATILITY_FEATURE}_lag0"
        self._vol_column = columns.index(lagged) if lagged in columns else None
        bucketed = self.online is not None and self.online.settings.buckets > 1
        if bucketed and self._vol_column is None:
            log.warning(
                "%s v%s has no %s input: every row gets the wildest volatility bucket's "
                "online multiplier", self.name, self.version, VOLATILITY_FEATURE,
            )  # fmt: skip

    def restart_draws(self) -> None:
        """A session of its own, whose MC draws start from the graph's seed: the same rows
        get the same answer whatever this process asked before (the daily run restarts them
        for each as-of day, so a rerun of a day answers as the first run did)."""
        self.session = _session.__wrapped__(*self._session_key)

    @property
    def name(self) -> str:
        return str(self.metadata.registered_model)

    @property
    def version(self) -> str:
        return str(self.metadata.version)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's raw outputs (the five and `mc_sd`) for a checked float32 array."""
        values = self.session.run(None, {self.input_name: x})
        return dict(zip(self.output_names, values, strict=True))

    def predict(self, features, key: tuple | None = None) -> dict[str, float]:
        """One row (a mapping of feature -> value, or a vector in feature order); with a
        logger, `key` = (symbol, date) logs it."""
        x = to_array(features, self.features, self.window, single=True)
        checked = check_keys([key], 1) if key is not None else None
        outside = self._check_range(x)
        started = time.perf_counter()
        out = self.run(x)
        multiplier = self._correct(x, out)
        answer = {name: float(out[name][0]) for name in OUTPUTS}
        answer[OUT_OF_RANGE] = bool(outside[0])
        if self.logger is not None and checked is not None:
            self._log(pd.DataFrame([answer]), checked, time.perf_counter() - started, multiplier)
        return answer

    def predict_batch(self, features_list, keys=None) -> pd.DataFrame:
        """Many rows (a DataFrame, a 2-D array or a list of mappings); one output row each,
        in the input's order (and with a DataFrame's index). With a logger, `keys` (a
        DataFrame with symbol and date, or (symbol, date) pairs, one per row) logs them."""
        rows = row_count(features_list)
        if rows is not None and rows > self.max_rows:  # refused before it is converted
            raise InputError(
                f"a batch of {rows:,} rows is over the limit of {self.max_rows:,}: split it, or "
                "raise export.serving.max_rows (or ModelInference(max_rows=...))"
            )
        x = to_array(features_list, self.features, self.window)
        checked = check_keys(keys, len(x)) if keys is not None else None  # before answering
        outside = self._check_range(x)
        started = time.perf_counter()
        out = self.run(x)
        multiplier = self._correct(x, out)
        index = features_list.index if isinstance(features_list, pd.DataFrame) else None
        answer = pd.DataFrame({name: out[name].astype(np.float64) for name in OUTPUTS}, index=index)
        answer[OUT_OF_RANGE] = outside
        if self.logger is not None and checked is not None:
            self._log(answer, checked, time.perf_counter() - started, multiplier)
        return answer

    def _correct(self, x: np.ndarray, out: dict[str, np.ndarray]) -> np.ndarray | None:
        """Apply the latest online state to the graph's outputs in place; returns each row's
        multiplier (None: the static interval, no state)."""
        state = self.calibration.state() if self.calibration is not None else None
        if state is None:
            return None
        flat = x.reshape(len(x), -1)
        vol = flat[:, self._vol_column] if self._vol_column is not None else np.full(len(x), np.nan)
        p10, p50, p90 = (out[k].astype(np.float64) for k in ("p10", "p50", "p90"))
        lower, upper = state.interval(p10, p50, p90, vol)
        multiplier = np.broadcast_to(state.multiplier_for(vol), p50.shape).astype(np.float64)
        out["p10"], out["p90"] = lower, upper
        out["sigma"] = out["sigma"].astype(np.float64) * multiplier
        return multiplier

    def _check_range(self, x: np.ndarray) -> np.ndarray:
        """Per row: a value far outside what the model saw in training. Flagged (and
        warned about) or refused, as the export's serving policy says."""
        if self._bounds is None:
            return np.zeros(len(x), dtype=bool)
        low, high = self._bounds
        flat = x.reshape(len(x), -1)
        beyond = (flat < low) | (flat > high)
        outside = beyond.any(axis=1)
        if outside.any():
            row, column = (int(v[0]) for v in np.nonzero(beyond))
            names = input_columns(self.features, self.window)
            detail = (
                f"row {row}, column {names[column]!r}: {flat[row, column]:.6g} is far outside "
                f"the training range ({int(outside.sum())} row(s) of {len(x)})"
            )
            if self.out_of_range == "refuse":
                raise InputError(f"{detail}; export.serving.out_of_range=refuse")
            log.warning("out of range: %s; answered with out_of_range=true", detail)
        return outside

    def _log(
        self,
        answer: pd.DataFrame,
        keys: pd.DataFrame,
        seconds: float,
        multiplier: np.ndarray | None,
    ) -> None:
        """`keys` as `check_keys` returns them: symbol and ts, one per answer row."""
        self.logger.log(
            pd.DataFrame(
                {
                    "symbol": keys["symbol"].to_numpy(),
                    "ts": keys["ts"].to_numpy(),
                    "model_name": self.name,
                    "model_version": self.version,
                    "predicted": answer["prediction"].to_numpy(),
                    **{k: answer[k].to_numpy() for k in ("sigma", "p10", "p50", "p90")},
                    "latency_ms": 1000.0 * seconds,  # the call's, for each of its rows
                    "online_multiplier": np.nan if multiplier is None else multiplier,
                }
            )
        )
