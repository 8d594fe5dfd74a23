"""The recording config: a DictConfig to the code that reads it, a record of the groups read to
`main`'s reuse."""

from __future__ import annotations

import copy

import pytest
from omegaconf import DictConfig, OmegaConf

from nextday.config import compose, flatten
from nextday.config_reads import config_hash, groups_read, recording, unrecorded


@pytest.fixture(scope="module")
def cfg() -> DictConfig:
    return compose(["experiment=quick"])


def test_every_way_of_reading_a_group_is_recorded(cfg):
    recorded = recording(cfg)
    assert isinstance(recorded, DictConfig) and groups_read(recorded) == ()
    assert recorded.calibrate.passes == cfg.calibrate.passes
    assert recorded["train"]["patience"] == cfg.train.patience
    assert recorded.get("inputs").prepare_run_id is None
    assert "store" in recorded
    assert OmegaConf.select(recorded, "split.embargo_days") == cfg.split.embargo_days
    assert OmegaConf.to_container(recorded.backtest) == OmegaConf.to_container(cfg.backtest)
    assert copy.deepcopy(recorded).features == cfg.features  # a copy adds to the same record
    assert groups_read(recorded) == (
        "backtest", "calibrate", "features", "inputs", "split", "store", "train",
    )  # fmt: skip
    assert type(cfg) is DictConfig  # the composed config itself is left as it was


def test_serializing_the_whole_config_unrecorded_reads_nothing(cfg):
    recorded = recording(cfg)
    with unrecorded(recorded):
        assert OmegaConf.to_yaml(recorded) == OmegaConf.to_yaml(cfg)
        assert flatten(recorded) == flatten(cfg)
    assert groups_read(recorded) == ()
    OmegaConf.to_container(recorded)  # outside the block, reading everything is recorded
    assert set(groups_read(recorded)) == set(cfg)


def test_the_hash_covers_the_groups_named_and_only_those(cfg):
    changed = compose(["experiment=quick", "calibrate.seed=7", "live.days=5"])
    assert config_hash(cfg, ["backtest", "split"]) == config_hash(changed, ["backtest", "split"])
    assert config_hash(cfg, ["calibrate"]) != config_hash(changed, ["calibrate"])
    assert config_hash(cfg, ["live"]) != config_hash(changed, ["live"])
    assert config_hash(recording(cfg), ["calibrate"]) == config_hash(cfg, ["calibrate"])
