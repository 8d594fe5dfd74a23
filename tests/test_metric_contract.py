"""The metrics between steps (nextday.contracts.metrics): names built and read in one place,
a missing one named with its writer, no name spelled out anywhere else, and the reference
table in docs/architecture.md current. That every step writes what it declares is checked
on real runs: tests/test_main.py (main's steps) and tests/test_tune.py (tune)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from nextday.contracts import metrics as metric_names
from test_docs import ARCHITECTURE, between

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nextday"

# literals that spell a contract name but are not that metric: (file, text)
NOT_THE_METRIC = {
    ("models/spec.py", "train_rows"),  # the model spec's key: which training rows
    ("backtest/walkforward.py", "train_rows"),  # a column of the refit folds' table
    ("export/registry.py", "test_mae"),  # a column of the `versions` table
}


def test_builders_give_the_names_runs_already_carry():
    assert metric_names.point("test", "mae") == "test_mae"
    assert metric_names.point("test", "mae", "zero") == "baseline_zero_test_mae"
    assert metric_names.point("val", "ic", metric_names.ORACLE) == "oracle_val_ic"
    assert metric_names.coverage("test", 0.8) == "test_coverage_80"
    assert metric_names.coverage("test", 0.8, online=True) == "test_online_coverage_80"
    assert metric_names.interval_score("val", 0.8) == "val_interval_score_80"
    assert metric_names.segment_rows("val") == "val_rows"
    assert metric_names.segment_earnings_rows("test") == "test_earnings_rows"
    with pytest.raises(ValueError, match="replayed over the test days, not 'val'"):
        metric_names.coverage("val", 0.8, online=True)


def test_each_name_falls_under_the_declaration_of_its_own_writer():
    assert metric_names.declared("test_coverage_80").writers == ("calibrate", "export")
    assert metric_names.declared("test_rows").writers == ("prepare",)
    assert "tune" in metric_names.declared("test_mae").writers
    assert metric_names.declared("study_trials").writers == ("tune",)


@pytest.mark.parametrize("name", ["test_maee", "holdout_mae", "test_coverage_800", "bt_sharpe"])
def test_a_name_outside_the_contract_is_refused(name):
    with pytest.raises(ValueError, match=rf"metric '{name}' is not in the contract"):
        metric_names.declared(name)
    with pytest.raises(ValueError, match="not in the contract"):
        metric_names.read_optional({name: 1.0}, name)


def test_a_missing_metric_fails_naming_the_run_and_its_writer():
    with pytest.raises(metric_names.MissingMetricError) as raised:
        metric_names.read({"val_rows": 3.0}, "test_rows", "prepare run abc")
    assert str(raised.value).startswith(
        "prepare run abc logged no metric 'test_rows' (written by prepare)"
    )
    assert metric_names.read({"test_rows": 3.0}, "test_rows") == 3.0
    assert math.isnan(metric_names.read_optional({}, "test_ic"))


def test_only_the_baselines_and_oracle_on_test_are_copied_to_the_export():
    copied = [
        name
        for name in (
            "baseline_tree_test_mae",
            "oracle_test_ic",
            "baseline_tree_val_mae",
            "baseline_linear_alpha",
            "test_mae",
        )
        if metric_names.is_copied_to_export(name)
    ]
    assert copied == ["baseline_tree_test_mae", "oracle_test_ic"]


def test_levels_are_read_from_coverage_names_of_one_segment():
    logged = {"test_coverage_80": 0.8, "test_coverage_90": 0.9, "val_coverage_50": 0.5}
    logged |= {"test_online_coverage_80": 0.8, "raw_test_coverage_80": 0.6}
    assert metric_names.levels(logged, "test") == [0.8, 0.9]


def test_missing_lists_the_declared_names_a_step_left_out():
    logged = {"rows": 1, "symbols": 1, "train_rows": 1, "val_rows": 1, "test_rows": 1}
    assert metric_names.missing("prepare", logged) == [
        "train_earnings_rows",
        "val_earnings_rows",
        "test_earnings_rows",
    ]
    # a name that is left out where not finite (the earnings model's IC) is never required
    assert "test_ic" not in metric_names.missing("train", {})


def _spelled_out() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith("contracts/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            text = node.value if isinstance(node, ast.Constant) else None
            if not isinstance(text, str) or "_" not in text or (where, text) in NOT_THE_METRIC:
                continue
            try:
                metric_names.declared(text)
            except ValueError:
                continue
            found.append(f"src/nextday/{where}:{node.lineno} {text!r}")
    return found


def test_no_module_spells_out_a_contract_name():
    """Every read and write of a contract name goes through the builders: a literal name
    elsewhere would drift from its writer unseen."""
    assert not _spelled_out(), "\n".join(_spelled_out())


def test_the_reference_table_in_the_docs_is_current():
    documented = between(ARCHITECTURE.read_text(), "metrics-table").strip()
    assert documented == metric_names.reference_table().strip(), (
        "docs/architecture.md's metrics table is out of date: paste "
        "nextday.contracts.metrics.reference_table() between its markers"
    )
