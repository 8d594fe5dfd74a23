"""Validation finds each kind of problem in real-shaped bars, applies its policy, and counts
every row it drops."""

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from nextday.config import compose
from nextday.data.quality import ROW_KINDS, SYMBOL_KINDS, DataQualityError, validate
from nextday.data.schema import RawMarket, empty_earnings
from real_data import real_shaped_bars

# the symbol each defect is planted in, and the date (a row defect) it is planted on
PLANTED = {
    "duplicate": ("AAPL", "2016-03-01"),
    "missing_value": ("AAPL", "2016-04-01"),
    "non_positive_price": ("AAPL", "2016-05-02"),  # open = 0, as Yahoo has it
    "ohlc_violation": ("AAPL", "2016-06-01"),  # low > high
    "stale_price": ("BAC", "2016-07-01"),  # the same close for 7 bars from here
    "bad_tick": ("BAC", "2016-09-01"),  # one close 80% too high, the next bar normal
    "split_like": ("BBY", "2016-11-01"),  # an unadjusted 2:1 split
    "extreme_move": ("BBY", "2017-03-01"),  # +70% that stays (not a split ratio)
    "gap": ("PFE", "2016-08-01"),  # 12 weekdays without a bar from here
}


def _cfg(**policy):
    cfg = compose([]).quality
    for kind, action in policy.items():
        OmegaConf.update(cfg, f"policy.{kind}", action)
    return cfg


def _row(bars, symbol, day):
    return bars.index[(bars["symbol"] == symbol) & (bars["ts"] == pd.Timestamp(day))][0]


def _after(bars, symbol, day):
    return (bars["symbol"] == symbol) & (bars["ts"] >= pd.Timestamp(day))


def _planted() -> pd.DataFrame:
    """Real-shaped bars of 8 large caps with every defect planted once (and symbols that
    start late, stop early, are close-only or have one volume)."""
    bars = real_shaped_bars(symbols=20)
    keep = ["AAPL", "BAC", "BBY", "PFE", "KO", "MSFT", "PG", "WMT"]
    bars = bars[bars["symbol"].isin(keep)].reset_index(drop=True)
    prices = ["open", "high", "low", "close"]

    bars.loc[_row(bars, *PLANTED["missing_value"]), "close"] = np.nan
    bars.loc[_row(bars, *PLANTED["non_positive_price"]), "open"] = 0.0
    row = _row(bars, *PLANTED["ohlc_violation"])
    bars.loc[row, ["low", "high"]] = bars.loc[row, ["high", "low"]].to_numpy()
    first = _row(bars, *PLANTED["stale_price"])
    bars.loc[first : first + 6, prices] = bars.loc[first, "close"]
    row = _row(bars, *PLANTED["bad_tick"])
    bars.loc[row, ["close", "high"]] = bars.loc[row, "close"] * 1.8
    split = _after(bars, *PLANTED["split_like"])
    bars.loc[split, prices] = bars.loc[split, prices] / 2.0
    jump = _after(bars, *PLANTED["extreme_move"])
    bars.loc[jump, prices] = bars.loc[jump, prices] * 1.7
    symbol, day = PLANTED["gap"]
    hole = (bars["symbol"] == symbol) & bars["ts"].between(
        pd.Timestamp(day), pd.Timestamp(day) + pd.offsets.BDay(11)
    )
    bars = bars[~hole]
    late_or_early = ((bars["symbol"] == "KO") & (bars["ts"] < "2016-05-02")) | (
        (bars["symbol"] == "MSFT") & (bars["ts"] > "2017-03-31")
    )
    bars = bars[~late_or_early].copy()
    pg = bars["symbol"] == "PG"
    bars.loc[pg, ["open", "high", "low"]] = np.repeat(bars.loc[pg, ["close"]].to_numpy(), 3, axis=1)
    bars.loc[bars["symbol"] == "WMT", "volume"] = 1_000_000.0
    duplicate = bars[
        (bars["symbol"] == PLANTED["duplicate"][0]) & (bars["ts"] == PLANTED["duplicate"][1])
    ]
    return pd.concat([bars, duplicate], ignore_index=True)


def _validate(bars, **policy):
    return validate(RawMarket(bars, empty_earnings(), "test"), _cfg(**policy))


def test_clean_real_bars_raise_no_defect():
    bars = real_shaped_bars(symbols=20)
    _, report = _validate(bars)
    counts = report.counts()
    # real news moves are the only thing real large caps show (AMD +52% on 2016-04-22)
    assert {k: v for k, v in counts.items() if v and k != "extreme_move"} == {}
    moves = report.problems[report.problems["kind"] == "extreme_move"]
    assert set(moves["symbol"]) == {"AMD"}
    assert report.rows_out == report.rows_in


def test_every_kind_is_found_where_it_was_planted():
    _, report = _validate(_planted())
    problems = report.problems
    for kind, (symbol, day) in PLANTED.items():
        found = problems[problems["kind"] == kind]
        assert len(found) >= 1, kind
        assert set(found["symbol"]) == {symbol}, kind
        assert found["ts"].min() >= pd.Timestamp(day), kind
    assert report.counts()["stale_price"] == 6  # the repeats after the run's first bar
    assert len(problems[problems["kind"] == "bad_tick"]) == 1
    by_kind = problems.groupby("kind")["symbol"].apply(set)
    assert by_kind["partial_history"] == {"KO", "MSFT"}
    assert by_kind["close_only"] == {"PG"}
    assert by_kind["constant_volume"] == {"WMT"}
    text = report.to_markdown()
    for kind in [*PLANTED, *SYMBOL_KINDS]:
        assert f"| {kind} |" in text
    assert "starts 2016-05-02" in text and "never filled" in text


def test_every_dropped_row_is_counted():
    clean, report = _validate(_planted())
    assert report.rows_in == report.rows_out + sum(report.dropped_rows.values())
    assert report.rows_out == len(clean.ohlcv)
    # default: the four bad bars, the stale repeats and the bad tick dropped; BBY (split) gone
    assert report.dropped_symbols == ["BBY"]
    dropped = report.dropped_rows
    assert dropped["drop_row: stale_price"] == 6 and dropped["drop_row: bad_tick"] == 1
    assert (
        dropped["drop_symbol: every bar of the symbol"]
        == report.by_symbol.set_index("symbol").loc["BBY", "rows_in"]
    )
    assert not clean.ohlcv.duplicated(["symbol", "ts"]).any()
    assert (clean.ohlcv[["open", "high", "low", "close"]] > 0).all().all()


ROW_CASES = [(kind, action) for kind in PLANTED for action in ("report", "drop_row")]


@pytest.mark.parametrize(("kind", "action"), ROW_CASES)
def test_row_policy(kind, action):
    bars = _planted()
    others = {k: "report" for k in ROW_KINDS if k != "duplicate"}
    clean, report = _validate(bars, **(others | {kind: action}))
    flagged = report.problems[report.problems["kind"] == kind]
    kept = clean.ohlcv.merge(flagged[["symbol", "ts"]], on=["symbol", "ts"])
    if action == "report":
        assert len(kept) >= len(flagged.drop_duplicates(["symbol", "ts"]))
    else:  # of a duplicate, the first bar stays
        assert len(kept) == (len(flagged) if kind == "duplicate" else 0)
        assert not clean.ohlcv.duplicated(["symbol", "ts"]).any()
        assert report.dropped_rows[f"drop_row: {kind}"] == len(flagged)


@pytest.mark.parametrize("kind", [*PLANTED, *SYMBOL_KINDS])
def test_drop_symbol_policy(kind):
    bars = _planted()
    clean, report = _validate(bars, **({k: "report" for k in ROW_KINDS} | {kind: "drop_symbol"}))
    flagged = set(report.problems.loc[report.problems["kind"] == kind, "symbol"])
    assert flagged and flagged <= set(report.dropped_symbols)
    assert not flagged & set(clean.ohlcv["symbol"])
    assert "AAPL" in set(clean.ohlcv["symbol"]) or "AAPL" in flagged


@pytest.mark.parametrize("kind", [*PLANTED, *SYMBOL_KINDS])
def test_fail_policy_names_the_rows(kind):
    symbol, _ = PLANTED.get(
        kind, ({"partial_history": "KO", "close_only": "PG"}.get(kind, "WMT"), None)
    )
    with pytest.raises(DataQualityError, match=rf"{kind} problem.*{symbol} 20"):
        _validate(_planted(), **{kind: "fail"})


def test_symbol_problems_refuse_drop_row():
    with pytest.raises(ValueError, match="close_only=drop_row: close_only is a problem of a whole"):
        _validate(real_shaped_bars(), close_only="drop_row")


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="quality.policy.gap='ignore'"):
        _validate(real_shaped_bars(), gap="ignore")


def test_a_jump_over_an_earnings_report_is_news_not_a_split():
    bars = real_shaped_bars(symbols=4)
    prices = ["open", "high", "low", "close"]
    crash = _after(bars, "BAC", "2016-10-03")
    bars.loc[crash, prices] = bars.loc[crash, prices] * (2 / 3)  # -33%: a 3:2 split's ratio
    earnings = empty_earnings()
    _, without = validate(RawMarket(bars, earnings, "test"), _cfg())
    bac = without.problems[without.problems["symbol"] == "BAC"]
    assert list(bac["kind"]) == ["split_like"]
    report = {c: None for c in earnings.columns} | {
        "symbol": "BAC",
        "ts": pd.Timestamp("2016-09-30 16:05"),
        "session_date": pd.Timestamp("2016-09-30"),
        "timing": "amc",
    }
    earnings = pd.DataFrame([report], columns=earnings.columns)
    clean, with_report = validate(RawMarket(bars, earnings, "test"), _cfg())
    bac = with_report.problems[with_report.problems["symbol"] == "BAC"]
    assert list(bac["kind"]) == ["extreme_move"]
    assert "BAC" in set(clean.ohlcv["symbol"])
