"""Online conformal calibration: an interval that stays calibrated after the market moves.

The static calibration fixes the central `level` interval (p10..p90 at 0.8) once. Here a small
state widens or narrows it day by day from outcomes already known, by a width multiplier m
around the median:

    lower = p50 - m (p50 - p10),    upper = p50 + m (p90 - p50);    m = 1 is the static interval.

After a day's outcomes are known (the return close d -> close d+1 is known at close d+1, before
the prediction for d+1 is served), err_t, the share of that day's rows outside the interval the
state served, updates m with one of two rules. The share of n rows is first shrunk towards alpha
by n / (n + n0) (`half_step_rows`): a day of a handful of outcomes (the earnings model's) is
mostly noise and moves m little, a day of hundreds moves it almost a full step.

- `aci`, adaptive conformal inference (Gibbs & Candes, NeurIPS 2021): the running miscoverage
  target moves by alpha_{t+1} = alpha_t + gamma (alpha - err_t), and the interval is the static
  one rescaled as a normal central interval would be, m_t = z(1 - alpha_t/2) / z(1 - alpha/2).
  alpha_t is held within the targets whose m lies in [min_multiplier, max_multiplier] (a
  projection, so it cannot wind up where the width no longer moves). gamma (`aci_step`, 0.05)
  is per trading day on the day's share of misses (the paper's 0.005 is per single outcome; a
  day's share of hundreds of outcomes is far less noisy). Its steps are in alpha, so after a
  large shift they are coarse in m: with the scale tripled (alpha_t near 1e-4) one day's step
  swings m between about 2 and max_multiplier.
- `pid`, conformal PID control (Angelopoulos, Candes & Tibshirani, NeurIPS 2023) without the
  scorecaster: quantile tracking on the multiplier itself, m_{t+1} = m_t + eta (err_t - alpha)
  (m is the tracked quantile of the normalised score |y - p50| / half-width, so eta, the
  `pid_step`, needs no rescaling by the return's scale as the paper's learning rate does), plus
  an integrator on the running sum E_t of (err_t - alpha): K_I tanh(E_t / S). The paper's
  integrator r_t = K_I tan(E log t / (C t)) is unbounded and fades as t grows (log t / t), which
  suits a finite test but not a state that serves for years; tanh keeps it time-invariant and
  bounded by K_I (`pid_integral_gain`), S (`pid_integral_scale`) is the error sum at which it
  gives 76% of K_I, and E is held within +-3 S (tanh(3) = 0.995: accumulating further would only
  delay the unwinding: anti-windup). m is held within [min_multiplier, max_multiplier].

Defaults (conf/calibrate/default.yaml: pid, eta 0.5, K_I 0.5, S 2, n0 20): E is the excess
misses so far (in days' shares), and m moves by about eta + K_I/S = 0.75 per unit of E near the
start, so a shift that needs m to grow by 0.7 costs about one day's worth of excess misses.
How the rules behave on simulated streams and on the default market is measured in
docs/benchmarks.md ("Online calibration on simulated streams").

Mondrian (group-conditional) calibration: with `buckets` > 1 each trailing-volatility bucket
(edges: quantiles of the training rows' vol_20d) keeps its own state, so a coverage gap confined
to calm or to wild rows is closed where it is. A bucket without rows on a day is not updated.

`OnlineState` is what the store keeps and serving applies (JSON round trip). `ServedOnline` is
what a version carries in its metadata: the rule it serves and its bucket edges, fixed at
calibrate, so that the monitor updates the state by the version's own rule. Running a rule
offline over past days (calibrate, export, the backtest, the monitor's tables) is
`uncertainty.replay`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date as Date
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from nextday.config_schema import CHOICES
from nextday.evaluation import intervals

RULES = CHOICES["calibrate.online.rule"]
STATIC = "static"  # the name of the uncorrected interval in comparisons
WINDUP_LIMIT = 3.0  # the error sum is held within +- this many pid_integral_scale
VOLATILITY_FEATURE = "vol_20d"  # the trailing volatility that picks a row's bucket
_NORMAL = NormalDist()


class OutcomeOrderError(ValueError):
    """A day's outcomes offered to a state that has already used them or later ones."""


@dataclass(frozen=True)
class OnlineSettings:
    """How the interval is corrected online (the `calibrate.online` config group)."""

    rule: str  # "aci" | "pid"
    level: float  # the central interval corrected (0.8: p10..p90)
    aci_step: float  # gamma: ACI's step on the miscoverage target, per trading day
    pid_step: float  # eta: PID's quantile-tracking step on the multiplier
    pid_integral_gain: float  # K_I: the most the integrator adds to (or takes from) m
    pid_integral_scale: float  # S: the error sum at which the integrator gives tanh(1) K_I
    buckets: int  # 1: one state; 5: one per trailing-volatility quintile (Mondrian)
    half_step_rows: float  # n0: a day's miss share of n rows counts n / (n + n0) of a full step
    min_multiplier: float
    max_multiplier: float

    def __post_init__(self) -> None:
        problems = []
        if self.rule not in RULES:
            problems.append(f"rule {self.rule!r} is not one of {RULES}")
        if not 0.0 < self.level < 1.0:
            problems.append(f"level {self.level} is not in (0, 1)")
        if min(self.aci_step, self.pid_step, self.pid_integral_gain) < 0.0:
            problems.append("aci_step, pid_step and pid_integral_gain cannot be negative")
        if self.pid_integral_scale <= 0.0:
            problems.append(f"pid_integral_scale {self.pid_integral_scale} is not positive")
        if self.half_step_rows < 0.0:
            problems.append(f"half_step_rows {self.half_step_rows} is negative")
        if self.buckets < 1:
            problems.append(f"buckets {self.buckets} is not at least 1")
        if not 0.0 < self.min_multiplier <= 1.0 <= self.max_multiplier:
            problems.append(
                f"the multiplier range [{self.min_multiplier}, {self.max_multiplier}] must "
                "hold 1 (the static interval) and stay above 0"
            )
        if problems:
            raise ValueError("calibrate.online: " + "; ".join(problems))

    @classmethod
    def from_config(cls, settings: Mapping) -> OnlineSettings:
        return cls(
            rule=str(settings["rule"]),
            level=float(settings["level"]),
            aci_step=float(settings["aci_step"]),
            pid_step=float(settings["pid_step"]),
            pid_integral_gain=float(settings["pid_integral_gain"]),
            pid_integral_scale=float(settings["pid_integral_scale"]),
            buckets=int(settings["buckets"]),
            half_step_rows=float(settings["half_step_rows"]),
            min_multiplier=float(settings["min_multiplier"]),
            max_multiplier=float(settings["max_multiplier"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def alpha(self) -> float:
        return 1.0 - self.level

    def describe(self) -> str:
        """The rule in words, for the card, the gate and `versions`."""
        steps = (
            f"gamma {self.aci_step:g}"
            if self.rule == "aci"
            else f"eta {self.pid_step:g}, K_I {self.pid_integral_gain:g}, "
            f"S {self.pid_integral_scale:g}"
        )
        buckets = "one state" if self.buckets == 1 else f"{self.buckets} volatility buckets"
        bounds = f"m in [{self.min_multiplier:g}, {self.max_multiplier:g}]"
        return f"online {self.rule.upper()} ({steps}; {buckets}; {bounds})"

    @property
    def windup_limit(self) -> float:
        return WINDUP_LIMIT * self.pid_integral_scale


@dataclass(frozen=True)
class ServedOnline:
    """The online calibration a version serves: its rule and its buckets' volatility edges
    (the training rows' quantiles), as calibrate fixed them. metadata.json keeps it as
    `online` (`to_dict`); a version exported without one serves the static interval."""

    settings: OnlineSettings
    edges: tuple[float, ...]

    def __post_init__(self) -> None:
        OnlineState.start(self.settings, self.edges)  # the edges fit the buckets

    def to_dict(self) -> dict[str, Any]:
        return {**self.settings.to_dict(), "edges": list(self.edges)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServedOnline:
        return cls(OnlineSettings.from_config(data), tuple(float(e) for e in data["edges"]))

    @classmethod
    def of_version(cls, online: Mapping[str, Any] | None) -> ServedOnline | None:
        """A version's (metadata `online`), or None where it serves the static interval."""
        return cls.from_dict(online) if online else None

    def start(self) -> OnlineState:
        return OnlineState.start(self.settings, self.edges)


def served_kind(online: ServedOnline | None) -> str:
    """Which calibration a version serves, in a few words (the registry's tag, `versions`)."""
    if online is None:
        return "static"
    buckets = online.settings.buckets
    return f"static + online {online.settings.rule.upper()}" + (
        f" ({buckets} volatility buckets)" if buckets > 1 else ""
    )


def describe_served(online: ServedOnline | None) -> str:
    """Which calibration a version serves, in a sentence (the model card)."""
    static = "the static calibration (a scale model and split conformal, fixed at calibrate)"
    if online is None:
        return f"{static}; no online correction"
    return (
        f"{static}, corrected after deployment by {online.settings.describe()}: its state is "
        "updated by `monitor` from each day's outcomes in the store's calibration_state, "
        "and applied by serving that reads that store (NEXTDAY_CALIBRATION_URL, else "
        "NEXTDAY_PREDICTION_LOG_URL); without one, or before the first update, the static "
        "interval"
    )


def volatility_edges(vol: ArrayLike, buckets: int) -> tuple[float, ...]:
    """The inner edges of `buckets` equally filled buckets of (training rows') volatility."""
    values = np.asarray(vol, float)
    values = values[np.isfinite(values)]
    if buckets > 1 and len(values) < buckets:
        raise ValueError(f"{buckets} volatility buckets need at least {buckets} rows with a value")
    inner = np.arange(1, buckets) / buckets
    return tuple(float(e) for e in np.quantile(values, inner)) if buckets > 1 else ()


def _alpha_of(multiplier: float, level: float) -> float:
    """The miss rate of a normal central interval `multiplier` times the `level` one."""
    return 2.0 * _NORMAL.cdf(-multiplier * _NORMAL.inv_cdf(0.5 + level / 2.0))


def _multiplier_of(alpha: float, level: float) -> float:
    return -_NORMAL.inv_cdf(alpha / 2.0) / _NORMAL.inv_cdf(0.5 + level / 2.0)


def _aci(multiplier: float, error: float, sums: tuple[float, float], s: OnlineSettings) -> float:  # noqa: ARG001 (one signature for every rule)
    """Gibbs & Candes: the target alpha_t moves by gamma (alpha - err), held where m is in range."""
    lowest = _alpha_of(s.max_multiplier, s.level)
    highest = _alpha_of(s.min_multiplier, s.level)
    target = _alpha_of(multiplier, s.level) + s.aci_step * (s.alpha - error)
    return _multiplier_of(min(max(target, lowest), highest), s.level)


def _pid(multiplier: float, error: float, sums: tuple[float, float], s: OnlineSettings) -> float:
    """Quantile tracking on m plus the change of the saturated integrator K_I tanh(E / S)."""
    before, after = (math.tanh(e / s.pid_integral_scale) for e in sums)
    moved = multiplier + s.pid_step * (error - s.alpha) + s.pid_integral_gain * (after - before)
    return min(max(moved, s.min_multiplier), s.max_multiplier)


# each rule: (multiplier, the day's miss share, error sum before and after, settings) -> new m
RULE_STEPS: dict[str, Callable[[float, float, tuple[float, float], OnlineSettings], float]] = {
    "aci": _aci,
    "pid": _pid,
}


def _day(value: Any) -> Date:
    return pd.Timestamp(value).date()


@dataclass(frozen=True)
class OnlineState:
    """The width multipliers served now (one per volatility bucket) and what they came from."""

    rule: str
    level: float
    edges: tuple[float, ...]  # inner volatility edges: len(edges) + 1 buckets
    multiplier: tuple[float, ...]
    error_sum: tuple[float, ...]  # running sum of (err_t - alpha), held within +- 3 S
    updates: tuple[int, ...]  # days that updated each bucket
    through: str | None = None  # the last date whose outcomes were used (ISO); None: none yet

    @classmethod
    def start(cls, settings: OnlineSettings, edges: Sequence[float] = ()) -> OnlineState:
        """The static calibration (m = 1 everywhere), before any outcome."""
        if len(edges) != settings.buckets - 1:
            raise ValueError(
                f"{settings.buckets} volatility buckets need {settings.buckets - 1} inner edges, "
                f"got {len(edges)} (see volatility_edges)"
            )
        n = settings.buckets
        return cls(
            rule=settings.rule,
            level=settings.level,
            edges=tuple(float(e) for e in edges),
            multiplier=(1.0,) * n,
            error_sum=(0.0,) * n,
            updates=(0,) * n,
        )

    @property
    def alpha(self) -> tuple[float, ...]:
        """Per bucket, the miss rate a normal interval of the served width would have: ACI's
        running target alpha_t (derived from m, so the state holds one truth)."""
        return tuple(_alpha_of(m, self.level) for m in self.multiplier)

    def bucket(self, vol: ArrayLike) -> np.ndarray:
        """Each row's volatility bucket (0 = calmest); a missing volatility counts as wild."""
        return np.searchsorted(np.asarray(self.edges), np.asarray(vol, float), side="right")

    def multiplier_for(self, vol: ArrayLike) -> np.ndarray:
        """Each row's width multiplier (serving also scales sigma by it)."""
        return np.asarray(self.multiplier)[self.bucket(vol)]

    def interval(
        self, p10: ArrayLike, p50: ArrayLike, p90: ArrayLike, vol: ArrayLike
    ) -> tuple[np.ndarray, np.ndarray]:
        """The served (lower, upper): the static interval's halves scaled by m around p50."""
        center = np.asarray(p50, float)
        m = np.broadcast_to(self.multiplier_for(vol), center.shape)
        return (
            center - m * (center - np.asarray(p10, float)),
            center + m * (np.asarray(p90, float) - center),
        )

    def update(
        self,
        date: Any,
        p10: ArrayLike,
        p50: ArrayLike,
        p90: ArrayLike,
        actual: ArrayLike,
        vol: ArrayLike,
        settings: OnlineSettings,
    ) -> OnlineState:
        """The state after `date`'s outcomes (the rows predicted that day, their static interval
        and the return to the next close, known a day later): each bucket's miss share of the
        interval this state served moves its multiplier. A date not after `through` is refused:
        an outcome is used once, in order. Rows without an outcome yet, or without an interval
        (no prediction), are left out; a day with none changes nothing."""
        lower, upper = self.interval(p10, p50, p90, vol)
        actual = np.asarray(actual, float)
        known = judgeable(lower, upper, actual)
        missed = ~intervals.inside(lower[known], upper[known], actual[known])
        bucket = np.broadcast_to(self.bucket(vol), actual.shape)[known]
        return self.advance(date, missed, bucket, settings)

    def advance(
        self, date: Any, missed: np.ndarray, bucket: np.ndarray, settings: OnlineSettings
    ) -> OnlineState:
        """The state after `date`, given each judged row's miss and bucket (what `update`
        works out from the interval this state served)."""
        day = _day(date)
        if self.through is not None and day <= Date.fromisoformat(self.through):
            raise OutcomeOrderError(
                f"outcomes of {day} offered to an online state updated through {self.through}: "
                "each day's outcomes update it once, in date order (replay from an earlier "
                "state to revise a day)"
            )
        self._check(settings)
        if not len(missed):
            return self
        n, step, limit = len(self.multiplier), RULE_STEPS[self.rule], settings.windup_limit
        rows = np.bincount(bucket, minlength=n)
        misses = np.bincount(bucket, weights=missed, minlength=n)
        multiplier, error_sum = list(self.multiplier), list(self.error_sum)
        updates = list(self.updates)
        for b in np.flatnonzero(rows):
            weight = rows[b] / (rows[b] + settings.half_step_rows)
            error = settings.alpha + weight * (float(misses[b] / rows[b]) - settings.alpha)
            after = min(max(error_sum[b] + error - settings.alpha, -limit), limit)
            multiplier[b] = step(multiplier[b], error, (error_sum[b], after), settings)
            error_sum[b], updates[b] = after, updates[b] + 1
        return replace(
            self,
            multiplier=tuple(multiplier),
            error_sum=tuple(error_sum),
            updates=tuple(updates),
            through=day.isoformat(),
        )

    def _check(self, settings: OnlineSettings) -> None:
        wanted = (self.rule, self.level, len(self.multiplier))
        given = (settings.rule, settings.level, settings.buckets)
        if wanted != given:
            raise ValueError(
                f"the online state follows rule {self.rule!r} at level {self.level} with "
                f"{len(self.multiplier)} bucket(s), the settings say rule {settings.rule!r} at "
                f"{settings.level} with {settings.buckets}: start a new state for new settings"
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the store keeps and serving reads."""
        return {
            "rule": self.rule,
            "level": self.level,
            "edges": list(self.edges),
            "multiplier": list(self.multiplier),
            "error_sum": list(self.error_sum),
            "updates": list(self.updates),
            "through": self.through,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OnlineState:
        return cls(
            rule=str(data["rule"]),
            level=float(data["level"]),
            edges=tuple(float(e) for e in data["edges"]),
            multiplier=tuple(float(m) for m in data["multiplier"]),
            error_sum=tuple(float(e) for e in data["error_sum"]),
            updates=tuple(int(u) for u in data["updates"]),
            through=None if data["through"] is None else str(data["through"]),
        )


def judgeable(lower: ArrayLike, upper: ArrayLike, actual: ArrayLike) -> np.ndarray:
    """Rows whose outcome is known and whose interval exists: a missing prediction is no miss."""
    return np.isfinite(actual) & np.isfinite(lower) & np.isfinite(upper)
