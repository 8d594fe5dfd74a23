"""The file MLflow logs as the served model's code (MLflow's "models from code"): loading
the model runs this file instead of unpickling an object. It needs `nextday` installed."""

import mlflow.models

from nextday.inference.pyfunc import NextdayOnnxModel

mlflow.models.set_model(NextdayOnnxModel())
