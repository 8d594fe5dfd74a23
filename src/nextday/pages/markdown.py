"""Small Markdown helpers for the reports runs log (no extra dependency)."""

from __future__ import annotations

import pandas as pd

MIN_DIGITS, MAX_DIGITS = 4, 10


def _float(value: float, digits: int) -> str:
    return f"{value:.{digits}g}"


def digits_to_tell_apart(values) -> int:
    """The fewest significant digits (4 to 10) at which distinct numbers print distinctly, so
    that a table never shows two compared MAEs as the same 0.01195."""
    numbers = sorted({float(v) for v in values if isinstance(v, float) and v == v})
    for digits in range(MIN_DIGITS, MAX_DIGITS + 1):
        printed = {_float(v, digits) for v in numbers}
        if len(printed) == len(numbers):
            return digits
    return MAX_DIGITS


def decimals_to_tell_apart(values, least: int = 3) -> int:
    """The fewest decimals (from `least`, at most 10) at which distinct numbers print
    distinctly, for fixed-point figures such as percentages."""
    numbers = sorted({float(v) for v in values if v == v})
    for decimals in range(least, MAX_DIGITS + 1):
        if len({f"{v:.{decimals}f}" for v in numbers}) == len(numbers):
            return decimals
    return MAX_DIGITS


def _cell(value, digits: int = MIN_DIGITS) -> str:
    if isinstance(value, float):
        return _float(value, digits)
    if isinstance(value, pd.Timestamp):
        return str(value.date()) if value == value.normalize() else str(value)
    return str(value).replace("|", "\\|")


def table(frame: pd.DataFrame, index: bool = False) -> str:
    """`frame` as a GitHub Markdown table."""
    if index:
        frame = frame.reset_index()
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    # per column: enough digits that the rows compared in it can be told apart
    digits = [digits_to_tell_apart(frame.iloc[:, i].tolist()) for i in range(frame.shape[1])]
    rows = [
        "| " + " | ".join(_cell(v, d) for v, d in zip(row, digits, strict=True)) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])
