"""What a report may say when it compares two forecasts: "beats" only when a test says so.

Every report (validation report, export report, model card, backtest page, `versions`) words
its comparison with `versus`, from the one-sided Diebold-Mariano p-value that the model's loss
is lower and the configured level (`evaluation.significance`). A lower MAE without a
significant test is "not significantly different", with the p-value, never "beats".
"""

from __future__ import annotations

import math

BEATS = "beats"
NOT_SIGNIFICANT = "not significant"
UNTESTED = "untested"


def outcome(p_better: float | None, level: float) -> str:
    """`beats`, `not significant` or `untested` (no p-value: too few dates to test)."""
    if p_better is None or not math.isfinite(p_better):
        return UNTESTED
    return BEATS if p_better < level else NOT_SIGNIFICANT


def versus(other: str, p_better: float | None, level: float, subject: str = "the model") -> str:
    """One sentence: how `subject` compares with `other`, as far as the test allows."""
    verdict = outcome(p_better, level)
    if verdict == BEATS:
        return f"{subject} beats {other} (one-sided Diebold-Mariano p = {p_better:.3g} < {level:g})"
    if verdict == NOT_SIGNIFICANT:
        return (
            f"{subject} does not beat {other}: the difference is not significant "
            f"(one-sided Diebold-Mariano p = {p_better:.3g}, level {level:g})"
        )
    return (
        f"{subject} cannot be compared with {other}: no Diebold-Mariano p-value (too few "
        "dates, or no difference in the losses to test)"
    )
