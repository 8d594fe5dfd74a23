"""The MLflow pyfunc face of an export: what `mlflow models serve` loads.

The export folder (ONNX files and metadata.json) travels as the model's artifact `export`;
predict runs ModelInference and turns bad input into MLflow's INVALID_PARAMETER_VALUE, which
the scoring server answers with HTTP 400 and the message. Before our check, MLflow's own
schema enforcement answers a missing column with 400 too, and drops an extra column with a
warning in the server log (MLflow's rule; `ModelInference` itself refuses extra columns).

Prediction logging: with NEXTDAY_PREDICTION_LOG_URL set (a store URL; a PostgreSQL password
comes from NEXTDAY_PG_PASSWORD), every request that carries the optional key columns `symbol`
and `date` beside the features is logged to the store's model_predictions, off the request
path (nextday.inference.prediction_log.PredictionLogger). The keys are checked first
(`nextday.inference.checks.check_keys`): an empty or over-long symbol, or a date that is not
an unambiguous calendar date, is HTTP 400 naming the row, and nothing of that request is
logged. Requests without keys are answered and not logged. When the server is stopped
(SIGTERM, with any number of workers), each worker writes what it still buffers after its
last request, before it exits.

Online calibration: a version exported with an online rule serves its interval corrected by
the latest state `monitor` wrote to the store's calibration_state, read from
NEXTDAY_CALIBRATION_URL (default: NEXTDAY_PREDICTION_LOG_URL, the store the monitor judges)
at most every NEXTDAY_CALIBRATION_TTL seconds (default 60); without either URL, or until the
monitor has written a state, the static interval.

Following the alias: `mlflow models serve -m models:/nextday-normal@production` resolves the
alias once, and the model it loads is one version's own folder, so by itself the server would
answer with that version until restarted. Instead the served model follows an alias: the one
named by NEXTDAY_FOLLOW_ALIAS (default `production`; `none` turns following off), checked every
`follow_alias_s` seconds (the export's `export.serving.follow_alias_s`, in metadata.json
`serving`; 30 for exports without it; NEXTDAY_FOLLOW_ALIAS_S overrides it; 0 turns following
off). At load it follows only when a tracking URI is set (MLFLOW_TRACKING_URI), the registry
answers, and the loaded version is the one behind that alias of its registered model;
otherwise it serves the loaded version fixed and logs why. When the alias moves (`export`
promotes a version, `promote`, `rollback`), the new version is loaded in the background
through the model cache with its checksums and swapped in between requests, once it takes
the same features and window and gives the same outputs as the version the server started
with (MLflow checks requests against that version's signature); a version that does not is
refused with a log line and the old one keeps serving. A registry that cannot be read keeps
the current version serving (logged once, and again when it answers). Logged predictions name
the version that answered. So a promotion or rollback reaches the server within
`follow_alias_s` plus the new version's load time (see nextday.inference.model.ModelInference).

ONNX Runtime's threads: each server process runs its sessions with the export's
`export.serving.threads` intra-op threads (default 1; 0: ONNX Runtime's own default, one per
core) and `spinning` (default off: an idle thread sleeps instead of holding its core), which
NEXTDAY_ORT_THREADS and NEXTDAY_ORT_SPINNING (1/0) override. One thread each is right when the
server's workers fill the cores (`mlflow models serve -w <cores>`): ONNX Runtime's default
gives every worker a thread per core, and they contend (docs/benchmarks.md has the figures).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

import mlflow.pyfunc
from mlflow.exceptions import MlflowException

if TYPE_CHECKING:
    from nextday.inference.model import RuntimeOptions

EXPORT_ARTIFACT = "export"
LOG_URL_ENV = "NEXTDAY_PREDICTION_LOG_URL"
CALIBRATION_URL_ENV = "NEXTDAY_CALIBRATION_URL"
CALIBRATION_TTL_ENV = "NEXTDAY_CALIBRATION_TTL"
PASSWORD_ENV = "NEXTDAY_PG_PASSWORD"
FOLLOW_ALIAS_ENV = "NEXTDAY_FOLLOW_ALIAS"
FOLLOW_SECONDS_ENV = "NEXTDAY_FOLLOW_ALIAS_S"
THREADS_ENV = "NEXTDAY_ORT_THREADS"
SPINNING_ENV = "NEXTDAY_ORT_SPINNING"
DEFAULT_ALIAS = "production"
KEY_COLUMNS = ("symbol", "date")
SCORING_APP_MODULE = "mlflow.pyfunc.scoring_server.app"  # what `mlflow models serve` runs

log = logging.getLogger(__name__)


class NextdayOnnxModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from nextday.inference.model import ModelInference

        _server_logging()
        logger, calibration = None, None
        url = os.environ.get(LOG_URL_ENV)
        if url:
            from nextday.inference.prediction_log import PredictionLogger

            logger = PredictionLogger(url, password_env=PASSWORD_ENV)
            _close_at_exit(logger)  # what is buffered is written when the process ends
            log.info("logging predictions to %s", logger.store.display_url)
        calibration_url = os.environ.get(CALIBRATION_URL_ENV) or url
        if calibration_url:
            from nextday.uncertainty.stored_state import CalibrationStore

            ttl = float(os.environ.get(CALIBRATION_TTL_ENV) or 60.0)
            calibration = CalibrationStore(calibration_url, ttl, PASSWORD_ENV)
        # the scoring server's app does not exist yet: hooked at the first request
        self._unhooked: threading.Lock | None = threading.Lock() if logger else None
        folder = context.artifacts[EXPORT_ARTIFACT]
        follow, seconds = follow_settings(folder)
        self.inference = ModelInference(
            folder, runtime=runtime_options(folder), logger=logger, calibration=calibration
        )
        if follow is not None:  # when the version is the one behind the alias (else: logged)
            self.inference.follow(follow, seconds)

    def predict(self, context, model_input, params=None):  # noqa: ARG002 (MLflow's signature)
        from nextday.inference.checks import InputError

        if self._unhooked is not None:
            self._close_with_the_server()
        keys = None
        try:
            if all(k in getattr(model_input, "columns", ()) for k in KEY_COLUMNS):
                # checked (symbol, date) before anything is answered or logged
                keys = model_input[list(KEY_COLUMNS)]
                model_input = model_input.drop(columns=list(KEY_COLUMNS))
            return self.inference.predict_batch(model_input, keys=keys)
        except InputError as error:
            raise MlflowException.invalid_parameter_value(str(error)) from error

    def _close_with_the_server(self) -> None:
        """Have the scoring server's app close the logger when it shuts down: after its last
        request, before the process ends. uvicorn re-raises the SIGTERM that stopped it once
        it has shut down, which ends the process without atexit or finalizers, so without
        this the rows of the last second before a stop would be lost."""
        lock = self._unhooked
        if lock is None or not lock.acquire(blocking=False):
            return  # hooked already, or another request is hooking it now
        module = sys.modules.get(SCORING_APP_MODULE)
        handlers = getattr(
            getattr(getattr(module, "app", None), "router", None), "on_shutdown", None
        )
        if isinstance(handlers, list):
            handlers.append(self.inference.logger.close)
        elif module is not None:  # another MLflow: say so (outside its server, at exit only)
            log.warning(
                "%s has no FastAPI app to close the prediction log at shutdown: rows buffered "
                "when the server is stopped may be lost", SCORING_APP_MODULE,
            )  # fmt: skip
        self._unhooked = None  # tried once


def _close_at_exit(logger) -> None:
    """Close `logger` (writing what it buffers) when this process exits normally: atexit, or
    in a multiprocessing child (a worker of `mlflow models serve -w N`), which skips atexit,
    a multiprocessing finalizer. A stop by SIGTERM skips both: the app's shutdown closes it
    (`_close_with_the_server`)."""
    import multiprocessing
    import multiprocessing.util

    if multiprocessing.parent_process() is None:
        atexit.register(logger.close)
    else:
        multiprocessing.util.Finalize(None, logger.close, exitpriority=10)


def _server_logging() -> None:
    """In a scoring server nothing configures logging, so nextday's INFO lines (which version
    serves, why it is served fixed, a switch) would be lost: to stderr, unless the process
    has handlers of its own."""
    package = logging.getLogger("nextday")
    if logging.getLogger().handlers or package.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package.addHandler(handler)
    package.setLevel(logging.INFO)


def runtime_options(folder) -> RuntimeOptions:
    """ONNX Runtime's intra-op threads and spinning for the served model in `folder`:
    NEXTDAY_ORT_THREADS and NEXTDAY_ORT_SPINNING, else the export's serving policy."""
    from nextday.contracts.metadata import ExportMetadata
    from nextday.inference.model import DEFAULT_SERVING, RuntimeOptions, find_metadata

    serving = {**DEFAULT_SERVING, **ExportMetadata.from_json(find_metadata(folder)).serving}
    given = os.environ.get(THREADS_ENV, "").strip()
    try:
        threads = int(given) if given else int(serving["threads"])
    except ValueError:
        raise ValueError(
            f"{THREADS_ENV}={given!r}: a number of threads (0: ONNX Runtime's default)"
        ) from None
    if threads < 0:
        raise ValueError(f"{THREADS_ENV}={threads}: 0 (ONNX Runtime's default) or more threads")
    spin = os.environ.get(SPINNING_ENV, "").strip().lower()
    if spin not in ("", "0", "1", "true", "false"):
        raise ValueError(f"{SPINNING_ENV}={spin!r}: 1 or 0")
    spinning = spin in ("1", "true") if spin else bool(serving["spinning"])
    log.info(
        "ONNX Runtime: %s intra-op thread(s), spinning %s",
        threads or "its default", "on" if spinning else "off",
    )  # fmt: skip
    return RuntimeOptions(threads=threads or None, spinning=spinning)


def follow_settings(folder) -> tuple[str | None, float]:
    """The alias URI the served model in `folder` follows and how often it checks it, from
    NEXTDAY_FOLLOW_ALIAS, NEXTDAY_FOLLOW_ALIAS_S and the export's serving policy; (None, 0)
    with a log line saying why when it serves its own version fixed. Whether the loaded
    version is the one behind the alias is ModelInference's check."""
    from nextday.contracts.metadata import ExportMetadata
    from nextday.inference.model import DEFAULT_SERVING, find_metadata

    metadata = ExportMetadata.from_json(find_metadata(folder))
    served = f"{metadata.registered_model} v{metadata.version}"
    alias = (os.environ.get(FOLLOW_ALIAS_ENV) or DEFAULT_ALIAS).strip()
    if alias.lower() == "none":
        log.info("%s is served fixed: %s=none", served, FOLLOW_ALIAS_ENV)
        return None, 0.0
    given = os.environ.get(FOLLOW_SECONDS_ENV)
    serving = {**DEFAULT_SERVING, **metadata.serving}
    seconds = float(given) if given else float(serving["follow_alias_s"])
    if seconds <= 0:
        where = f"{FOLLOW_SECONDS_ENV}={given}" if given else "export.serving.follow_alias_s=0"
        log.info("%s is served fixed: %s", served, where)
        return None, 0.0
    if not _tracking_uri_set():
        log.info(
            "%s is served fixed, not following alias %r: no tracking URI is set "
            "(MLFLOW_TRACKING_URI)", served, alias,
        )  # fmt: skip
        return None, 0.0
    return f"models:/{metadata.registered_model}@{alias}", seconds


def _tracking_uri_set() -> bool:
    """A tracking URI was given (MLFLOW_TRACKING_URI, or mlflow.set_tracking_uri in this
    process): without one MLflow's default would create a database in the working folder."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return True
    try:
        from mlflow.tracking._tracking_service.utils import is_tracking_uri_set
    except ImportError:  # a later MLflow: the environment variable alone
        return False
    return bool(is_tracking_uri_set())
