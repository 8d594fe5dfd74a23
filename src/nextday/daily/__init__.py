"""The daily run: after each close, the store brought up to date from the source, tomorrow's
forecasts from the production versions, and the book and orders they make."""


class ForecastRefused(RuntimeError):
    """The daily run cannot go on as configured; nothing was written (the CLI exits 2)."""
