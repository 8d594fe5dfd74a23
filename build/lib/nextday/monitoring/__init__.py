"""Live monitoring: prediction logging, actuals, rolling accuracy, drift and alerts."""
