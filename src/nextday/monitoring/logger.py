"""Moved to nextday.inference.prediction_log: the serving code writes the prediction log, and
the monitor reads it from the store. This name still imports, with a DeprecationWarning."""

import warnings

from nextday.inference.prediction_log import PredictionLogger

warnings.warn(
    "nextday.monitoring.logger moved to nextday.inference.prediction_log",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["PredictionLogger"]
