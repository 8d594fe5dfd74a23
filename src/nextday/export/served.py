"""The export folder as an MLflow pyfunc model: a DataFrame of the feature columns in, the
five outputs (and the out-of-range flag) out, with only the serving path's requirements."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import nextday
from nextday.contracts import artifacts
from nextday.contracts.metadata import ExportMetadata
from nextday.contracts.outputs import OUT_OF_RANGE

# what the serving path imports: nothing of the training stack (no TensorFlow, scikit-learn,
# Hydra); SQLAlchemy and the PostgreSQL driver for prediction logging
SERVED_PACKAGES = ("mlflow", "onnxruntime", "numpy", "pandas", "sqlalchemy", "psycopg2-binary")


def served_requirements() -> list[str]:
    """The served model's requirements, pinned to this environment's versions."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in SERVED_PACKAGES]


def log_served_model(folder: Path, metadata: ExportMetadata, example_x: np.ndarray):
    """Log `folder` (the export: ONNX files, metadata.json, card) as the active run's
    served model; returns MLflow's ModelInfo."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from nextday.inference import served_model
    from nextday.inference.pyfunc import EXPORT_ARTIFACT, KEY_COLUMNS

    columns = metadata.input_columns
    # the optional keys: a request that sends them gets its predictions logged (see pyfunc)
    keys = [ColSpec("string", name, required=False) for name in KEY_COLUMNS]
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", c) for c in columns] + keys),
        outputs=Schema(
            [ColSpec("double", c) for c in metadata.outputs] + [ColSpec("boolean", OUT_OF_RANGE)]
        ),
    )
    example = pd.DataFrame(
        np.asarray(example_x, dtype=np.float64).reshape(len(example_x), -1), columns=columns
    )
    return mlflow.pyfunc.log_model(
        name=artifacts.SERVED_MODEL.path,
        python_model=served_model.__file__,
        artifacts={EXPORT_ARTIFACT: str(folder)},
        # the serving code travels with the model (MLflow puts it on sys.path at load), so
        # a machine that has never seen this repository can serve the version
        code_paths=[str(Path(nextday.__file__).parent)],
        signature=signature,
        input_example=example,
        pip_requirements=served_requirements(),
    )
