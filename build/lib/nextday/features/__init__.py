"""Feature definitions: 20 technical and 17 earnings features, computed from data known at t."""

from nextday.features.earnings import EARNINGS_FEATURES
from nextday.features.technical import TECHNICAL_FEATURES

ALL_FEATURES = TECHNICAL_FEATURES + EARNINGS_FEATURES
FEATURE_GROUPS = {"technical": TECHNICAL_FEATURES, "earnings": EARNINGS_FEATURES}

__all__ = ["ALL_FEATURES", "EARNINGS_FEATURES", "FEATURE_GROUPS", "TECHNICAL_FEATURES"]
