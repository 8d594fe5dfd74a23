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

With `follow_alias_s` > 0 and an alias URI (`models:/nextday-normal@production`), or after
`follow(alias_uri, seconds)` on the version behind that alias, a daemon thread asks the
registry every `follow_alias_s` seconds which version the alias names. When it names
another, that version is loaded in the background (the same model cache and checksums, its
own session, bounds, online rule and calibration reader: a `LoadedVersion`) and, if it takes
the same features and window and gives the same outputs as the version this instance started
with, swapped in as one reference between requests: a request finishes on the version it
started with, and its logged predictions name that version. A version that takes or gives
anything else is refused with one log line naming both feature lists, and the old one keeps
serving; so does a registry that cannot be read (logged once, and again when it answers).
`stop_following()` ends the thread (interpreter exit does too).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nextday.contracts import artifacts, tags
from nextday.contracts.metadata import ExportMetadata
from nextday.contracts.outputs import OUT_OF_RANGE, OUTPUTS
from nextday.inference.checks import InputError, check_keys, input_columns, row_count, to_array
from nextday.uncertainty.online import VOLATILITY_FEATURE, ServedOnline

if TYPE_CHECKING:
    from nextday.uncertainty.stored_state import CalibrationStore, StoredState

log = logging.getLogger(__name__)

METADATA = artifacts.METADATA.name
CACHE_ENV = "NEXTDAY_MODEL_CACHE"
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


# the export's serving policy (export.serving; metadata.json "serving"); older exports
# without one get these
DEFAULT_SERVING = {
    "max_rows": 100_000,
    "out_of_range": "flag",
    "range_multiple": 10.0,
    "follow_alias_s": 30.0,  # the served model: how often it checks its alias (0: never)
    "threads": 0,  # the served model's ONNX Runtime: its default threads and spinning
    "spinning": True,
}
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


def local_folder(
    source: str | Path, tracking_uri: str | None = None, registry_uri: str | None = None
) -> Path:
    """A local folder for `source`: itself, or a registry/run URI downloaded once.

    A registry version's copy is keyed by what the registry says the version is (its source
    run, its model URI and the SHA-256 of every file that export recorded in the registry's
    version tag), not by its name and number alone: a registry rebuilt under the same URI
    with another model as version 1 gets a new copy. On every load the copy is checked
    against the registry's checksums and downloaded again when it differs. `tracking_uri`
    and `registry_uri`: MLflow's (default: the current ones).
    """
    text = str(source)
    if not text.startswith(("models:/", "runs:/")):
        folder = Path(text)
        if not folder.exists():
            raise FileNotFoundError(f"no model folder {folder}")
        return find_metadata(folder).parent
    import mlflow

    tracking_uri = tracking_uri or mlflow.get_tracking_uri()
    expected: dict | None = None
    if text.startswith("models:/"):
        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
        name, number = _name_and_version(text, client)
        version = client.get_model_version(name, number)
        recorded = version.tags.get(tags.SHA256)  # export's checksums, as JSON
        expected = json.loads(recorded) if recorded else None
        resolved = f"models:/{name}/{version.version}"
        identity = f"{resolved}|{version.run_id}|{version.source}|{recorded}"
    else:
        resolved = identity = text
    key = hashlib.sha256(f"{tracking_uri}|{identity}".encode()).hexdigest()[:24]
    root = cache_root()
    target = root / key
    for attempt in range(2):
        if not target.exists():
            staging = Path(tempfile.mkdtemp(prefix="download-", dir=root))
            try:
                mlflow.artifacts.download_artifacts(
                    artifact_uri=resolved,
                    dst_path=str(staging),
                    tracking_uri=tracking_uri,
                    registry_uri=registry_uri,
                )
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


def _name_and_version(uri: str, client=None) -> tuple[str, str]:
    """`models:/name/3` or `models:/name@alias` as (name, version): aliases move, versions
    do not."""
    import mlflow

    client = client or mlflow.MlflowClient()
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, str(client.get_model_version_by_alias(name, alias).version)
    name, _, number = rest.rpartition("/")
    if not name or not number:
        raise ValueError(f"{uri!r}: expected models:/<name>/<version> or models:/<name>@<alias>")
    if number.isdigit():
        return name, number
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


def alias_of(uri: str) -> tuple[str, str] | None:
    """(name, alias) of `models:/name@alias`; None for anything else."""
    rest = str(uri).removeprefix("models:/")
    if not str(uri).startswith("models:/") or "@" not in rest:
        return None
    name, alias = rest.split("@", 1)
    return (name, alias) if name and alias else None


@dataclass(frozen=True)
class RuntimeOptions:
    """ONNX Runtime's session options that serving sets: intra-op `threads` and `spinning`
    (idle threads wait busy for work); None: ONNX Runtime's default (a thread per core,
    spinning)."""

    threads: int | None = None
    spinning: bool | None = None


@functools.lru_cache(maxsize=32)
def _session(path: str, digest: str, provider: str, runtime: RuntimeOptions):  # noqa: ARG001
    # `digest` is read by the cache only: a new file at the same path gets a new session
    import onnxruntime as ort

    options = ort.SessionOptions()
    if runtime.threads:
        options.intra_op_num_threads = runtime.threads
        options.inter_op_num_threads = 1
    if runtime.spinning is not None:
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if runtime.spinning else "0"
        )
    providers = [provider] if provider == CPU else [provider, CPU]
    return ort.InferenceSession(path, options, providers=providers)


@dataclass(frozen=True, eq=False)
class LoadedVersion:
    """One version, loaded whole and never changed afterwards: a request runs on one of these
    from start to end (following an alias swaps the whole object, between requests).

    `registry`: (the version's number in the registry, its checksum tag) when it is known to
    be the version behind the followed alias; None otherwise."""

    folder: Path
    metadata: ExportMetadata
    file: Path
    session_key: tuple[str, str, str, RuntimeOptions]
    session: Any
    features: list[str]
    window: int
    input_name: str
    output_names: list[str]
    max_rows: int
    out_of_range: str
    bounds: tuple[np.ndarray, np.ndarray] | None
    online: ServedOnline | None
    calibration: StoredState | None
    vol_column: int | None
    registry: tuple[str, str] | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.registered_model)

    @property
    def version(self) -> str:
        return str(self.metadata.version)

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    @property
    def contract(self) -> tuple[tuple[str, ...], int, tuple[str, ...]]:
        """What the version takes and gives: its features, window and output names."""
        return tuple(self.features), self.window, tuple(self.output_names)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(None, {self.input_name: x})
        return dict(zip(self.output_names, values, strict=True))

    def restarted(self) -> LoadedVersion:
        """The same version on a session of its own (its MC draws from the graph's seed)."""
        return replace(self, session=_session.__wrapped__(*self.session_key))


def _identity(version) -> tuple[str, str]:
    """A registry version as the follower compares them: its number and checksum tag."""
    return str(version.version), str(version.tags.get(tags.SHA256) or "")


def _error_text(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


# the instances following an alias, stopped at interpreter exit
_FOLLOWING: weakref.WeakSet[ModelInference] = weakref.WeakSet()


@atexit.register
def _stop_following_all() -> None:
    for inference in list(_FOLLOWING):
        inference.stop_following()


def _follow(ref: weakref.ref[ModelInference], stop: threading.Event, seconds: float) -> None:
    """The follower thread: a check every `seconds` until stopped or the instance is gone
    (it holds the instance only during a check)."""
    while not stop.wait(seconds):
        inference = ref()
        if inference is None:
            return
        try:
            inference.check_alias()
        except Exception:  # the thread must outlive any surprise; serving goes on
            log.exception("following %s: the check failed", inference.following)
        del inference


class ModelInference:
    """predict(one row) and predict_batch(many rows) -> prediction, sigma, p10, p50, p90.

    `metadata` is the export's `ExportMetadata` (metadata.json), checked against its files.
    `metadata`, `version`, `features`, `folder`, `session`, `online`, `calibration` and the
    rest are those of the version serving now (`loaded`), which changes only when an
    alias is followed (`follow_alias_s`). `runtime`: ONNX Runtime's threads and spinning
    (its defaults unless given; the served model passes the export's `export.serving`)."""

    def __init__(
        self,
        source: str | Path,
        device: str = "auto",
        float16: bool | None = None,
        runtime: RuntimeOptions | None = None,
        logger=None,
        max_rows: int | None = None,
        calibration: CalibrationStore | None = None,
        follow_alias_s: float | None = None,
    ) -> None:
        import onnxruntime as ort

        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
        available = ort.get_available_providers()
        if device == "cuda" and CUDA not in available:
            raise RuntimeError(f"device=cuda but ONNX Runtime offers only {available}")
        self._use_cuda = device != "cpu" and CUDA in available
        self._float16, self._max_rows = float16, max_rows
        self._runtime = runtime or RuntimeOptions()
        self._calibration_store = calibration
        self.logger = logger  # a nextday.inference.prediction_log.PredictionLogger, or None
        self.following: str | None = None  # the alias URI followed; None: serves one version
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trouble: str | None = None  # why the last check could not read the registry
        self._failed: dict[tuple[str, str], str] = {}  # versions that did not load, and why
        self._refused: set[tuple[str, str]] = set()  # versions that take or give other things
        self._tracking: tuple[str, str] | None = None  # the MLflow URIs a follower asks
        self._registry_client = None
        seconds = float(follow_alias_s or 0.0)
        if seconds < 0:
            raise ValueError(f"follow_alias_s must be 0 (off) or more, got {follow_alias_s}")
        followed = alias_of(str(source))
        if seconds > 0 and followed is None:
            raise ValueError(
                f"follow_alias_s={follow_alias_s} follows an alias: give models:/<name>@<alias>, "
                f"not {str(source)!r} (or call follow(alias_uri, seconds))"
            )
        registry = None
        if followed is not None:  # resolved here, so that a follower knows what it serves
            name, alias = followed
            self._tracking = self._tracking_uris()
            found = self._client().get_model_version_by_alias(name, alias)
            folder = local_folder(f"models:/{name}/{found.version}", *self._tracking)
            registry = _identity(found)
        else:
            folder = local_folder(source)
        self._current = self._load(folder, registry)
        self._contract = self._current.contract  # what every later version must take and give
        if seconds > 0 and followed is not None:
            self._start(*followed, seconds)

    # -- the version serving now ------------------------------------------------------------

    @property
    def loaded(self) -> LoadedVersion:
        """The version serving now (a request runs on the one it started with)."""
        return self._current

    @property
    def metadata(self) -> ExportMetadata:
        return self._current.metadata

    @property
    def folder(self) -> Path:
        return self._current.folder

    @property
    def file(self) -> Path:
        return self._current.file

    @property
    def session(self):
        return self._current.session

    @property
    def provider(self) -> str:
        return self._current.provider

    @property
    def features(self) -> list[str]:
        return self._current.features

    @property
    def window(self) -> int:
        return self._current.window

    @property
    def input_name(self) -> str:
        return self._current.input_name

    @property
    def output_names(self) -> list[str]:
        return self._current.output_names

    @property
    def max_rows(self) -> int:
        return self._current.max_rows

    @property
    def out_of_range(self) -> str:
        return self._current.out_of_range

    @property
    def online(self) -> ServedOnline | None:
        return self._current.online

    @property
    def calibration(self) -> StoredState | None:
        return self._current.calibration

    @property
    def name(self) -> str:
        return self._current.name

    @property
    def version(self) -> str:
        return self._current.version

    def _load(self, folder: Path, registry: tuple[str, str] | None) -> LoadedVersion:
        """The version in `folder`, whole: checked files, session, bounds, online reader."""
        metadata = ExportMetadata.from_json(folder / METADATA)
        verify(folder, metadata.sha256)
        files = metadata.files
        float16 = self._float16
        if float16 is None:  # the export's choice (export.float16)
            float16 = metadata.float16_on_gpu
        if self._use_cuda:
            role = "mc_float16" if float16 else "mc"
        else:
            role = "mc_optimized"  # float16 is for GPUs: the CPU runs float32
        file = folder / files[role]
        key = (str(file), metadata.sha256[files[role]], CUDA if self._use_cuda else CPU)
        session_key = (*key, self._runtime)
        session = _session(*session_key)
        features, window = list(metadata.features), int(metadata.window)
        name, version = str(metadata.registered_model), str(metadata.version)
        serving = {**DEFAULT_SERVING, **metadata.serving}
        out_of_range = str(serving["out_of_range"])
        if out_of_range not in RANGE_POLICIES:
            raise ValueError(f"serving.out_of_range={out_of_range!r}: one of {RANGE_POLICIES}")
        online = ServedOnline.of_version(metadata.online)
        reader: StoredState | None = None
        if self._calibration_store is not None and online is not None:
            reader = self._calibration_store.reader(name, version, online)
        elif self._calibration_store is not None:
            log.info("%s v%s was exported without an online calibration: the static interval",
                     name, version)  # fmt: skip
        columns = input_columns(features, window)
        lagged = VOLATILITY_FEATURE if window <= 1 else f"{VOLATILITY_FEATURE}_lag0"
        vol_column = columns.index(lagged) if lagged in columns else None
        if online is not None and online.settings.buckets > 1 and vol_column is None:
            log.warning(
                "%s v%s has no %s input: every row gets the wildest volatility bucket's "
                "online multiplier", name, version, VOLATILITY_FEATURE,
            )  # fmt: skip
        return LoadedVersion(
            folder=folder,
            metadata=metadata,
            file=file,
            session_key=session_key,
            session=session,
            features=features,
            window=window,
            input_name=session.get_inputs()[0].name,
            output_names=[o.name for o in session.get_outputs()],
            max_rows=int(self._max_rows or serving["max_rows"]),
            out_of_range=out_of_range,
            bounds=_allowed_bounds(serving, features, window),
            online=online,
            calibration=reader,
            vol_column=vol_column,
            registry=registry,
        )

    def restart_draws(self) -> None:
        """A session of its own, whose MC draws start from the graph's seed: the same rows
        get the same answer whatever this process asked before (the daily run restarts them
        for each as-of day, so a rerun of a day answers as the first run did)."""
        with self._lock:
            self._current = self._current.restarted()

    # -- following an alias -------------------------------------------------------------------

    @staticmethod
    def _tracking_uris() -> tuple[str, str]:
        import mlflow

        return mlflow.get_tracking_uri(), mlflow.get_registry_uri()

    def _client(self):
        """The registry this instance follows (the tracking and registry URIs it started
        with, whatever the process sets later)."""
        import mlflow

        if self._registry_client is None:
            tracking, registry = self._tracking or self._tracking_uris()
            self._registry_client = mlflow.MlflowClient(
                tracking_uri=tracking, registry_uri=registry
            )
        return self._registry_client

    def _behind(self, name: str, alias: str) -> tuple[str, str] | None:
        """The registry identity of the loaded version when it is the one behind `alias`;
        None (and a log line saying why) when it is not or the registry cannot say."""
        current = self._current
        try:
            found = self._client().get_model_version_by_alias(name, alias)
        except Exception as error:
            log.warning(
                "%s v%s is served fixed, not following models:/%s@%s: the registry could not "
                "say which version the alias names (%s)",
                current.name, current.version, name, alias, _error_text(error),
            )  # fmt: skip
            return None
        recorded = found.tags.get(tags.SHA256)
        try:
            same = json.loads(recorded) == current.metadata.sha256 if recorded else None
        except ValueError:
            same = False
        if same is None:  # a version registered without checksums: by its number
            same = str(found.version) == current.version
        if not same:
            log.info(
                "%s v%s is served fixed, not following models:/%s@%s: the alias names version "
                "%s, not this one", current.name, current.version, name, alias, found.version,
            )  # fmt: skip
            return None
        return _identity(found)

    def follow(self, alias_uri: str, every_s: float) -> bool:
        """Follow `alias_uri` (models:/<name>@<alias>) from now on, checked every `every_s`
        seconds, when the version serving now is the one behind it (the served model: its
        own folder, loaded by an alias); True when it follows. False, with a log line saying
        why, when that version is not the alias's or the registry cannot say: it serves
        fixed."""
        followed = alias_of(alias_uri)
        if followed is None:
            raise ValueError(f"{alias_uri!r}: expected models:/<name>@<alias>")
        if every_s <= 0:
            raise ValueError(f"every_s={every_s}: a follower checks every so many seconds (> 0)")
        self.stop_following()
        self._stop = threading.Event()
        if self._tracking is None:
            self._tracking = self._tracking_uris()
        registry = self._behind(*followed)
        if registry is None:
            return False
        with self._lock:
            self._current = replace(self._current, registry=registry)
        self._start(*followed, every_s)
        return True

    def _start(self, name: str, alias: str, seconds: float) -> None:
        self.following = f"models:/{name}@{alias}"
        self._alias = (name, alias)
        self._thread = threading.Thread(
            target=_follow,
            args=(weakref.ref(self), self._stop, seconds),
            name=f"nextday follow {self.following}",
            daemon=True,
        )
        weakref.finalize(self, self._stop.set)  # a forgotten instance stops its thread
        _FOLLOWING.add(self)
        self._thread.start()
        log.info(
            "%s v%s: following %s (checked every %g s)",
            self.name, self.version, self.following, seconds,
        )  # fmt: skip

    def stop_following(self) -> None:
        """Stop checking the alias; the version serving now goes on serving."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        _FOLLOWING.discard(self)
        self.following = None

    def check_alias(self) -> bool:
        """One check of the followed alias (the follower thread runs it every
        follow_alias_s): when it names another version, load that version (the model cache
        and its checksums, a session), check it takes and gives what this instance promised,
        and swap it in. True when it swapped."""
        if self.following is None:
            return False
        name, alias = self._alias
        current = self._current
        try:
            found = self._client().get_model_version_by_alias(name, alias)
        except Exception as error:
            if self._trouble is None:  # said once, not at every check
                log.warning(
                    "%s: the registry could not be read (%s); still serving version %s "
                    "(said again once it answers)",
                    self.following, _error_text(error), current.version,
                )  # fmt: skip
            self._trouble = _error_text(error)
            return False
        if self._trouble is not None:
            log.info(
                "%s: the registry answers again (alias -> version %s); serving version %s",
                self.following, found.version, current.version,
            )  # fmt: skip
            self._trouble = None
        identity = _identity(found)
        if identity == current.registry or identity in self._refused:
            return False
        started = time.perf_counter()
        try:
            folder = local_folder(f"models:/{name}/{found.version}", *(self._tracking or ()))
            loaded = self._load(folder, identity)
        except Exception as error:
            if self._failed.get(identity) != _error_text(error):  # once per version and error
                log.error(
                    "%s: version %s could not be loaded (%s); still serving version %s",
                    self.following, found.version, _error_text(error), current.version,
                )  # fmt: skip
                self._failed[identity] = _error_text(error)
            return False
        if loaded.contract != self._contract:
            self._refused.add(identity)
            promised, offered = self._contract, loaded.contract
            log.error(
                "%s: version %s refused, it takes other inputs or gives other outputs than "
                "this server promised: features %s (window %d, outputs %s) instead of %s "
                "(window %d, outputs %s); still serving version %s",
                self.following, found.version, list(offered[0]), offered[1], list(offered[2]),
                list(promised[0]), promised[1], list(promised[2]), current.version,
            )  # fmt: skip
            return False
        with self._lock:
            previous, self._current = self._current, loaded
        self._failed.pop(identity, None)
        log.info(
            "%s: now serving version %s (was version %s; loaded in %.1f s)",
            self.following, found.version, previous.version, time.perf_counter() - started,
        )  # fmt: skip
        return True

    # -- answering ------------------------------------------------------------------------------

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's raw outputs (the five and `mc_sd`) for a checked float32 array."""
        return self._current.run(x)

    def predict(self, features, key: tuple | None = None) -> dict[str, float]:
        """One row (a mapping of feature -> value, or a vector in feature order); with a
        logger, `key` = (symbol, date) logs it."""
        loaded = self._current  # the whole request runs on this version
        x = to_array(features, loaded.features, loaded.window, single=True)
        checked = check_keys([key], 1) if key is not None else None
        outside = self._check_range(loaded, x)
        started = time.perf_counter()
        out = loaded.run(x)
        multiplier = self._correct(loaded, x, out)
        answer = {name: float(out[name][0]) for name in OUTPUTS}
        answer[OUT_OF_RANGE] = bool(outside[0])
        if self.logger is not None and checked is not None:
            seconds = time.perf_counter() - started
            self._log(loaded, pd.DataFrame([answer]), checked, seconds, multiplier)
        return answer

    def predict_batch(self, features_list, keys=None) -> pd.DataFrame:
        """Many rows (a DataFrame, a 2-D array or a list of mappings); one output row each,
        in the input's order (and with a DataFrame's index). With a logger, `keys` (a
        DataFrame with symbol and date, or (symbol, date) pairs, one per row) logs them."""
        loaded = self._current  # the whole request runs on this version
        rows = row_count(features_list)
        if rows is not None and rows > loaded.max_rows:  # refused before it is converted
            raise InputError(
                f"a batch of {rows:,} rows is over the limit of {loaded.max_rows:,}: split it, "
                "or raise export.serving.max_rows (or ModelInference(max_rows=...))"
            )
        x = to_array(features_list, loaded.features, loaded.window)
        checked = check_keys(keys, len(x)) if keys is not None else None  # before answering
        outside = self._check_range(loaded, x)
        started = time.perf_counter()
        out = loaded.run(x)
        multiplier = self._correct(loaded, x, out)
        index = features_list.index if isinstance(features_list, pd.DataFrame) else None
        columns = {name: out[name].astype(np.float64) for name in OUTPUTS}
        # built in one go: adding a column afterwards costs more than the graph for a few rows
        answer = pd.DataFrame({**columns, OUT_OF_RANGE: outside}, index=index)
        if self.logger is not None and checked is not None:
            self._log(loaded, answer, checked, time.perf_counter() - started, multiplier)
        return answer

    @staticmethod
    def _correct(
        loaded: LoadedVersion, x: np.ndarray, out: dict[str, np.ndarray]
    ) -> np.ndarray | None:
        """Apply the latest online state to the graph's outputs in place; returns each row's
        multiplier (None: the static interval, no state)."""
        state = loaded.calibration.state() if loaded.calibration is not None else None
        if state is None:
            return None
        flat = x.reshape(len(x), -1)
        column = loaded.vol_column
        vol = flat[:, column] if column is not None else np.full(len(x), np.nan)
        p10, p50, p90 = (out[k].astype(np.float64) for k in ("p10", "p50", "p90"))
        lower, upper = state.interval(p10, p50, p90, vol)
        multiplier = np.broadcast_to(state.multiplier_for(vol), p50.shape).astype(np.float64)
        out["p10"], out["p90"] = lower, upper
        out["sigma"] = out["sigma"].astype(np.float64) * multiplier
        return multiplier

    @staticmethod
    def _check_range(loaded: LoadedVersion, x: np.ndarray) -> np.ndarray:
        """Per row: a value far outside what the model saw in training. Flagged (and
        warned about) or refused, as the export's serving policy says."""
        if loaded.bounds is None:
            return np.zeros(len(x), dtype=bool)
        low, high = loaded.bounds
        flat = x.reshape(len(x), -1)
        beyond = (flat < low) | (flat > high)
        outside = beyond.any(axis=1)
        if outside.any():
            row, column = (int(v[0]) for v in np.nonzero(beyond))
            names = input_columns(loaded.features, loaded.window)
            detail = (
                f"row {row}, column {names[column]!r}: {flat[row, column]:.6g} is far outside "
                f"the training range ({int(outside.sum())} row(s) of {len(x)})"
            )
            if loaded.out_of_range == "refuse":
                raise InputError(f"{detail}; export.serving.out_of_range=refuse")
            log.warning("out of range: %s; answered with out_of_range=true", detail)
        return np.asarray(outside, dtype=bool)

    def _log(
        self,
        loaded: LoadedVersion,
        answer: pd.DataFrame,
        keys: pd.DataFrame,
        seconds: float,
        multiplier: np.ndarray | None,
    ) -> None:
        """`keys` as `check_keys` returns them: symbol and ts, one per answer row; the rows
        name the version that answered (`loaded`)."""
        self.logger.log(
            pd.DataFrame(
                {
                    "symbol": keys["symbol"].to_numpy(),
                    "ts": keys["ts"].to_numpy(),
                    "model_name": loaded.name,
                    "model_version": loaded.version,
                    "predicted": answer["prediction"].to_numpy(),
                    **{k: answer[k].to_numpy() for k in ("sigma", "p10", "p50", "p90")},
                    "latency_ms": 1000.0 * seconds,  # the call's, for each of its rows
                    "online_multiplier": np.nan if multiplier is None else multiplier,
                }
            )
        )
