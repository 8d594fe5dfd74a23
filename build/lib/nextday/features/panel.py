"""A per-symbol view of long data, so rolling windows never cross from one symbol to the next.

Row k of a symbol's history sits at row k of its column: column-wise rolling and exponential
windows on the wide frame are then per-symbol windows over the symbol's own trading days, with
no gaps from other symbols' calendars and no mixing between symbols.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Panel:
    symbols: np.ndarray
    position: np.ndarray  # k: the row's index within its symbol's history
    column: np.ndarray  # the symbol's column in the wide frame
    n_rows: int

    @classmethod
    def from_long(cls, symbol: pd.Series) -> Panel:
        """Index long rows that are sorted by (symbol, ts)."""
        codes, symbols = pd.factorize(symbol, sort=False)
        if len(codes) and np.any(np.diff(codes) < 0):
            raise ValueError("long data must be sorted by symbol, then ts")
        position = pd.Series(codes).groupby(codes).cumcount().to_numpy()
        n_rows = int(position.max()) + 1 if len(position) else 0
        return cls(np.asarray(symbols), position, codes, n_rows)

    def wide(self, values) -> pd.DataFrame:
        grid = np.full((self.n_rows, len(self.symbols)), np.nan)
        grid[self.position, self.column] = np.asarray(values, dtype=float)
        return pd.DataFrame(grid)

    def long(self, wide: pd.DataFrame | np.ndarray) -> np.ndarray:
        grid = wide.to_numpy() if isinstance(wide, pd.DataFrame) else wide
        return grid[self.position, self.column]
