"""What a tuning worker says as it goes: one line per finished trial, and Optuna's bar on a
terminal."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator

import optuna

from nextday.timing import duration, interactive

log = logging.getLogger(__name__)


def show_bar(setting: object) -> bool:
    """`tune.progress_bar`: true, false, or auto (on only where a person watches a terminal)."""
    if isinstance(setting, bool):
        return setting
    if str(setting).lower() == "auto":
        return interactive()
    raise ValueError(f"tune.progress_bar={setting!r}: expected true, false or auto")


@contextlib.contextmanager
def optuna_quiet() -> Iterator[None]:
    """Optuna's own per-trial INFO lines off (`TrialLog` says more); its warnings stay."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


class TrialLog:
    """An Optuna callback: one INFO line per trial this worker finishes: its number, state,
    value (a pruned trial's last reported one), the study's best so far, the trials this
    worker has left and the time they should take: the mean trial so far times the trials
    left, or, where `timeout` (seconds) stops new trials sooner, that.

    `clock` is injectable (tests); it defaults to `time.monotonic`."""

    def __init__(
        self,
        n_trials: int,
        objective: str,
        timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.n_trials, self.objective, self.timeout = n_trials, objective, timeout
        self.clock = clock
        self.started = clock()
        self.finished = 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.finished += 1
        log.info(
            "tune: trial %d %s%s; %s; %s",
            trial.number,
            trial.state.name,
            self._value(trial),
            _best(study),
            self.time_left(),
        )

    def _value(self, trial: optuna.trial.FrozenTrial) -> str:
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None:
            return f", val {self.objective} {trial.value:.6g}"
        if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
            epoch = max(trial.intermediate_values)
            value = trial.intermediate_values[epoch]
            return f" after epoch {epoch + 1}, val {self.objective} {value:.6g}"
        if trial.state == optuna.trial.TrialState.FAIL:
            return " (its error is in the warning above)"
        return ""

    def time_left(self) -> str:
        """'2 of 4 trials left, about 30 s left' (with the timeout's word where it binds)."""
        elapsed = self.clock() - self.started
        left = max(0, self.n_trials - self.finished)
        if left == 0:
            return f"no trials left ({self.finished} in {duration(elapsed)})"
        mean = elapsed / self.finished
        text = f"{left} of {self.n_trials} trials left"
        by_count = mean * left
        if self.timeout is not None:
            stops_in = max(0.0, self.timeout - elapsed)
            if stops_in < by_count:
                if stops_in == 0:
                    return f"{text}, but tune.timeout={self.timeout:g} s has passed: done"
                return (
                    f"{text}, at most about {duration(stops_in + mean)} left: "
                    f"tune.timeout={self.timeout:g} s starts no trial after {duration(stops_in)}"
                )
        return f"{text}, about {duration(by_count)} left"


def _best(study: optuna.Study) -> str:
    try:
        best = study.best_trial
    except ValueError:  # no trial of the study has completed
        return "no completed trial yet"
    value = best.value if best.value is not None else math.nan
    return f"best {value:.6g} (trial {best.number})"
