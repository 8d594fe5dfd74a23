"""The daily run's files: forecast.csv, orders.csv, skipped.csv, restated.csv and one page,
forecast.html (the top and bottom names with their intervals, the orders, what was skipped
and why, what the update brought)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nextday.pages import html

FORECAST_COLUMNS = [
    "as_of", "target_date", "symbol", "model", "model_name", "model_version", "prediction",
    "sigma", "p10", "p50", "p90", "out_of_range", "earnings_pending", "session",
]  # fmt: skip
TOP = 10  # names shown at each end of the forecast


def write(day, versions: dict[str, str], folder: Path) -> Path:
    """The files of one as-of day (`nextday.daily.run.Day`) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    forecast = day.forecast.reindex(columns=FORECAST_COLUMNS).sort_values(
        "prediction", ascending=False
    )
    forecast.to_csv(folder / "forecast.csv", index=False)
    orders = day.book.orders if day.book is not None else pd.DataFrame()
    orders.to_csv(folder / "orders.csv", index=False)
    skipped = pd.DataFrame(sorted(day.skipped.items()), columns=["symbol", "why"])
    skipped.to_csv(folder / "skipped.csv", index=False)
    day.update.restated.to_csv(folder / "restated.csv", index=False)
    (folder / "forecast.html").write_text(_page(day, versions, forecast, orders, skipped))
    return folder


def _page(day, versions, forecast: pd.DataFrame, orders: pd.DataFrame, skipped) -> str:
    shown = ["symbol", "model", "prediction", "p10", "p50", "p90", "out_of_range"]
    sections: dict[str, list] = {
        "Summary": [
            f"As of the close of {day.as_of.date()} ({day.session} run), for the session of "
            f"{day.target.date()}: {len(forecast)} symbols forecast, {len(day.skipped)} "
            "skipped.",
            "Versions: " + "; ".join(f"{m}: {v}" for m, v in versions.items()) + ".",
            *day.scored.notes,
        ],
        f"Top {TOP}": [forecast.head(TOP)[shown]],
        f"Bottom {TOP}": [forecast.tail(TOP).iloc[::-1][shown]],
    }
    pending = forecast[forecast["earnings_pending"].astype(bool)]
    if len(pending):
        sections["Reports before the open"] = [
            f"{len(pending)} symbol(s) report before the next open: the normal model's "
            "forecast stands until the pre-open run (forecast.session=pre_open) rescores them "
            "with the earnings model.",
            pending[shown],
        ]
    if len(orders):
        turnover = day.book.turnover if day.book is not None else 0.0
        sections["Orders"] = [
            f"{len(orders)} orders, turnover {turnover:.3f} of capital, estimated cost "
            f"${orders['estimated_cost'].sum():,.0f} (the backtest's cost model).",
            orders,
        ]
    sections["Skipped"] = [skipped] if len(skipped) else ["No symbol was skipped."]
    sections["Update"] = [_update_text(day.update)]
    if len(day.update.restated):
        sections["Update"].append(day.update.restated.head(50))
    return html.render(f"nextday forecast for {day.target.date()}", sections)


def _update_text(update) -> str:
    text = (
        f"{len(update.bars)} new bar(s) stored; {update.unsettled} bar(s) of sessions not "
        f"closed at the run left out; {update.off_calendar} bar(s) on days without a session "
        f"left out; {len(update.new_problems())} quality problem(s) on the new bars."
    )
    if len(update.restated):
        symbols = update.restated_symbols
        text += (
            f" <span class='warn'>{len(update.restated)} value(s) of stored bars of "
            f"{len(symbols)} symbol(s) ({', '.join(symbols[:10])}) differ in the source now: "
            "the stored history was kept; re-run prepare to take the restated history "
            "whole.</span>"
        )
    return text
