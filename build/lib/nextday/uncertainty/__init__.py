"""Uncertainty: MC dropout, a model of the return's own scale, and conformal calibration."""
