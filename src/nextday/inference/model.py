"""ModelInference: an exported model's calibrated MC-dropout graph, ready to answer.

It loads a registry URI (`models:/nextday-normal@production`, `models:/nextday-normal/3`) or
a local folder written by export (`metadata.json` beside the ONNX files), checks every file
against the SHA-256 in the metadata, and runs the graph with ONNX Runtime: the CUDA provider
when present (the float16 variant there if asked), the CPU one with the ORT-optimized graph
otherwise. Sessions are cached per file, provider and thread count.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nextday.export.graphs import OUTPUTS
from nextday.inference.checks import InputError, to_array

METADATA = "metadata.json"
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


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


def verify(folder: Path, metadata: dict) -> None:
    """Every file the metadata lists must be there with its recorded SHA-256."""
    for name, expected in metadata["sha256"].items():
        path = Path(folder) / name
        if not path.exists():
            raise ChecksumError(f"{path} is missing (listed in {METADATA})")
        actual = sha256(path)
        if actual != expected:
            raise ChecksumError(
                f"{path} does not match its checksum: sha256 {actual[:16]}..., "
                f"metadata says {expected[:16]}...; refusing to use it"
            )


def local_folder(source: str | Path) -> Path:
    """A local folder for `source`: itself, or a registry/run URI downloaded once per version."""
    text = str(source)
    if not text.startswith(("models:/", "runs:/")):
        folder = Path(text)
        if not folder.exists():
            raise FileNotFoundError(f"no model folder {folder}")
        return find_metadata(folder).parent
    import mlflow

    resolved = _resolve_alias(text) if text.startswith("models:/") else text
    # one cache entry per tracking store and model version (aliases are resolved first)
    key = hashlib.sha256(f"{mlflow.get_tracking_uri()}|{resolved}".encode()).hexdigest()[:24]
    root = Path(tempfile.gettempdir()) / "nextday-models"
    target = root / key
    if not target.exists():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="download-", dir=root))
        mlflow.artifacts.download_artifacts(artifact_uri=resolved, dst_path=str(staging))
        try:
            staging.rename(target)
        except OSError:  # another process got there first
            pass
    return find_metadata(target).parent


def _resolve_alias(uri: str) -> str:
    """`models:/name@alias` as `models:/name/version` (aliases move; versions do not)."""
    import mlflow

    rest = uri.removeprefix("models:/")
    if "@" not in rest:
        return uri
    name, alias = rest.split("@", 1)
    version = mlflow.MlflowClient().get_model_version_by_alias(name, alias).version
    return f"models:/{name}/{version}"


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
    """predict(one row) and predict_batch(many rows) -> prediction, sigma, p10, p50, p90."""

    def __init__(
        self,
        source: str | Path,
        device: str = "auto",
        float16: bool | None = None,
        threads: int | None = None,
        logger=None,
    ) -> None:
        import onnxruntime as ort

        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
        self.folder = local_folder(source)
        self.metadata = json.loads((self.folder / METADATA).read_text())
        verify(self.folder, self.metadata)
        available = ort.get_available_providers()
        if device == "cuda" and CUDA not in available:
            raise RuntimeError(f"device=cuda but ONNX Runtime offers only {available}")
        use_cuda = device != "cpu" and CUDA in available
        files = self.metadata["files"]
        if float16 is None:  # the export's choice (export.float16)
            float16 = bool(self.metadata.get("float16_on_gpu", False))
        if use_cuda:
            role = "mc_float16" if float16 else "mc"
        else:
            role = "mc_optimized"  # float16 is for GPUs: the CPU runs float32
        self.file = self.folder / files[role]
        self.session = _session(
            str(self.file), self.metadata["sha256"][files[role]], CUDA if use_cuda else CPU, threads
        )
        self.provider = self.session.get_providers()[0]
        self.features: list[str] = list(self.metadata["features"])
        self.window = int(self.metadata.get("window", 1))
        self.input_name = self.session.get_inputs()[0].name
        self.logger = logger  # a nextday.monitoring.logger.PredictionLogger, or None
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def name(self) -> str:
        return str(self.metadata["registered_model"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's raw outputs (the five and `mc_sd`) for a checked float32 array."""
        values = self.session.run(None, {self.input_name: x})
        return dict(zip(self.output_names, values, strict=True))

    def predict(self, features, key: tuple | None = None) -> dict[str, float]:
        """One row (a mapping of feature -> value, or a vector in feature order); with a
        logger, `key` = (symbol, date) logs it."""
        x = to_array(features, self.features, self.window, single=True)
        started = time.perf_counter()
        out = self.run(x)
        answer = {name: float(out[name][0]) for name in OUTPUTS}
        if self.logger is not None and key is not None:
            self._log(pd.DataFrame([answer]), [key], time.perf_counter() - started)
        return answer

    def predict_batch(self, features_list, keys=None) -> pd.DataFrame:
        """Many rows (a DataFrame, a 2-D array or a list of mappings); one output row each,
        in the input's order (and with a DataFrame's index). With a logger, `keys` (a
        DataFrame with symbol and date, or (symbol, date) pairs, one per row) logs them."""
        x = to_array(features_list, self.features, self.window)
        started = time.perf_counter()
        out = self.run(x)
        index = features_list.index if isinstance(features_list, pd.DataFrame) else None
        answer = pd.DataFrame({name: out[name].astype(np.float64) for name in OUTPUTS}, index=index)
        if self.logger is not None and keys is not None:
            self._log(answer, keys, time.perf_counter() - started)
        return answer

    def _log(self, answer: pd.DataFrame, keys, seconds: float) -> None:
        if not isinstance(keys, pd.DataFrame):
            keys = pd.DataFrame(list(keys), columns=["symbol", "date"])
        if len(keys) != len(answer):
            raise InputError(f"{len(keys)} keys for {len(answer)} rows to log")
        self.logger.log(
            pd.DataFrame(
                {
                    "symbol": keys["symbol"].astype(str).to_numpy(),
                    "ts": pd.to_datetime(keys["date"]).to_numpy(),
                    "model_name": self.name,
                    "model_version": self.version,
                    "predicted": answer["prediction"].to_numpy(),
                    **{k: answer[k].to_numpy() for k in ("sigma", "p10", "p50", "p90")},
                    "latency_ms": 1000.0 * seconds,  # the call's, for each of its rows
                }
            )
        )
