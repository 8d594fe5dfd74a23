"""The plots that reports link to, named once: where each PNG lies in the artifacts of the run
that draws it.

The validation report and the calibration report lie at their run's artifact root, beside
`report/`, so they link each picture by its relative `path`. The model card belongs to the
export run and its pictures to the train (or tune) and calibrate runs before it, so the card
links them by `uri`, with the run id.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Picture:
    path: str  # relative to the drawing run's artifact root
    steps: tuple[str, ...]  # the steps whose runs draw it
    caption: str  # what it shows, for a link's text

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    def uri(self, run_id: str) -> str:
        """The picture in run `run_id`: for `mlflow artifacts download -u` or the UI."""
        return f"runs:/{run_id}/{self.path}"

    def markdown(self) -> str:
        """The picture shown in a report at its run's artifact root."""
        return f"![{self.caption}]({self.path})"


MODEL_STEPS = ("train", "tune")  # tune retrains its best configuration and judges it as train

# train and tune: evaluation.judging draws them into report/
LOSS_CURVES = Picture(
    "report/loss_curves.png", MODEL_STEPS, "Loss curves (training and validation loss by epoch)"
)
PREDICTED_VS_ACTUAL = Picture(
    "report/predicted_vs_actual.png", MODEL_STEPS, "Predicted vs actual next-day return (test)"
)
ERROR_HISTOGRAM = Picture(
    "report/error_histogram.png", MODEL_STEPS, "Error distribution, model and zero (test)"
)
ERROR_BY_MOVE_SIZE = Picture(
    "report/error_by_move_size.png", MODEL_STEPS, "MAE by size of the actual move (test)"
)
IC_BY_MONTH = Picture("report/ic_by_month.png", MODEL_STEPS, "Rank IC by month (test)")
MODEL_PICTURES = (
    LOSS_CURVES,
    PREDICTED_VS_ACTUAL,
    ERROR_HISTOGRAM,
    ERROR_BY_MOVE_SIZE,
    IC_BY_MONTH,
)

# calibrate: uncertainty.report draws them into report/
RELIABILITY = Picture(
    "report/reliability.png",
    ("calibrate",),
    "Reliability diagram (observed against nominal coverage)",
)
COVERAGE_BY_MONTH = Picture(
    "report/coverage_by_month.png", ("calibrate",), "Interval coverage by month (test)"
)
