"""One self-contained HTML page (images embedded), read top to bottom: backtest, monitor."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from nextday.reports.markdown import digits_to_tell_apart


def _image(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).stem)}">'


def _table(frame: pd.DataFrame) -> str:
    # per column: enough significant digits that compared rows can be told apart
    formatters = {}
    for column in frame.columns:
        if pd.api.types.is_float_dtype(frame[column]):
            digits = digits_to_tell_apart(frame[column].tolist())
            formatters[column] = lambda v, d=digits: f"{v:.{d}g}"
    return frame.to_html(index=False, formatters=formatters, border=0)


def render(title: str, sections: dict[str, list]) -> str:
    """`sections`: heading -> items (str: a paragraph, DataFrame: a table, Path: an image)."""
    body = []
    for heading, items in sections.items():
        body.append(f"<h2>{html.escape(heading)}</h2>")
        for item in items:
            if isinstance(item, pd.DataFrame):
                body.append(_table(item))
            elif isinstance(item, Path):
                body.append(_image(item))
            else:
                body.append(f"<p>{item}</p>")
    style = (
        "body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{padding:3px 9px;"
        "border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}"
        ".warn{color:#b00;font-weight:bold}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
        + "\n".join(body)
        + "</body></html>\n"
    )
