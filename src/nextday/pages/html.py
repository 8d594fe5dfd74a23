"""One self-contained HTML page (images embedded), read top to bottom: backtest, monitor.

The page opens with its contents (a link to each section) and reads on a phone: the layout
follows the screen's width, a wide table scrolls inside its own box and images shrink to fit.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from nextday.pages.markdown import digits_to_tell_apart

STYLE = (
    "body{font-family:sans-serif;max-width:980px;margin:1.5em auto;padding:0 12px;color:#222;"
    "line-height:1.4;-webkit-text-size-adjust:100%;text-size-adjust:100%}"
    "h1,h2,p,nav{overflow-wrap:anywhere}"
    "nav.contents{border:1px solid #ddd;padding:0.3em 1em;margin:1em 0}"
    "nav.contents ol{margin:0.3em 0;padding-left:1.5em;columns:14em}"
    ".table{overflow-x:auto;max-width:100%;margin:0.5em 0}"
    "table{border-collapse:collapse}td,th{padding:3px 9px;border-bottom:1px solid #ddd;"
    "text-align:right;white-space:nowrap}"
    "img{max-width:100%;height:auto}"
    ".warn{color:#b00;font-weight:bold}"
)


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
    table = frame.to_html(index=False, formatters=formatters, border=0)
    return f'<div class="table">{table}</div>'  # a wide table scrolls here, not the page


def _section_ids(headings: list[str]) -> list[str]:
    """An id per heading for the contents' links: lower case, words joined by '-', a number
    appended where two headings would otherwise share one."""
    ids: list[str] = []
    for heading in headings:
        base = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-") or "section"
        anchor, n = base, 2
        while anchor in ids:
            anchor, n = f"{base}-{n}", n + 1
        ids.append(anchor)
    return ids


def _section(anchor: str, heading: str, items: list) -> str:
    body = [f'<section id="{anchor}">', f"<h2>{html.escape(heading)}</h2>"]
    for item in items:
        if isinstance(item, pd.DataFrame):
            body.append(_table(item))
        elif isinstance(item, Path):
            body.append(_image(item))
        else:
            body.append(f"<p>{item}</p>")
    body.append("</section>")
    return "\n".join(body)


def render(title: str, sections: dict[str, list]) -> str:
    """`sections`: heading -> items (str: a paragraph, DataFrame: a table, Path: an image).
    Each heading becomes a section with an id, linked from the contents at the top."""
    headings = list(sections)
    ids = _section_ids(headings)
    links = "".join(
        f'<li><a href="#{anchor}">{html.escape(heading)}</a></li>'
        for anchor, heading in zip(ids, headings, strict=True)
    )
    contents = f'<nav class="contents" aria-label="Contents"><b>Contents</b><ol>{links}</ol></nav>'
    body = [_section(a, h, sections[h]) for a, h in zip(ids, headings, strict=True)]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>\n{contents}\n" + "\n".join(body) + "</body></html>\n"
    )
