"""The built-in market: a seeded simulation with the stylized facts of US equities.

Each symbol's daily return is

    r[i,t] = alpha[i,t] + beta_i * m[t] + gamma_i * s[k(i),t] + e[i,t] + jump[i,t]

with a market factor `m` whose drift and volatility follow bull/bear/sideways regimes (a
Markov chain), sector factors `s`, and idiosyncratic noise `e`; all three are GARCH(1,1) with
Student-t innovations (fat tails and volatility clustering). Symbols report quarterly; the
return after a report jumps by an amount the earnings surprise explains only in part.

`alpha[i,t+1]` is the planted predictable part, known at close t: a short-term reversal that is
stronger when volatility is high (the non-linear interaction), a weak momentum, and a drift
after earnings surprises. The generator keeps the ground truth of every next-day return (its
conditional mean and scale) apart from the features, so evaluation can report the oracle.
docs/synthetic.md describes the parameters and the facts they produce.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextday.data.schema import EARNINGS_COLUMNS, RawMarket

TRADING_DAYS_PER_YEAR = 252
QUARTER_DAYS = 63
REGIMES = ("bull", "bear", "sideways")


@dataclass(frozen=True)
class SignalStrength:
    """Sizes of the planted predictable part (see the module docstring)."""

    reversal: float = 0.015
    momentum: float = 0.006
    drift_after_surprise: float = 0.0008
    surprise_jump: float = 0.018


@dataclass(frozen=True)
class RegimeChange:
    """From trading day `day` on, the market stays in `regime` with `vol_scale` times its usual
    volatility: a planted break for the monitor to find (the live simulation's crash)."""

    day: int
    regime: str = "bear"
    vol_scale: float = 2.0

    def __post_init__(self):
        if self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {self.regime!r}")
        if self.day < 0 or self.vol_scale <= 0:
            raise ValueError(f"need day >= 0 and vol_scale > 0, got {self.day}, {self.vol_scale}")


@dataclass(frozen=True)
class MarketSpec:
    n_symbols: int = 200
    years: float = 5
    seed: int = 7
    start_date: str = "2019-01-02"
    n_sectors: int = 10
    signal: SignalStrength = SignalStrength()
    change: RegimeChange | None = None

    @property
    def n_days(self) -> int:
        return int(round(self.years * TRADING_DAYS_PER_YEAR))


# Regime dynamics: daily market drift, volatility multiplier, and a persistent transition
# matrix (expected stay of about 120 trading days).
REGIME_DRIFT = np.array([0.0007, -0.0010, 0.0001])
REGIME_VOL = np.array([0.85, 1.45, 1.0])
REGIME_TRANSITION = np.array(
    [
        [0.992, 0.003, 0.005],
        [0.010, 0.980, 0.010],
        [0.006, 0.004, 0.990],
    ]
)

# GARCH(1,1): variance[t+1] = omega + a * shock[t]^2 + b * variance[t]
GARCH_MARKET = (0.09, 0.89)
GARCH_SECTOR = (0.06, 0.92)
GARCH_IDIO = (0.10, 0.88)
T_DOF_FACTOR = 4.0
T_DOF_IDIO = 3.2
MARKET_VOL = 0.0072
VOL_OF_VOL = 0.5
VOL_CAP = 3.5
SECTOR_VOL = 0.006


def spec_from_config(cfg) -> MarketSpec:
    """Build a MarketSpec from the `data` config group (synthetic)."""
    signal = SignalStrength(**dict(cfg.get("signal", {})))
    return MarketSpec(
        n_symbols=int(cfg.n_symbols),
        years=float(cfg.years),
        seed=int(cfg.seed),
        start_date=str(cfg.start_date),
        n_sectors=int(cfg.get("n_sectors", 10)),
        signal=signal,
    )


def generate_market(spec: MarketSpec, path_seed: int | None = None) -> RawMarket:
    """Simulate the market described by `spec`; the same spec gives the same data.

    `path_seed` draws another stretch of the same market: the symbols and their betas,
    sectors and volatilities come from `spec.seed` (the generator's first draws), everything
    after them from `path_seed` (see nextday.monitoring.live).
    """
    if spec.n_symbols < 2:
        raise ValueError(f"data.n_symbols must be at least 2, got {spec.n_symbols}")
    if spec.n_days < 2 * QUARTER_DAYS:
        raise ValueError(f"data.years must give at least 126 trading days, got {spec.n_days}")
    return _Simulation(spec, path_seed).run()


def _student_t(rng: np.random.Generator, size, dof: float) -> np.ndarray:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(dof, size=size) / np.sqrt(dof / (dof - 2.0))


def _garch_step(variance, shock, omega, params, long_run_vol):
    a, b = params
    capped = np.clip(shock, -4.0 * np.sqrt(variance), 4.0 * np.sqrt(variance))
    updated = omega + a * capped**2 + b * variance
    return np.clip(updated, (0.3 * long_run_vol) ** 2, (VOL_CAP * long_run_vol) ** 2)


def _tickers(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list(string.ascii_uppercase))
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        length = rng.choice([3, 4], p=[0.4, 0.6])
        ticker = "".join(rng.choice(letters, size=length))
        if ticker not in seen:
            seen.add(ticker)
            out.append(ticker)
    return out


class _Simulation:
    def __init__(self, spec: MarketSpec, path_seed: int | None = None):
        self.spec = spec
        self.path_seed = path_seed
        self.rng = np.random.default_rng(spec.seed)
        self.n = spec.n_symbols
        self.t = spec.n_days

    def run(self) -> RawMarket:
        rng, n, t = self.rng, self.n, self.t
        dates = pd.bdate_range(self.spec.start_date, periods=t)
        symbols = _tickers(rng, n)
        sector = rng.permutation(np.arange(n) % self.spec.n_sectors)
        beta = np.clip(rng.normal(1.0, 0.3, n), 0.3, 1.9)
        gamma = np.clip(rng.normal(1.0, 0.3, n), 0.2, 1.8)
        idio_vol = np.exp(rng.normal(np.log(0.016), 0.3, n))
        if self.path_seed is not None:
            self.rng = rng = np.random.default_rng(self.path_seed)

        regimes = self._regimes(t)
        calendar = self._earnings_calendar(n, t)
        reports = self._reports(calendar, n)
        returns, truth_mean, truth_scale, reaction = self._returns(
            regimes, beta, gamma, sector, idio_vol, calendar, reports
        )
        ohlcv = self._bars(symbols, dates, returns, idio_vol, reaction)
        earnings = self._earnings_frame(symbols, dates, reports)

        # truth of the return from t to t+1, for every t that has a next day
        truth = pd.DataFrame(
            {
                "symbol": np.repeat(symbols, t - 1),
                "ts": np.tile(dates[:-1].to_numpy(), n),
                "true_mean": truth_mean[:-1].T.reshape(-1),
                "true_scale": truth_scale[:-1].T.reshape(-1),
            }
        )
        return RawMarket(
            ohlcv=ohlcv,
            earnings=earnings,
            source="synthetic",
            truth=truth,
            regimes=pd.DataFrame({"ts": dates, "regime": np.array(REGIMES)[regimes]}),
            symbols=pd.DataFrame({"symbol": symbols, "sector": [f"S{k:02d}" for k in sector]}),
        )

    def _regimes(self, t: int) -> np.ndarray:
        states = np.empty(t, dtype=int)
        states[0] = 2
        draws = self.rng.random(t)
        cumulative = REGIME_TRANSITION.cumsum(axis=1)
        for day in range(1, t):
            states[day] = int(np.searchsorted(cumulative[states[day - 1]], draws[day]))
        states = np.minimum(states, 2)
        change = self.spec.change
        if change is not None:
            states[change.day :] = REGIMES.index(change.regime)
        return states

    def _earnings_calendar(self, n: int, t: int) -> np.ndarray:
        """Boolean [t, n]: symbol i reports between close d and open d+1 (an earnings sample)."""
        calendar = np.zeros((t, n), dtype=bool)
        phase = self.rng.integers(5, QUARTER_DAYS + 5, n)
        for i in range(n):
            days = np.arange(phase[i], t - 1, QUARTER_DAYS)
            days = days + self.rng.integers(-3, 4, days.size)
            calendar[days[(days >= 1) & (days < t - 1)], i] = True
        return calendar

    def _reports(self, calendar: np.ndarray, n: int) -> dict[str, np.ndarray]:
        """Fundamentals for every report, in calendar order (day-major, as np.nonzero gives)."""
        rng = self.rng
        day, sym = np.nonzero(calendar)
        k = day.size
        # quarter index per symbol, for growth paths
        quarter = np.zeros(k, dtype=int)
        counts = np.zeros(n, dtype=int)
        for j in range(k):
            quarter[j] = counts[sym[j]]
            counts[sym[j]] += 1
        base_revenue = np.exp(rng.normal(np.log(2e9), 1.0, n))
        growth = rng.normal(0.015, 0.025, n)  # per quarter
        gross = np.clip(rng.normal(0.45, 0.15, n), 0.1, 0.85)
        opex = np.clip(gross - rng.normal(0.15, 0.08, n), 0.02, None)
        shares = base_revenue / np.exp(rng.normal(np.log(25.0), 0.5, n))

        revenue_actual = base_revenue[sym] * np.exp(growth[sym] * quarter + rng.normal(0, 0.03, k))
        gross_margin = np.clip(gross[sym] + rng.normal(0, 0.02, k), 0.02, 0.95)
        operating_margin = gross_margin - opex[sym] + rng.normal(0, 0.015, k)
        eps_actual = revenue_actual * operating_margin * 0.79 / shares[sym]

        # Analysts lowball a little: the typical report beats by ~0.3 s.d., and the market
        # reacts to the part beyond that.
        eps_z = rng.normal(0.3, 1.0, k)
        revenue_z = 0.5 * eps_z + np.sqrt(0.75) * rng.normal(0.2, 1.0, k)
        eps_scale = 0.04 * np.abs(eps_actual) + 0.01
        eps_estimate = eps_actual - eps_z * eps_scale
        revenue_estimate = revenue_actual / (1.0 + 0.015 * revenue_z)
        surprise = (0.75 * (eps_z - 0.3) + 0.25 * (revenue_z - 0.25)) / 0.8
        return {
            "day": day,
            "symbol": sym,
            "eps_estimate": eps_estimate,
            "eps_actual": eps_actual,
            "revenue_estimate": revenue_estimate,
            "revenue_actual": revenue_actual,
            "gross_margin": gross_margin,
            "operating_margin": operating_margin,
            "surprise": surprise,
            "timing": np.where(rng.random(k) < 0.55, "amc", "bmo"),
        }

    # one loop over days, whose state (GARCH variances, signals) each step carries to the next:
    # split into functions it would pass a dozen arrays back and forth
    def _returns(self, regimes, beta, gamma, sector, idio_vol, calendar, reports):  # noqa: PLR0915
        """Simulate returns day by day; return them with the truth of each next-day return."""
        rng, n, t = self.rng, self.n, self.t
        signal = self.spec.signal
        k_sectors = self.spec.n_sectors

        surprise_today = np.zeros((t, n))
        surprise_today[reports["day"], reports["symbol"]] = reports["surprise"]
        jump_noise_scale = np.exp(rng.normal(np.log(0.05), 0.25, n))

        def garch_omega(vol, params):
            a, b = params
            return vol**2 * (1.0 - a - b)

        var_m = MARKET_VOL**2
        var_s = np.full(k_sectors, SECTOR_VOL**2)
        var_e = idio_vol**2
        omega_m = garch_omega(MARKET_VOL, GARCH_MARKET)
        omega_s = garch_omega(SECTOR_VOL, GARCH_SECTOR)
        omega_e = garch_omega(idio_vol, GARCH_IDIO)

        returns = np.zeros((t, n))
        truth_mean = np.zeros((t, n))
        truth_scale = np.zeros((t, n))
        reaction = np.zeros((t, n), dtype=bool)
        alpha_next = np.zeros(n)
        drift_state = np.zeros(n)  # post-earnings drift, decays
        pending_jump = np.zeros(n)  # the explained part of a reaction due tomorrow
        pending = np.zeros(n, dtype=bool)
        momentum_window = np.zeros((20, n))

        z_m = _student_t(rng, t, T_DOF_FACTOR)
        z_s = _student_t(rng, (t, k_sectors), T_DOF_FACTOR)
        # a day-level volatility shock on top of GARCH (unit mean square): fatter tails
        z_e = _student_t(rng, (t, n), T_DOF_IDIO) * np.exp(
            VOL_OF_VOL * rng.normal(size=(t, n)) - VOL_OF_VOL**2
        )
        z_j = _student_t(rng, (t, n), T_DOF_FACTOR)

        change = self.spec.change
        scale = np.ones(t + 1)
        if change is not None:
            scale[change.day :] = change.vol_scale
        for day in range(t):
            regime_vol = REGIME_VOL[regimes[day]] * scale[day]
            shock_m = np.sqrt(var_m) * regime_vol * z_m[day]
            shock_s = np.sqrt(var_s) * regime_vol * z_s[day]
            shock_e = np.sqrt(var_e) * z_e[day]
            market = REGIME_DRIFT[regimes[day]] + shock_m
            jump = np.where(pending, pending_jump + jump_noise_scale * z_j[day], 0.0)
            r = alpha_next + beta * market + gamma * shock_s[sector] + shock_e + jump
            r = np.clip(r, -0.6, 1.5)
            returns[day] = r
            reaction[day] = pending

            # GARCH updates give the variances of tomorrow, known today. Heavy-tailed shocks
            # are capped in the update, and variances kept within a band of their long-run
            # level, so that one extreme draw cannot start a run of absurd volatility.
            var_m = _garch_step(var_m, shock_m / regime_vol, omega_m, GARCH_MARKET, MARKET_VOL)
            var_s = _garch_step(var_s, shock_s / regime_vol, omega_s, GARCH_SECTOR, SECTOR_VOL)
            var_e = _garch_step(var_e, shock_e, omega_e, GARCH_IDIO, idio_vol)

            # The planted signal for tomorrow, from what is known at today's close.
            momentum_window[day % 20] = r
            vol_ratio = np.sqrt(var_e) / idio_vol
            reversal = -signal.reversal * r * vol_ratio**2
            momentum = signal.momentum * momentum_window.sum(axis=0) / np.sqrt(20.0)
            drift_state = drift_state * np.exp(-1.0 / 15.0)
            reported = calendar[day]
            drift_state = drift_state + signal.drift_after_surprise * surprise_today[day]
            alpha_next = reversal + momentum + drift_state
            pending = reported
            pending_jump = signal.surprise_jump * surprise_today[day]

            # Truth of r[day+1] given everything known at close `day` (the regime included).
            regime_probs = REGIME_TRANSITION[regimes[day]]
            if change is not None and day + 1 >= change.day:
                regime_probs = np.eye(len(REGIMES))[REGIMES.index(change.regime)]
            expected_drift = regime_probs @ REGIME_DRIFT
            expected_vol2 = regime_probs @ REGIME_VOL**2 * scale[day + 1] ** 2
            truth_mean[day] = (
                alpha_next + beta * expected_drift + np.where(pending, pending_jump, 0)
            )
            variance = (
                beta**2 * var_m * expected_vol2
                + gamma**2 * var_s[sector] * expected_vol2
                + var_e
                + np.where(pending, jump_noise_scale**2, 0.0)
            )
            truth_scale[day] = np.sqrt(variance)
        return returns, truth_mean, truth_scale, reaction

    def _bars(self, symbols, dates, returns, idio_vol, reaction) -> pd.DataFrame:
        rng = self.rng
        t, n = returns.shape
        start = np.exp(rng.normal(np.log(60.0), 0.8, n))
        close = start * np.cumprod(1.0 + returns, axis=0)
        previous = np.vstack([start / (1.0 + returns[0]), close[:-1]])
        # Most of an earnings reaction happens overnight; on ordinary days about a third.
        overnight_share = np.where(reaction, 0.85, 0.3)
        gap = returns * overnight_share + rng.normal(0, 0.002, (t, n))
        open_ = previous * (1.0 + gap)
        daily_scale = np.abs(returns).mean(axis=0) + 1e-4
        wick = np.abs(rng.normal(0, 0.35, (t, n))) * daily_scale
        wick_low = np.abs(rng.normal(0, 0.35, (t, n))) * daily_scale
        high = np.maximum(open_, close) * (1.0 + wick)
        low = np.minimum(open_, close) * (1.0 - wick_low)
        base_volume = np.exp(rng.normal(np.log(2e6), 1.0, n))
        volume = (
            base_volume
            * np.exp(rng.normal(0, 0.25, (t, n)))
            * (1.0 + 1.5 * np.abs(returns) / (idio_vol * 1.4))
            * np.where(reaction, 3.0, 1.0)
        )
        return pd.DataFrame(
            {
                "symbol": np.repeat(symbols, t),
                "ts": np.tile(dates.to_numpy(), n),
                "open": open_.T.reshape(-1),
                "high": high.T.reshape(-1),
                "low": low.T.reshape(-1),
                "close": close.T.reshape(-1),
                "volume": np.round(volume.T.reshape(-1)),
            }
        )

    def _earnings_frame(self, symbols, dates, reports) -> pd.DataFrame:
        day, sym = reports["day"], reports["symbol"]
        session = dates[day]
        timing = reports["timing"]
        # amc: after the close of the session date; bmo: before the open of the next one
        next_day = dates[np.minimum(day + 1, len(dates) - 1)]
        announced = np.where(
            timing == "amc",
            session + pd.Timedelta(hours=16, minutes=5),
            next_day + pd.Timedelta(hours=7, minutes=0),
        )
        frame = pd.DataFrame(
            {
                "symbol": np.array(symbols)[sym],
                "ts": pd.to_datetime(announced),
                "session_date": session,
                "timing": timing,
                "eps_estimate": reports["eps_estimate"],
                "eps_actual": reports["eps_actual"],
                "revenue_estimate": reports["revenue_estimate"],
                "revenue_actual": reports["revenue_actual"],
                "gross_margin": reports["gross_margin"],
                "operating_margin": reports["operating_margin"],
            }
        )
        return frame[EARNINGS_COLUMNS].sort_values(["symbol", "ts"]).reset_index(drop=True)
