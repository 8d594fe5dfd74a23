"""scripts/bench_load.py's switch figures, from a hand-made prediction log."""

from __future__ import annotations

import pandas as pd

from bench_load import switch_figures


def test_switch_figures_count_versions_mixed_requests_and_the_time_each_move_took():
    at = pd.Timestamp("2026-12-07 10:00:00")
    rows = [  # (request, row, version, seconds after `at`)
        (0, 0, "8", -1.0), (0, 1, "8", -1.0),
        (1, 0, "8", 0.5), (1, 1, "8", 0.5),  # answered by the old version after the move
        (2, 0, "7", 1.5), (2, 1, "8", 1.5),  # a request answered by two versions
        (3, 0, "7", 2.0), (3, 1, "7", 2.0),
        (4, 0, "8", 10.3),  # after the move back
    ]  # fmt: skip
    logged = pd.DataFrame(
        {
            "symbol": [f"R{r:05d}S{i:03d}" for r, i, _, _ in rows],
            "model_version": [v for _, _, v, _ in rows],
            "created_at": [at + pd.Timedelta(seconds=s) for *_, s in rows],
        }
    )
    moves = [("7", at.value / 1e9), ("8", (at + pd.Timedelta(seconds=10)).value / 1e9)]
    figures = switch_figures(logged, moves, sent=10)
    assert figures["rows_lost"] == 1 and figures["rows_logged"] == 9
    assert figures["requests_mixed"] == 1
    assert figures["rows_v7"] == 3 and figures["rows_v8"] == 6
    assert figures["move1_first_new_s"] == 1.5 and figures["move1_last_old_s"] == 1.5
    assert round(figures["move2_first_new_s"], 6) == 0.3 and figures["move2_last_old_s"] == 0.0
