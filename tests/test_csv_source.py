"""The CSV source: good files parse exactly, bad ones fail with a message that says where."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextday.data.csv_files import load_csv
from nextday.data.schema import EARNINGS_COLUMNS, OHLCV_COLUMNS, DataSourceError

HEADER = "symbol,date,open,high,low,close,volume\n"
# 2024-01-05 is a Friday, so the next trading date is Monday 2024-01-08
GOOD = HEADER + (
    "BBB,2024-01-03,20,21,19,20.5,2000\n"
    "AAA,2024-01-04,10.5,11.5,10,11,1500\n"
    "AAA,2024-01-03,10,11,9.5,10.5,1000\n"
    "BBB,2024-01-04,20.5,22,20,21.5,2500\n"
    "AAA,2024-01-05,11,12,10.5,11.5,0\n"
    "AAA,2024-01-08,11.5,12,11,,1200\n"
    "BBB,2024-01-05,21.5,22,21,21,3000\n"
    "BBB,2024-01-08,21,21.5,20,20.5,3100\n"
)


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_good_file_parses_values_dtypes_and_order(tmp_path):
    market = load_csv(write(tmp_path, "prices.csv", GOOD))
    ohlcv = market.ohlcv
    assert market.source == "csv"
    assert list(ohlcv.columns) == OHLCV_COLUMNS
    assert ohlcv["ts"].dtype == "datetime64[ns]"
    assert pd.api.types.is_string_dtype(ohlcv["symbol"])
    for column in ["open", "high", "low", "close", "volume"]:
        assert ohlcv[column].dtype == "float64", column
    assert list(ohlcv["symbol"]) == ["AAA"] * 4 + ["BBB"] * 4
    assert ohlcv.groupby("symbol")["ts"].apply(lambda ts: ts.is_monotonic_increasing).all()
    first = ohlcv.iloc[0]
    assert first["ts"] == pd.Timestamp("2024-01-03")
    assert (first["open"], first["high"], first["low"], first["close"]) == (10, 11, 9.5, 10.5)
    assert first["volume"] == 1000
    # zero volume is kept, an empty price cell is NaN: the quality step decides about both
    assert ohlcv.iloc[2]["volume"] == 0
    assert np.isnan(ohlcv.iloc[3]["close"])


def test_glob_of_two_files_is_concatenated(tmp_path):
    lines = GOOD.splitlines(keepends=True)
    write(tmp_path, "part1.csv", "".join(lines[:4]))
    write(tmp_path, "part2.csv", lines[0] + "".join(lines[4:]))
    write(tmp_path, "other.txt", "not,a,price,file\n")
    market = load_csv(str(tmp_path / "part*.csv"))
    single = load_csv(write(tmp_path, "all.csv", GOOD))
    pd.testing.assert_frame_equal(market.ohlcv, single.ohlcv)


def test_glob_that_matches_nothing_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing*.csv")
    with pytest.raises(DataSourceError, match="nothing\\*.csv"):
        load_csv(pattern)


def test_headers_are_case_insensitive_and_extra_columns_ignored(tmp_path):
    text = (
        " Volume ,SYMBOL,Date,Notes,Open,HIGH,low,Close,adj_close\n"
        "1000,AAA,2024-01-03,fine,10,11,9.5,10.5,10.4\n"
        "1500,AAA,2024-01-04,also fine,10.5,11.5,10,11,10.9\n"
    )
    ohlcv = load_csv(write(tmp_path, "prices.csv", text)).ohlcv
    assert list(ohlcv.columns) == OHLCV_COLUMNS
    assert list(ohlcv["close"]) == [10.5, 11.0]
    assert list(ohlcv["volume"]) == [1000.0, 1500.0]


def test_a_sector_column_gives_each_symbol_its_group(tmp_path):
    text = (
        "symbol,date,close,sector\n"
        "AAA,2024-01-03,10,Tech\n"
        "AAA,2024-01-04,11, Tech \n"
        "BBB,2024-01-03,20,\n"
        "BBB,2024-01-04,21,Energy\n"
        "CCC,2024-01-03,30,Energy\n"
        "CCC,2024-01-04,31,Utilities\n"
    )
    market = load_csv(write(tmp_path, "prices.csv", text))
    groups = market.symbols.set_index("symbol")["sector"]
    # blanks are skipped, and a reclassified symbol takes its latest group, with a note
    assert groups.to_dict() == {"AAA": "Tech", "BBB": "Energy", "CCC": "Utilities"}
    assert any("1 symbol(s) change sector" in note and "'CCC'" in note for note in market.notes)
    assert list(market.ohlcv.columns) == OHLCV_COLUMNS  # the group is not a bar's column
    assert load_csv(write(tmp_path, "plain.csv", GOOD)).symbols is None


def test_missing_earnings_file_gives_empty_earnings_and_a_note(tmp_path):
    market = load_csv(write(tmp_path, "prices.csv", GOOD))
    assert market.earnings.empty
    assert list(market.earnings.columns) == EARNINGS_COLUMNS
    assert any("no earnings" in note for note in market.notes)


def test_earnings_with_timing_column(tmp_path):
    prices = write(tmp_path, "prices.csv", GOOD)
    earnings = write(
        tmp_path,
        "earnings.csv",
        "Symbol,Date,Timing,EPS_Actual,eps_estimate,revenue_actual\n"
        "AAA,2024-01-05,bmo,1.2,1.1,5e9\n"
        "BBB,2024-01-04,AMC,0.5,,\n"
        "BBB,2024-01-05,,0.7,0.6,\n",
    )
    frame = load_csv(prices, earnings).earnings
    assert list(frame.columns) == EARNINGS_COLUMNS
    assert frame["ts"].dtype == "datetime64[ns]"
    assert frame["session_date"].dtype == "datetime64[ns]"
    rows = list(frame[["symbol", "timing", "session_date"]].itertuples(index=False, name=None))
    assert rows == [
        ("AAA", "bmo", pd.Timestamp("2024-01-04")),  # before the open: the previous date
        ("BBB", "amc", pd.Timestamp("2024-01-04")),  # after the close: the same date
        ("BBB", "amc", pd.Timestamp("2024-01-05")),  # blank timing: the default
    ]
    assert frame.loc[0, "eps_actual"] == 1.2 and frame.loc[0, "revenue_actual"] == 5e9
    assert np.isnan(frame.loc[1, "eps_estimate"]) and np.isnan(frame.loc[0, "gross_margin"])


def test_earnings_without_timing_column_infers_it(tmp_path):
    prices = write(tmp_path, "prices.csv", GOOD)
    earnings = write(
        tmp_path,
        "earnings.csv",
        "symbol,date,eps_actual\n"
        "AAA,2024-01-08 07:00,1.0\n"  # before the open
        "AAA,2024-01-04 16:30,0.9\n"  # after the close
        "BBB,2024-01-05 12:00,0.4\n"  # during the session
        "BBB,2024-01-08,0.8\n",  # date only: the default
    )
    frame = load_csv(prices, earnings, default_timing="bmo").earnings
    rows = list(frame[["symbol", "ts", "timing", "session_date"]].itertuples(index=False))
    assert [tuple(row) for row in rows] == [
        ("AAA", pd.Timestamp("2024-01-04 16:30"), "amc", pd.Timestamp("2024-01-04")),
        ("AAA", pd.Timestamp("2024-01-08 07:00"), "bmo", pd.Timestamp("2024-01-05")),
        ("BBB", pd.Timestamp("2024-01-05 12:00"), "intraday", pd.Timestamp("2024-01-05")),
        ("BBB", pd.Timestamp("2024-01-08"), "bmo", pd.Timestamp("2024-01-05")),
    ]
    assert frame["revenue_estimate"].isna().all()


def test_earnings_times_with_utc_offsets_become_new_york_time(tmp_path):
    prices = write(tmp_path, "prices.csv", GOOD)
    earnings = write(
        tmp_path,
        "earnings.csv",
        "symbol,date\n"
        "AAA,2024-01-04T21:05:00Z\n"  # 16:05 in New York
        "BBB,2024-01-05T06:30:00-05:00\n"
        "BBB,2024-01-08 07:00\n",  # no offset: already New York time
    )
    frame = load_csv(prices, earnings).earnings
    assert list(frame["ts"]) == [
        pd.Timestamp("2024-01-04 16:05"),
        pd.Timestamp("2024-01-05 06:30"),
        pd.Timestamp("2024-01-08 07:00"),
    ]
    assert list(frame["timing"]) == ["amc", "bmo", "bmo"]


def test_reports_outside_the_bars_are_dropped_with_a_note(tmp_path):
    prices = write(tmp_path, "prices.csv", GOOD)
    earnings = write(
        tmp_path,
        "earnings.csv",
        "symbol,date,timing\n"
        "AAA,2023-12-01,amc\n"  # before the first bar
        "AAA,2024-01-04,amc\n"
        "AAA,2024-03-01,amc\n"  # after the last bar: would otherwise land on 2024-01-08
        "CCC,2024-01-04,amc\n",  # no bars at all
    )
    market = load_csv(prices, earnings)
    assert list(market.earnings["ts"]) == [pd.Timestamp("2024-01-04")]
    assert any("3 of 4 earnings report(s) dropped" in note for note in market.notes)


def test_large_file_loads_quickly(tmp_path):
    """A 200k-row file loads in well under a second per 200k rows (1.26 M in a few seconds)."""
    import time

    dates = pd.bdate_range("2010-01-01", periods=2000).strftime("%Y-%m-%d")
    symbols = np.repeat([f"S{i:03d}" for i in range(100)], len(dates))
    values = np.round(np.random.default_rng(0).uniform(1, 100, len(symbols)), 2)
    frame = pd.DataFrame(
        {"symbol": symbols, "date": np.tile(dates, 100), "open": values, "high": values}
    ).assign(low=values, close=values, volume=values * 100)
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    started = time.perf_counter()
    ohlcv = load_csv(str(path)).ohlcv
    assert time.perf_counter() - started < 3.0
    assert len(ohlcv) == 200_000


BAD_PRICES = [
    pytest.param(
        "symbol,date,open,high,low,volume\nAAA,2024-01-03,1,2,0.5,10\n",
        ["line 1", "'close'", "missing", "found"],
        id="missing-column",
    ),
    pytest.param(
        HEADER + "AAA,2024-01-03,1,2,0.5,1.5,10\nAAA,2024-13-45,1,2,0.5,1.5,10\n",
        ["line 3", "'date'", "'2024-13-45'", "not a date"],
        id="unparsable-date",
    ),
    pytest.param(
        HEADER + "AAA,2024-01-03,1,2,0.5,1.5,10\nAAA,today,1,2,0.5,1.5,10\n",
        ["line 3", "'date'", "'today'", "not a date"],
        id="date-word",
    ),
    pytest.param(
        HEADER + "AAA,2024-01-03,1,2,0.5,1.5,10\n\nAAA,2024-01-04,1,2,0.5,abc,10\n",
        ["line 4", "'close'", "'abc'", "not a number"],  # the blank line 3 still counts
        id="non-numeric-price",
    ),
    pytest.param(
        HEADER + "AAA,2024-01-03,1,2,0.5,inf,10\n",
        ["line 2", "'close'", "'inf'", "not a number"],
        id="infinite-price",
    ),
    pytest.param(
        HEADER + "AAA,2024-01-03,1,2,0.5,1.5,10\n,2024-01-04,1,2,0.5,1.5,10\n",
        ["line 3", "'symbol'", "empty"],
        id="empty-symbol",
    ),
    pytest.param(
        "symbol,date,Close,open,high,low,close,volume\nAAA,2024-01-03,1,1,2,0.5,1.5,10\n",
        ["line 1", "'close'", "more than once"],
        id="repeated-column",
    ),
    pytest.param("", ["empty"], id="empty-file-zero-bytes"),
    pytest.param(HEADER, ["empty", "no data rows"], id="header-only"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_PRICES)
def test_bad_price_file_names_file_place_and_problem(tmp_path, text, expected):
    path = write(tmp_path, "prices.csv", text)
    with pytest.raises(DataSourceError) as caught:
        load_csv(path)
    message = str(caught.value)
    assert "prices.csv" in message
    for part in expected:
        assert part in message, (part, message)


def test_a_feeds_defects_are_read_for_validation_to_judge(tmp_path):
    """Negative values and a repeated (symbol, date) are the feed's defects, not the file's:
    they load, and validation reports and handles them by policy."""
    from nextday.config import compose
    from nextday.data.quality import validate

    write(
        tmp_path,
        "a.csv",
        HEADER + "AAA,2024-01-03,1,2,0.5,1.5,10\nAAA,2024-01-04,1,2,-0.5,1.5,10\n",
    )
    write(tmp_path, "b.csv", HEADER + "BBB,2024-01-03,1,2,0.5,1.5,-10\nAAA,2024-01-03,1,2,1,2,3\n")
    market = load_csv(str(tmp_path / "*.csv"))
    assert len(market.ohlcv) == 4
    (note,) = [n for n in market.notes if "repeat" in n]
    assert "b.csv line 3" in note and "a.csv line 2" in note and "'AAA'" in note
    cfg = compose([]).quality
    cfg.min_rows_per_symbol = 1
    _, report = validate(market, cfg)
    counts = report.counts()
    assert counts["duplicate"] == 1 and counts["non_positive_price"] == 1
    assert counts["ohlc_violation"] == 1  # the negative volume


BAD_EARNINGS = [
    pytest.param("symbol,eps_actual\nAAA,1\n", ["line 1", "'date'", "missing"], id="no-date"),
    pytest.param(
        "symbol,date\nAAA,2024-01-04\nAAA,yesterday\n",
        ["line 3", "'date'", "'yesterday'", "not a date"],
        id="bad-date",
    ),
    pytest.param(
        "symbol,date,eps_actual\nAAA,2024-01-04,n/a?\n",
        ["line 2", "'eps_actual'", "'n/a?'", "not a number"],
        id="non-numeric-value",
    ),
    pytest.param(
        "symbol,date,timing\nAAA,2024-01-04,amc\nAAA,2024-01-05,after hours\n",
        ["line 3", "'timing'", "'after hours'"],
        id="bad-timing",
    ),
    pytest.param("", ["empty"], id="zero-bytes"),
    pytest.param("symbol,date,timing\n", ["empty"], id="header-only"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_EARNINGS)
def test_bad_earnings_file_names_file_place_and_problem(tmp_path, text, expected):
    prices = write(tmp_path, "prices.csv", GOOD)
    earnings = write(tmp_path, "earnings.csv", text)
    with pytest.raises(DataSourceError) as caught:
        load_csv(prices, earnings)
    message = str(caught.value)
    assert "earnings.csv" in message
    for part in expected:
        assert part in message, (part, message)
