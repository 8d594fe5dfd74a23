"""What a model is, from config, checked before any training starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from nextday.config_schema import CHOICES
from nextday.features import FEATURE_GROUPS
from nextday.models.architectures import ARCHITECTURES
from nextday.models.processor import SCALINGS

ROW_CHOICES = CHOICES["model.train_rows"]
LOSSES = CHOICES["train.loss"]


class ConfigError(ValueError):
    """A configuration that cannot work; raised before any data is read or model built."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    features: tuple[str, ...]
    arch: str
    layers: tuple[int, ...]
    dropout: tuple[float, ...]
    activation: str
    window: int  # rows of history one prediction reads: 1 unless the architecture is a sequence
    train_rows: str
    evaluate_rows: str
    earnings_weight: float
    batch_size: int
    max_epochs: int
    loss: str
    huber_delta: float
    learning_rate: float
    patience: int
    seed: int
    # the feature processor (train.processor); the defaults are what specs saved before it
    # existed mean: no clipping, standard scaling
    clip_quantile: float = 0.0
    scaling: str = "standard"

    @property
    def n_features(self) -> int:
        return len(self.features)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """From its JSON form (spec.json, an export's hyperparameters): lists become tuples."""
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**values)


def model_spec(cfg: DictConfig) -> ModelSpec:
    """The ModelSpec of the composed config; every problem is named, nothing is guessed."""
    model, arch, train = cfg.model, cfg.arch, cfg.train
    groups = list(model.feature_groups)
    problems = [
        *_feature_problems(groups),
        *_arch_problems(arch),
        *_model_problems(model),
        *_train_problems(train),
    ]
    if problems:
        raise ConfigError("bad model config: " + "; ".join(problems))
    entry = ARCHITECTURES[str(arch.name)]
    processor = train.processor
    return ModelSpec(
        name=str(model.name),
        features=tuple(f for g in groups for f in FEATURE_GROUPS[g]),
        arch=str(arch.name),
        layers=tuple(int(n) for n in arch.layers),
        dropout=tuple(float(d) for d in arch.dropout),
        activation=str(arch.activation),
        window=int(arch.get("window", 1)) if entry.sequence else 1,
        train_rows=str(model.train_rows),
        evaluate_rows=str(model.evaluate_rows),
        earnings_weight=float(model.earnings_weight),
        batch_size=int(model.batch_size),
        max_epochs=int(model.max_epochs),
        loss=str(train.loss),
        huber_delta=float(train.huber_delta),
        learning_rate=float(train.learning_rate),
        patience=int(train.patience),
        seed=int(train.seed),
        clip_quantile=float(processor.clip_quantile),
        scaling=str(processor.scaling),
    )


def _feature_problems(groups: list) -> list[str]:
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown:
        return [f"model.feature_groups has unknown groups {unknown}: use {list(FEATURE_GROUPS)}"]
    return []


def _arch_problems(arch) -> list[str]:
    problems = []
    entry = ARCHITECTURES.get(str(arch.name))
    if entry is None:
        problems.append(f"arch={arch.name!r} is unknown: expected one of {tuple(ARCHITECTURES)}")
    layers = [int(n) for n in arch.layers]
    dropout = [float(d) for d in arch.dropout]
    if not layers or any(n < 1 for n in layers):
        problems.append(f"arch.layers must be positive sizes, got {layers}")
    if len(dropout) != len(layers):
        problems.append(f"arch.dropout needs one rate per layer ({len(layers)}), got {dropout}")
    bad_rates = [d for d in dropout if not 0.0 <= d < 1.0]
    if bad_rates:
        problems.append(f"arch.dropout rates must be in [0, 1), got {bad_rates}")
    window = int(arch.get("window", 1))
    if entry is not None and entry.sequence and window < 2:
        problems.append(f"arch.window must be at least 2 for arch={arch.name}, got {window}")
    return problems


def _model_problems(model) -> list[str]:
    problems = [
        f"model.{key}={model[key]!r}: expected one of {ROW_CHOICES}"
        for key in ("train_rows", "evaluate_rows")
        if str(model[key]) not in ROW_CHOICES
    ]
    if float(model.earnings_weight) <= 0:
        problems.append(f"model.earnings_weight must be positive, got {model.earnings_weight}")
    if int(model.batch_size) < 1 or int(model.max_epochs) < 1:
        problems.append("model.batch_size and model.max_epochs must be at least 1")
    return problems


def _train_problems(train) -> list[str]:
    problems = []
    if str(train.loss) not in LOSSES:
        problems.append(f"train.loss={train.loss!r}: expected one of {LOSSES}")
    if float(train.huber_delta) <= 0 or float(train.learning_rate) <= 0:
        problems.append("train.huber_delta and train.learning_rate must be positive")
    processor = train.processor
    if not 0.0 <= float(processor.clip_quantile) < 0.5:
        problems.append(
            f"train.processor.clip_quantile must be in [0, 0.5), got {processor.clip_quantile}"
        )
    if str(processor.scaling) not in SCALINGS:
        problems.append(
            f"train.processor.scaling={processor.scaling!r}: expected one of {SCALINGS}"
        )
    if int(train.patience) < 1:
        problems.append(f"train.patience must be at least 1, got {train.patience}")
    return problems


def check_dataset_columns(spec: ModelSpec, columns) -> None:
    """Fail with the missing feature names when the dataset lacks some of the model's."""
    missing = [f for f in spec.features if f not in set(columns)]
    if missing:
        raise ConfigError(
            f"the dataset has {len(spec.features) - len(missing)} of the {spec.n_features} "
            f"features model={spec.name} expects (missing: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''})"
        )
