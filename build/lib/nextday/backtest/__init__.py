"""Walk-forward backtest: predictions made day by day with only what was known, judged as
forecasts and as a simple long-short strategy, broken down by regime and volatility."""
