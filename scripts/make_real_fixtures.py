"""Cut tests/fixtures/real/ from the real prices that ship inside a PyPI package.

    python scripts/make_real_fixtures.py

Downloads the skfolio wheel (no install: `pip download --no-deps`), reads its
`skfolio/datasets/data/sp500_dataset.csv.gz` (adjusted closes of 20 US large caps) and keeps
2012-2019. The tests never download anything: they read the committed file.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

PACKAGE = "skfolio==1.12.2"
MEMBER = "skfolio/datasets/data/sp500_dataset.csv.gz"
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "real"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder, PACKAGE],
            check=True,
        )
        wheel = next(Path(folder).glob("skfolio-*.whl"))
        with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as handle:
            closes = pd.read_csv(handle, compression="gzip", parse_dates=["Date"], index_col="Date")
    kept = closes.loc["2012-01-01":"2019-12-31"]
    OUT.mkdir(parents=True, exist_ok=True)
    kept.to_csv(OUT / "sp500_closes_2012_2019.csv.gz", float_format="%.3f")
    print(f"{kept.shape[0]} days x {kept.shape[1]} symbols -> {OUT}")


if __name__ == "__main__":
    main()
