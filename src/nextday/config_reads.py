"""Which config groups a step reads, recorded as it reads them: what `main`'s reuse rests on.

A step is given `recording(cfg)`: a copy of the composed config that is a DictConfig like any
other (attribute and item access, `.get`, `in`, `OmegaConf.select`, `to_container`, `isinstance`
all behave as usual), and that notes each top-level group read from it, however deep in the
domain code the read happens. A table kept by hand of the groups each step reads goes stale
(the refit backtest reads `calibrate`); a record cannot.

Serializing the whole config is not reading it: `unrecorded(cfg)` pauses the record, as
tracking does to log config.yaml and the params.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from omegaconf import Container, DictConfig, OmegaConf


class _Reads:
    """The groups read so far, and how many `unrecorded` blocks are open."""

    def __init__(self) -> None:
        self.groups: set[str] = set()
        self.paused = 0


class RecordingConfig(DictConfig):
    """A DictConfig that notes each top-level key looked up in it.

    Every lookup of a key (attribute, item, `.get`, `in`, `select`, iteration, conversion)
    goes through `_get_node`; nested groups are plain DictConfig nodes, reached only through
    their top-level key. Copies (`copy.copy`, `copy.deepcopy`) keep adding to the same record.
    """

    def _get_node(
        self,
        key: Any,
        validate_access: bool = True,
        validate_key: bool = True,
        throw_on_missing_value: bool = False,
        throw_on_missing_key: bool = False,
    ) -> Any:
        reads: _Reads = self.__dict__["_reads"]
        if not reads.paused and isinstance(key, str):
            reads.groups.add(key)
        return super()._get_node(
            key,
            validate_access=validate_access,
            validate_key=validate_key,
            throw_on_missing_value=throw_on_missing_value,
            throw_on_missing_key=throw_on_missing_key,
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> DictConfig:
        return _recording(super().__deepcopy__(memo), self.__dict__["_reads"])


def _recording(cfg: DictConfig, reads: _Reads) -> RecordingConfig:
    # DictConfig routes attribute writes to its keys: the class and the record go in directly
    object.__setattr__(cfg, "__class__", RecordingConfig)
    cfg.__dict__["_reads"] = reads
    assert isinstance(cfg, RecordingConfig)
    return cfg


def recording(cfg: DictConfig) -> RecordingConfig:
    """A copy of `cfg` that records the top-level groups read from it (`cfg` is untouched)."""
    return _recording(copy.deepcopy(cfg), _Reads())


def groups_read(cfg: DictConfig) -> tuple[str, ...]:
    """The top-level groups read from a `recording` config so far, sorted."""
    if not isinstance(cfg, RecordingConfig):
        raise TypeError("groups_read takes a config made by recording(cfg)")
    return tuple(sorted(cfg.__dict__["_reads"].groups))


@contextlib.contextmanager
def unrecorded(cfg: DictConfig) -> Iterator[DictConfig]:
    """Reads of `cfg` inside the block are not recorded (a plain config: nothing to pause)."""
    reads = cfg.__dict__["_reads"] if isinstance(cfg, RecordingConfig) else _Reads()
    reads.paused += 1
    try:
        yield cfg
    finally:
        reads.paused -= 1


def config_hash(cfg: DictConfig, groups: Iterable[str]) -> str:
    """A hash of the resolved values of `groups` in `cfg` (a group it lacks counts as None)."""
    with unrecorded(cfg):
        values = {group: _plain(cfg.get(group)) for group in groups}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, Container) else value
