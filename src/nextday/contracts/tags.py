"""Every MLflow tag nextday writes, on runs and on registered model versions.

A tag that ends in a dot is a prefix: the rest of the key names a step, a model or a check.
"""

from __future__ import annotations

# every run
STEP = "nextday.step"  # prepare, train, tune, tune.trial, calibrate, export, backtest, ...
MODEL = "nextday.model"  # normal or earnings, on model steps (and on registered versions)
INPUT = "nextday.input."  # + upstream step: the run id this run consumed
ARCH = "nextday.arch"

# prepare
DATA_SOURCE = "nextday.data.source"
DATA_FIRST_DATE = "nextday.data.first_date"
DATA_LAST_DATE = "nextday.data.last_date"
STORE = "nextday.store"

# train and tune
BEST_BASELINE = "nextday.best_baseline"
TRANSFER_FROM = "nextday.transfer_from"
STUDY = "nextday.study"
STUDY_STORAGE = "nextday.study.storage"
TRIAL = "nextday.trial"
TRIAL_STATE = "nextday.trial.state"
BEST_TRIAL = "nextday.best_trial"
BEST_TRIAL_RUN = "nextday.best_trial_run"

# export (on the run) and the registry (on the version)
REGISTERED_MODEL = "nextday.registered_model"
VERSION = "nextday.version"
GATE = "nextday.gate"
CHECK = "nextday.check."  # + check name: "pass: ..." or "fail: ..."
SHA256 = "nextday.sha256"  # JSON of file -> checksum, what every cached copy is checked against
FEATURES = "nextday.features"
TRAINED_AT = "nextday.trained_at"
GIT_COMMIT = "nextday.git_commit"
DATA = "nextday.data"
MC_PASSES = "nextday.mc_passes"
CALIBRATION = "nextday.calibration"
VERSION_RUN = "nextday.run."  # + step: the run that made this version (also on main's run)
VERSION_METRIC = "metric."  # + metric name, on a registered version
PROMOTED_AT = "nextday.promoted_at"
PROMOTION_REASON = "nextday.promotion_reason"

# backtest, monitor, live
BACKTEST_MODEL = "nextday.backtest.model"
BACKTEST_VERSION = "nextday.backtest.version"
BACKTEST_MODE = "nextday.backtest.mode"
MONITOR_MODEL = "nextday.monitor.model"
MONITOR_VERSION = "nextday.monitor.version"
MONITOR_ALERTS = "nextday.monitor.alerts"
LAST_FORECAST = "nextday.monitor.last_forecast"  # the daily run's newest as-of day
LIVE_MODEL = "nextday.live.model"
LIVE_VERSION = "nextday.live.version"
LIVE_FIRST_DATE = "nextday.live.first_date"
LIVE_LAST_DATE = "nextday.live.last_date"
LIVE_CHANGE = "nextday.live.change"

# forecast (the daily run)
AS_OF = "nextday.as_of"  # the close the forecast is made from
TARGET_DATE = "nextday.target_date"  # the session it forecasts
FORECAST_SESSION = "nextday.forecast.session"  # evening or pre_open
FORECAST_VERSION = "nextday.forecast.version."  # + model: the version that scored, or why none
RESTATED = "nextday.forecast.restated"  # the symbols whose stored bars the source restated

# main
REUSE_KEY = "nextday.reuse_key"
SKIPPED = "nextday.skipped"  # the models main skipped, or "none"
SKIPPED_REASON = "nextday.skipped."  # + model: why
REUSED = "nextday.reused"
# on each step run main made: the top-level config groups the step read (comma-separated),
# and a hash of their values; with REUSE_KEY, what decides whether main reuses the run
CONFIG_READ = "nextday.config_read"
CONFIG_HASH = "nextday.config_read.sha256"


def input_tag(step: str) -> str:
    """The tag that records which `step` run this run consumed."""
    return f"{INPUT}{step}"
