"""The MLflow pyfunc face of an export: what `mlflow models serve` loads.

The export folder (ONNX files and metadata.json) travels as the model's artifact `export`;
predict runs ModelInference and turns bad input into MLflow's INVALID_PARAMETER_VALUE, which
the scoring server answers with HTTP 400 and the message. Before our check, MLflow's own
schema enforcement answers a missing column with 400 too, and drops an extra column with a
warning in the server log (MLflow's rule; `ModelInference` itself refuses extra columns).

Prediction logging: with NEXTDAY_PREDICTION_LOG_URL set (a store URL; a PostgreSQL password
comes from NEXTDAY_PG_PASSWORD), every request that carries the optional key columns `symbol`
and `date` beside the features is logged to the store's model_predictions, off the request
path (nextday.monitoring.logger.PredictionLogger). The keys are checked first
(`nextday.inference.checks.check_keys`): an empty or over-long symbol, or a date that is not
an unambiguous calendar date, is HTTP 400 naming the row, and nothing of that request is
logged. Requests without keys are answered and not logged.

Online calibration: a version exported with an online rule serves its interval corrected by
the latest state `monitor` wrote to the store's calibration_state, read from
NEXTDAY_CALIBRATION_URL (default: NEXTDAY_PREDICTION_LOG_URL, the store the monitor judges)
at most every NEXTDAY_CALIBRATION_TTL seconds (default 60); without either URL, or until the
monitor has written a state, the static interval.
"""

from __future__ import annotations

import atexit
import logging
import os

import mlflow.pyfunc
from mlflow.exceptions import MlflowException

EXPORT_ARTIFACT = "export"
LOG_URL_ENV = "NEXTDAY_PREDICTION_LOG_URL"
CALIBRATION_URL_ENV = "NEXTDAY_CALIBRATION_URL"
CALIBRATION_TTL_ENV = "NEXTDAY_CALIBRATION_TTL"
PASSWORD_ENV = "NEXTDAY_PG_PASSWORD"
KEY_COLUMNS = ("symbol", "date")

log = logging.getLogger(__name__)


class NextdayOnnxModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from nextday.inference.model import ModelInference

        logger, calibration = None, None
        url = os.environ.get(LOG_URL_ENV)
        if url:
            from nextday.monitoring.logger import PredictionLogger

            logger = PredictionLogger(url, password_env=PASSWORD_ENV)
            atexit.register(logger.close)  # what is buffered is written when the server stops
            log.info("logging predictions to %s", logger.store.display_url)
        calibration_url = os.environ.get(CALIBRATION_URL_ENV) or url
        if calibration_url:
            from nextday.uncertainty.stored_state import CalibrationStore

            ttl = float(os.environ.get(CALIBRATION_TTL_ENV) or 60.0)
            calibration = CalibrationStore(calibration_url, ttl, PASSWORD_ENV)
        self.inference = ModelInference(
            context.artifacts[EXPORT_ARTIFACT], logger=logger, calibration=calibration
        )

    def predict(self, context, model_input, params=None):
        from nextday.inference.checks import InputError

        keys = None
        try:
            if all(k in getattr(model_input, "columns", ()) for k in KEY_COLUMNS):
                # checked (symbol, date) before anything is answered or logged
                keys = model_input[list(KEY_COLUMNS)]
                model_input = model_input.drop(columns=list(KEY_COLUMNS))
            return self.inference.predict_batch(model_input, keys=keys)
        except InputError as error:
            raise MlflowException.invalid_parameter_value(str(error)) from error
