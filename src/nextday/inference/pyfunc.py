"""The MLflow pyfunc face of an export: what `mlflow models serve` loads.

The export folder (ONNX files and metadata.json) travels as the model's artifact `export`;
predict runs ModelInference and turns bad input into MLflow's INVALID_PARAMETER_VALUE, which
the scoring server answers with HTTP 400 and the message. Before our check, MLflow's own
schema enforcement answers a missing column with 400 too, and drops an extra column with a
warning in the server log (MLflow's rule; `ModelInference` itself refuses extra columns).
"""

from __future__ import annotations

import mlflow.pyfunc
from mlflow.exceptions import MlflowException

EXPORT_ARTIFACT = "export"


class NextdayOnnxModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from nextday.inference.model import ModelInference

        self.inference = ModelInference(context.artifacts[EXPORT_ARTIFACT])

    def predict(self, context, model_input, params=None):
        from nextday.inference.checks import InputError

        try:
            return self.inference.predict_batch(model_input)
        except InputError as error:
            raise MlflowException.invalid_parameter_value(str(error)) from error
