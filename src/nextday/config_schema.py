"""What a composed config must hold before anything runs: every key of the type its default
has, no key that no group declares, and the numbers in range.

The schema of types is the package's conf/ itself: a key's type is the type of its value in the
defaults of the same group choices (`model=earnings`, `data=csv`, `experiment=quick`), so a key
added to a YAML file is typed by its default, with nothing to keep in step. A float key takes an
int (`train.learning_rate=1`), a string key any scalar (`mlflow.experiment_name=2024`), and any
key takes null (off, or "not set": the step that needs a value says so). A key whose default is
null takes anything. Keys added on purpose with `+key=value` are not typed.

The ranges are declared in RANGES: the numbers that a wrong value would turn into a crash
deep in a step, or a run that quietly means nothing (no epochs, a probability above 1). The
words a key may hold are in CHOICES, which the modules that act on them read their values from.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    """low <= value <= high, each bound strict where its `_open` flag says so; None: that
    side unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )

    def __str__(self) -> str:
        low = (
            None
            if self.low is None
            else f"{'more than' if self.low_open else 'at least'} {self.low:g}"
        )
        high = (
            None
            if self.high is None
            else f"{'less than' if self.high_open else 'at most'} {self.high:g}"
        )
        return " and ".join(part for part in (low, high) if part) or "any number"


AT_LEAST_ONE = Range(low=1)
NOT_NEGATIVE = Range(low=0)
POSITIVE = Range(low=0, low_open=True)
PROBABILITY = Range(low=0, high=1, low_open=True, high_open=True)  # a level, a share, a p
FRACTION = Range(low=0, high=1)

RANGES: dict[str, Range] = {
    # counts: none of them means anything at zero
    "data.n_symbols": AT_LEAST_ONE,
    "model.batch_size": AT_LEAST_ONE,
    "model.max_epochs": AT_LEAST_ONE,
    "model.min_segment_rows": AT_LEAST_ONE,
    "train.patience": AT_LEAST_ONE,
    "train.steps_per_execution": AT_LEAST_ONE,
    "train.baselines.ridge_folds": Range(low=2),
    "train.baselines.tree.max_iter": AT_LEAST_ONE,
    "train.importance.repeats": AT_LEAST_ONE,
    "train.importance.max_rows": AT_LEAST_ONE,
    "calibrate.passes": Range(low=2),  # a spread needs two draws
    "calibrate.online.buckets": AT_LEAST_ONE,
    "tune.n_trials": AT_LEAST_ONE,
    "tune.max_epochs": AT_LEAST_ONE,
    "export.parity.mc_rows": AT_LEAST_ONE,
    "export.parity.mc_calls": Range(low=2),
    "export.serving.max_rows": AT_LEAST_ONE,
    "backtest.refit_every": AT_LEAST_ONE,
    "backtest.rolling_days": AT_LEAST_ONE,
    "backtest.sharpe_ci.draws": AT_LEAST_ONE,
    "backtest.sharpe_ci.block_days": AT_LEAST_ONE,
    "monitor.window_days": AT_LEAST_ONE,
    "monitor.drift_days": AT_LEAST_ONE,
    "monitor.coverage_days": AT_LEAST_ONE,
    "live.days": AT_LEAST_ONE,
    "forecast.history_days": AT_LEAST_ONE,
    "evaluation.min_symbols": AT_LEAST_ONE,
    # sizes and rates
    "data.years": POSITIVE,
    "train.learning_rate": POSITIVE,
    "train.huber_delta": POSITIVE,
    "model.earnings_weight": POSITIVE,
    "backtest.capital": POSITIVE,
    "export.serving.range_multiple": POSITIVE,
    "export.serving.follow_alias_s": NOT_NEGATIVE,
    "export.serving.threads": NOT_NEGATIVE,
    "split.embargo_days": NOT_NEGATIVE,
    "features.warmup_days": NOT_NEGATIVE,
    "forecast.settle_minutes": NOT_NEGATIVE,
    "forecast.lock_timeout_s": NOT_NEGATIVE,
    # levels, shares and p-values
    "calibrate.level": PROBABILITY,
    "backtest.level": PROBABILITY,
    "backtest.sharpe_ci.level": PROBABILITY,
    "evaluation.significance": PROBABILITY,
    "monitor.ks_pvalue": PROBABILITY,
    "backtest.quantile": Range(low=0, high=0.5, low_open=True),  # each side's share
    "backtest.refit_val_fraction": PROBABILITY,
    "split.train": PROBABILITY,
    "split.val": PROBABILITY,
    "split.test": PROBABILITY,
    "train.processor.clip_quantile": Range(low=0, high=0.5, high_open=True),
    "quality.close_only_share": FRACTION,
}


# the values of each key that picks one of a few ways (the modules that act on them read them
# from here, so that a new way is added in one place)
CHOICES: dict[str, tuple[str, ...]] = {
    "model.train_rows": ("all", "normal", "earnings"),
    "model.evaluate_rows": ("all", "normal", "earnings"),
    "train.loss": ("huber", "mse", "mae"),
    "train.processor.scaling": ("robust", "standard"),
    "tune.pruner.kind": ("median", "hyperband", "none"),
    "calibrate.online.rule": ("aci", "pid"),
    "backtest.mode": ("fixed", "refit"),
    "backtest.execution": ("next_open", "next_close"),
    "forecast.session": ("evening", "pre_open"),
    "forecast.restated": ("report", "refuse"),
}


def schema_errors(cfg: Mapping, defaults: Mapping | None = None) -> list[str]:
    """What is wrong with the resolved config `cfg` (a plain mapping): each key whose value
    is not of its type in `defaults` (the same group choices with no key overridden; None: no
    type check), each RANGES key out of range and each CHOICES key not one of its choices.
    One line a problem, the key named."""
    problems = []
    if defaults is not None:
        for key, value, default in _pairs(cfg, defaults):
            expected = _type_name(default)
            if not _fits(value, default):
                problems.append(
                    f"{key}={value!r} is {_type_name(value)}: {key} takes {expected} "
                    f"(its default is {default!r})"
                )
    for key, allowed in RANGES.items():
        value = _select(cfg, key)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not allowed.holds(float(value)):
            problems.append(f"{key}={value!r} is out of range: {key} must be {allowed}")
    for key, choices in CHOICES.items():
        value = _select(cfg, key)
        if isinstance(value, str) and value not in choices:
            problems.append(f"{key}={value!r} is not a choice: {key} takes {' or '.join(choices)}")
    return problems


def unknown_key_message(key: str, defaults: Mapping) -> str:
    """A key that no group declares: the nearest keys that exist, and how to add one."""
    known = [name for name, _ in _leaves(defaults)]
    near = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    group = key.split(".", 1)[0]
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    if not near and isinstance(defaults.get(group), Mapping):
        hint = f"; {group} holds {', '.join(sorted(defaults[group]))}"
    return (
        f"{key} is not a key of the config{hint} (to add a key on purpose: +{key}=...); "
        "nothing was run"
    )


def _fits(value: Any, default: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, str):
        return not isinstance(value, list | dict)
    if isinstance(default, list):
        return isinstance(value, list)
    return isinstance(value, dict) == isinstance(default, dict)


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    return "a list" if isinstance(value, list) else "a mapping"


def _pairs(cfg: Mapping, defaults: Mapping, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, value, default) of each leaf of `cfg` that `defaults` also has."""
    for key, value in cfg.items():
        if key not in defaults:
            continue
        default, name = defaults[key], f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(default, Mapping):
            yield from _pairs(value, default, f"{name}.")
        else:
            yield name, value, default


def _leaves(node: Mapping, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _select(cfg: Mapping, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
