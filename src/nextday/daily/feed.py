"""What the configured source has from a date on: the bars and reports the daily run checks
against the store. Each source is read with prepare's own loader, so new bars arrive in the
shape, with the timing rules and the notes that prepare's bars had.

- csv: the file (or glob) as it stands today: a file that grows gives its new rows;
- yfinance: a download from a few sessions before the newest stored bar;
- synthetic: the built-in market continued past the bars prepare stored over `live.days`
  sessions (one draw from one seed, with `live.change` planted), the same stretch whatever
  day it is asked for, so a day continued today equals the same day continued later.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa
from omegaconf import DictConfig

from nextday.data.continued import CONTINUED_SOURCE
from nextday.data.schema import EARNINGS_COLUMNS, OHLCV_COLUMNS, RawMarket
from nextday.data.store import Store

SYNTHETIC = "synthetic"
# the prepared market's own bars carry source "synthetic"; the continued days this one
SYNTHETIC_LIVE = CONTINUED_SOURCE


class FeedError(ValueError):
    """The source cannot give what the daily run needs; the message says what to do."""


def stored_sources(source: str) -> tuple[str, ...]:
    """The `source` values of the store's bars that belong to the configured source."""
    return (SYNTHETIC, SYNTHETIC_LIVE) if source == SYNTHETIC else (source,)


def fetch(
    data: DictConfig,
    store: Store,
    since: pd.Timestamp,
    target: pd.Timestamp,
    continued=None,
    client: Any = None,
) -> RawMarket:
    """Bars from `since` on (and reports, a bmo report of `target` kept: see
    `assign_session_dates`) from the source `data` describes. `continued`: how the built-in
    market is continued (`LiveSettings`: its sessions and planted change); `client`: the yfinance module,
    or a stand-in that replays recorded responses (None: yfinance itself)."""
    source = str(data.source)
    if source == SYNTHETIC:
        market = _continued(data, store, continued)
    elif source == "csv":
        from nextday.data.csv_files import load_csv

        market = load_csv(
            str(data.path),
            str(data.earnings_path) if data.get("earnings_path") else None,
            default_timing=str(data.get("default_timing", "amc")),
            bmo_through=target,
        )
    elif source == "yfinance":
        market = _downloaded(data, since, target, client)
    else:
        raise FeedError(f"data.source={source!r}: the daily run reads synthetic, csv or yfinance")
    bars = market.ohlcv[pd.to_datetime(market.ohlcv["ts"]) >= since]
    return RawMarket(
        ohlcv=bars.reset_index(drop=True),
        earnings=market.earnings,
        source=market.source,
        symbols=market.symbols,
        notes=market.notes,
    )


def _downloaded(
    data: DictConfig, since: pd.Timestamp, target: pd.Timestamp, client: Any = None
) -> RawMarket:
    from nextday.data.yahoo import Download, fetch_yfinance, read_symbols_file

    symbols = (
        read_symbols_file(str(data.symbols_file))
        if data.get("symbols_file")
        else list(data.symbols)
    )
    settings = Download(
        batch_size=int(data.batch_size),
        max_retries=int(data.max_retries),
        backoff_seconds=float(data.backoff_seconds),
        earnings_limit=int(data.earnings_limit),
        default_timing=str(data.get("default_timing", "amc")),
    )
    # `end` is exclusive: through the target day, so that a bar of a session still trading
    # arrives (and is refused as not closed) rather than silently missing
    end = (target + pd.Timedelta(days=1)).date().isoformat()
    return fetch_yfinance(
        symbols, since.date().isoformat(), end, settings, client=client, bmo_through=target
    )


def _continued(data: DictConfig, store: Store, continued) -> RawMarket:
    """The prepared built-in market continued over `continued.days` weekdays."""
    from nextday.data.continued import HISTORY_DAYS, continue_market
    from nextday.data.synthetic import spec_from_config

    with store.engine.connect() as connection:
        dates = [
            row[0]
            for row in connection.execute(
                sa.text(
                    "SELECT DISTINCT ts FROM ohlcv WHERE source = :source ORDER BY ts DESC "
                    "LIMIT :days"
                ),
                {"source": SYNTHETIC, "days": HISTORY_DAYS},
            )
        ]
    if not dates:
        raise FeedError(
            "the store holds no bars of the built-in market: run `python -m nextday prepare` "
            "first (with the same store)"
        )
    params = {"source": SYNTHETIC, "first": pd.Timestamp(min(dates)).date()}
    history = RawMarket(
        ohlcv=store.read("ohlcv", "source = :source and ts >= :first", params)[OHLCV_COLUMNS],
        earnings=store.read("earnings", "source = :source", {"source": SYNTHETIC})[
            EARNINGS_COLUMNS
        ],
        source=SYNTHETIC,
    )
    market = continue_market(spec_from_config(data), history, continued.days, continued.change)
    return RawMarket(
        ohlcv=market.ohlcv,
        earnings=market.earnings,
        source=SYNTHETIC_LIVE,
        symbols=market.symbols,
        notes=[],
    )
