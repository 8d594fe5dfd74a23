"""The config's schema (config_schema.py): a wrong type, an unknown key or a number out of range
is refused when the config is composed, with the key named, and the command line exits 2
before any run or file exists."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from nextday import cli
from nextday.config import ConfigSchemaError, RefusedConfigError, compose
from nextday.config_schema import CHOICES, RANGES, schema_errors


@pytest.mark.parametrize(
    ("override", "named"),
    [
        (
            "train.patience=abc",
            r"train.patience='abc' is a string: train.patience takes an integer",
        ),
        ("calibrate.passes=2.5", r"calibrate.passes=2.5 is a number: .* takes an integer"),
        ("arch.layers=5", r"arch.layers=5 is an integer: arch.layers takes a list"),
        ("export.promote=3", r"export.promote=3 is an integer: .* takes a boolean"),
        ("model.max_epochs=0", r"model.max_epochs=0 is out of range: .* must be at least 1"),
        ("calibrate.level=1.5", r"calibrate.level=1.5 is out of range: .* less than 1"),
        ("split.embargo_days=-1", r"split.embargo_days=-1 is out of range"),
        ("train.epoch=3", r"train.epoch is not a key of the config; did you mean .*train.patience"),
        ("tarin.patience=3", r"tarin.patience is not a key .*did you mean train.patience"),
        ("backtest.mode=walk", r"backtest.mode='walk' is not a choice: .* takes fixed or refit"),
        ("calibrate.online.rule=ACI", r"calibrate.online.rule='ACI' is not a choice: .*aci or pid"),
        ("model.train_rows=some", r"model.train_rows='some' is not a choice"),
        ("train.loss=hinge", r"train.loss='hinge' is not a choice: .*huber or mse or mae"),
        (
            "model=foo",
            r"Could not find 'model/foo'; available options in 'model': earnings, normal",
        ),
    ],
)
def test_a_wrong_config_is_refused_at_compose_with_the_key_named(override, named):
    with pytest.raises(RefusedConfigError, match=named):
        compose(["experiment=quick", override])


@pytest.mark.parametrize(
    "override",
    [
        "train.learning_rate=1",  # an int where a float is meant
        "data.years=2.5",  # a float where the default happens to be whole
        "mlflow.experiment_name=2024",  # any scalar for a string
        "live.change.after_days=null",  # null: off
        "+train.note=anything",  # added on purpose
        "arch.layers.0=128",  # one item of a list
        "model=earnings",
        "arch=lstm",
    ],
)
def test_what_the_types_allow_composes(override):
    compose(["experiment=quick", override])


def test_each_group_choice_is_typed_by_its_own_defaults():
    # data.path exists only with data=csv, where it is a string: typed there, unknown elsewhere
    assert compose(["data=csv", "data.path=prices.csv"]).data.path == "prices.csv"
    with pytest.raises(ConfigSchemaError, match="data.path is not a key"):
        compose(["data.path=prices.csv"])


def test_the_ranges_name_keys_of_the_defaults_and_the_defaults_are_in_range():
    for overrides in ([], ["experiment=quick"], ["model=earnings"], ["experiment=full"]):
        defaults = compose(overrides)
        assert schema_errors(defaults, defaults) == []
    quick = compose(["experiment=quick"])
    for key in [*RANGES, *CHOICES]:
        node = quick
        for part in key.split("."):
            assert part in node, f"RANGES or CHOICES name {key}, which no default config has"
            node = node[part]


def test_every_choice_composes_and_is_what_its_module_acts_on():
    from nextday.backtest.settings import MODES
    from nextday.models.spec import ROW_CHOICES
    from nextday.uncertainty.online import RULES

    assert tuple(
        CHOICES[key] for key in ("backtest.mode", "model.train_rows", "calibrate.online.rule")
    ) == (MODES, ROW_CHOICES, RULES)
    for key, choices in CHOICES.items():
        for choice in choices:
            assert OmegaConf.select(compose(["experiment=quick", f"{key}={choice}"]), key) == choice


def test_the_command_line_exits_2_before_any_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NEXTDAY_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "experiment=quick", "train.patience=abc"]) == 2
    assert "train.patience='abc' is a string" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no tracking store, no data, no outputs
