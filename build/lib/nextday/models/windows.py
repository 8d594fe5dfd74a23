"""Windows of past rows per symbol for sequence models, with no look-ahead by construction."""

from __future__ import annotations

import numpy as np


def window_index(symbols: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the `window` rows ending at each row, and which rows have a full window.

    `symbols` must be sorted (rows grouped by symbol, dates ascending within). Row i's window
    is rows i-window+1 .. i: its own row and the symbol's earlier rows, never a later one and
    never another symbol's.
    """
    n = len(symbols)
    offsets = np.arange(-(window - 1), 1)
    index = np.arange(n)[:, None] + offsets[None, :]
    first = np.clip(index[:, 0], 0, None)
    valid = (index[:, 0] >= 0) & (symbols[first] == symbols)
    return np.clip(index, 0, n - 1), valid
