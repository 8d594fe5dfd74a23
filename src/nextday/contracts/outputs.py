"""What every served answer holds: its columns, quantiles and intervals, which the serving
code writes and calibration, the backtest, the monitor and the config read."""

OUTPUTS = ("prediction", "sigma", "p10", "p50", "p90")
# the quantile each served quantile column holds
QUANTILE_LEVELS = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
# the central intervals a served answer holds (p10 to p90): the only levels a step may judge
INTERVALS = {0.8: ("p10", "p90")}
SERVED_LEVELS = tuple(INTERVALS)
# ModelInference's extra column: a row with a value far outside the training range
OUT_OF_RANGE = "out_of_range"
