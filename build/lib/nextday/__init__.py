"""nextday: models that predict each stock's next-day return, as an MLflow project."""

__version__ = "0.1.0"
