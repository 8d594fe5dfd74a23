"""Every artifact one step writes and another reads, with the step that writes it.

Paths are relative to the writing run's artifact root. Files a step writes only for people
(reports, plots) are named by the step that writes them and are not listed here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Artifact:
    path: str  # relative to the run's artifact root
    step: str  # the step whose run writes it

    @property
    def folder(self) -> str:
        return self.path.rpartition("/")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]


# every step: the composed config it ran with (tracking.log_config)
CONFIG = Artifact("config.yaml", "every step")

# prepare
DATASET = Artifact("dataset/dataset.parquet", "prepare")
DEGENERATE_FEATURES = Artifact("dataset/degenerate_features.json", "prepare")
TRUTH = Artifact("oracle/truth.parquet", "prepare")  # synthetic data only
REGIMES = Artifact("reports/regimes.csv", "prepare")
GROUPS = Artifact("dataset/groups.csv", "prepare")  # symbol, group: where the source has sectors

# train and tune: the model's files (model_files/)
MODEL_FILES = "model_files"
SPEC = Artifact("model_files/spec.json", "train")
PROCESSOR = Artifact("model_files/processor.json", "train")
CHECKPOINT = Artifact("model_files/best.keras", "train")

# calibrate
CALIBRATION = Artifact("calibration.json", "calibrate")
# the online rule the version will serve and its volatility buckets' edges (ServedOnline)
ONLINE_CALIBRATION = Artifact("online_calibration.json", "calibrate")

# export: the registered pyfunc model, and copies of its metadata and card beside it
SERVED_MODEL = Artifact("model", "export")
METADATA = Artifact("metadata.json", "export")
CARD = Artifact("model_card.md", "export")
REFERENCE = Artifact("reference.json", "export")  # inside the served model's export folder
