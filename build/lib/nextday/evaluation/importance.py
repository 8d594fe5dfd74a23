"""Permutation feature importance: how much worse a forecast gets when one feature is shuffled."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from nextday.evaluation.metrics import daily_ic


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    dates: np.ndarray,
    features,
    repeats: int = 2,
    seed: int = 0,
) -> pd.DataFrame:
    """MAE increase and IC drop per shuffled feature (x may be rows x features or rows x
    window x features; a feature is shuffled across rows, the same way in every window step)."""
    rng = np.random.default_rng(seed)
    base = predict(x)
    base_mae = np.mean(np.abs(base - y))
    base_ic = daily_ic(base, y, dates).mean()
    rows = []
    for j, name in enumerate(features):
        mae_up, ic_drop = [], []
        for _ in range(repeats):
            shuffled = x.copy()
            order = rng.permutation(len(x))
            shuffled[..., j] = x[order][..., j]
            prediction = predict(shuffled)
            mae_up.append(np.mean(np.abs(prediction - y)) - base_mae)
            ic_drop.append(base_ic - daily_ic(prediction, y, dates).mean())
        rows.append({"feature": name, "mae_increase": np.mean(mae_up), "ic_drop": np.mean(ic_drop)})
    return pd.DataFrame(rows).sort_values("mae_increase", ascending=False).reset_index(drop=True)
