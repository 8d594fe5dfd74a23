"""What an export reads from its upstream runs, gathered by the step that finds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from nextday.models.data import ModelData
from nextday.models.spec import ModelSpec
from nextday.uncertainty.calibration import Calibration
from nextday.uncertainty.online import ServedOnline


@dataclass(frozen=True)
class ExportInputs:
    runs: dict[str, str]  # step -> the run that made this version (prepare, train or tune, ...)
    trained_at: str  # when the model run started (ISO, UTC)
    model_metrics: dict[str, float]  # the model run's (its baselines' and the oracle's)
    network: Any  # the trained Keras network
    spec: ModelSpec
    processor: dict[str, Any]  # the model's processor.json
    calibration: Calibration
    online: ServedOnline | None  # the online rule served; None: the static interval
    dataset: pd.DataFrame  # the prepared dataset
    data: ModelData  # the dataset arranged for the model
