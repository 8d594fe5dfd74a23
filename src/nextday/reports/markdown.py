"""Small Markdown helpers for the reports runs log (no extra dependency)."""

from __future__ import annotations

import pandas as pd


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, pd.Timestamp):
        return str(value.date()) if value == value.normalize() else str(value)
    return str(value).replace("|", "\\|")


def table(frame: pd.DataFrame, index: bool = False) -> str:
    """`frame` as a GitHub Markdown table."""
    if index:
        frame = frame.reset_index()
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = [
        "| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])
