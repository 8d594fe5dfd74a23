"""Validation finds each kind of problem, applies its policy, and reports it."""

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from nextday.config import compose
from nextday.data.quality import DataQualityError, validate
from nextday.data.schema import RawMarket, empty_earnings


def _market():
    days = pd.bdate_range("2024-01-02", periods=120)
    frames = []
    for symbol in ("AAA", "BBB"):
        close = 100 * np.cumprod(1 + np.full(len(days), 0.001))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "ts": days,
                    "open": close,
                    "high": close * 1.01,
                    "low": close * 0.99,
                    "close": close,
                    "volume": 1e5,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _cfg(**policy):
    cfg = compose([]).quality
    for kind, action in policy.items():
        OmegaConf.update(cfg, f"policy.{kind}", action)
    return cfg


def _plant(bars):
    bars = bars.copy()
    bars.loc[3, "open"] = 0.0  # non-positive price (Yahoo's open = 0)
    bars.loc[5, ["low", "high"]] = [bars.loc[5, "high"], bars.loc[5, "low"]]  # low > high
    bars.loc[7, "close"] = np.nan  # missing
    bars.loc[40, "close"] = bars.loc[39, "close"] * 1.9  # extreme move
    bars.loc[40, "high"] = bars.loc[40, "close"]
    bars = pd.concat([bars, bars.iloc[[10]]], ignore_index=True)  # duplicate
    gap = (bars["symbol"] == "BBB") & bars["ts"].between("2024-03-01", "2024-03-20")
    return bars[~gap].reset_index(drop=True)


def test_every_kind_is_found_and_reported():
    market = RawMarket(_plant(_market()), empty_earnings(), "test")
    clean, report = validate(market, _cfg())
    counts = report.counts()
    for kind in ("duplicate", "non_positive_price", "ohlc_violation", "missing_value", "gap"):
        assert counts[kind] >= 1, kind
    assert counts["extreme_move"] >= 1
    # default policy drops the bad rows but keeps the gap and the extreme move
    assert len(clean.ohlcv) == report.rows_in - 4
    assert not clean.ohlcv.duplicated(["symbol", "ts"]).any()
    text = report.to_markdown()
    assert "non_positive_price" in text and "AAA" in text and "weekdays without a bar" in text


def test_fail_policy_names_the_rows():
    market = RawMarket(_plant(_market()), empty_earnings(), "test")
    with pytest.raises(DataQualityError, match=r"non_positive_price.*AAA 2024-01-05.*open=0"):
        validate(market, _cfg(non_positive_price="fail"))


def test_drop_symbol_policy_drops_the_whole_symbol():
    market = RawMarket(_plant(_market()), empty_earnings(), "test")
    clean, report = validate(market, _cfg(gap="drop_symbol"))
    assert set(clean.ohlcv["symbol"]) == {"AAA"}
    assert report.dropped_symbols == ["BBB"]


def test_unknown_policy_is_refused():
    market = RawMarket(_market(), empty_earnings(), "test")
    with pytest.raises(ValueError, match="quality.policy.gap='ignore'"):
        validate(market, _cfg(gap="ignore"))
