"""The file MLflow logs as the served model's code (MLflow's "models from code"): loading
the model runs this file instead of unpickling an object. The nextday package comes from the
model's code/ folder (export logs it with `code_paths`), so nothing but the model's
requirements needs to be installed."""

import mlflow.models

from nextday.inference.pyfunc import NextdayOnnxModel

mlflow.models.set_model(NextdayOnnxModel())
