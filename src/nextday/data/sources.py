"""Pick the data source named by `data.source` and load it into a RawMarket."""

from __future__ import annotations

from omegaconf import DictConfig

from nextday.data.schema import RawMarket

SOURCES = ("synthetic", "yfinance", "csv")


def load_market(cfg: DictConfig) -> RawMarket:
    """Load raw bars and earnings from the source the `data` group describes."""
    source = str(cfg.source)
    if source == "synthetic":
        from nextday.data.synthetic import generate_market, spec_from_config

        return generate_market(spec_from_config(cfg))
    if source == "csv":
        from nextday.data.csv_files import load_csv

        if cfg.get("path") in (None, "", "???"):
            raise ValueError("data=csv needs data.path=<file or glob>")
        return load_csv(
            str(cfg.path),
            str(cfg.earnings_path) if cfg.get("earnings_path") else None,
            default_timing=str(cfg.get("default_timing", "amc")),
        )
    if source == "yfinance":
        from nextday.data.yahoo import Download, fetch_yfinance, read_symbols_file

        symbols = (
            read_symbols_file(str(cfg.symbols_file))
            if cfg.get("symbols_file")
            else list(cfg.symbols)
        )
        return fetch_yfinance(
            symbols,
            str(cfg.start_date),
            str(cfg.end_date) if cfg.get("end_date") else None,
            Download(
                batch_size=int(cfg.batch_size),
                max_retries=int(cfg.max_retries),
                backoff_seconds=float(cfg.backoff_seconds),
                earnings_limit=int(cfg.earnings_limit),
                default_timing=str(cfg.get("default_timing", "amc")),
            ),
        )
    raise ValueError(f"unknown data source {source!r}: expected one of {SOURCES}")
