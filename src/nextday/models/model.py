"""The model: one object that trains, predicts and samples, for every architecture and step.

`NextdayModel(spec).fit(dataset)` arranges the prepared dataset for the spec, fits the feature
processor on the training rows, builds the network with the processor inside it (raw features
in, next-day return out) and trains it through the one training loop. `predict(x)` is the
deterministic forecast (dropout off); `sample(x, passes, seed)` the MC-dropout draws that the
calibration turns into intervals. train, tune, calibrate, export and the refit backtest all
hold the same object; `save`/`load` are its files (model_files/ of a train or tune run).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nextday.contracts import artifacts
from nextday.models.data import ModelData, arrange
from nextday.models.processor import FeatureProcessor
from nextday.models.spec import ModelSpec, check_dataset_columns

if TYPE_CHECKING:
    import keras

    from nextday.models.training import FitResult


class NotFittedError(RuntimeError):
    """A model used before `fit` (or `load`)."""


class NextdayModel:
    """A network for one `ModelSpec`, with its feature processor inside.

    Parameters are the spec and how to train (op determinism, Keras steps per execution);
    `fit` does the work and returns the model. Fitted attributes end in an underscore:
    `network_` (Keras), `processor_`, `history_` (`FitResult`) and, after `fit`, `data_`
    (the arranged dataset it was fitted and is judged on). `fitted_network()`,
    `fitted_processor()`, `fitted_history()` and `fitted_data()` return them, or raise
    `NotFittedError` where they are not set.
    """

    def __init__(self, spec: ModelSpec, deterministic: bool = True, steps_per_execution: int = 1):
        self.spec = spec
        self.deterministic = deterministic
        self.steps_per_execution = steps_per_execution
        self.network_: keras.Model | None = None
        self.processor_: FeatureProcessor | None = None
        self.history_: FitResult | None = None
        self.data_: ModelData | None = None

    @classmethod
    def from_config(cls, spec: ModelSpec, train: Mapping) -> NextdayModel:
        """An unfitted model of `spec`, trained the way the `train` config group says."""
        return cls(spec, bool(train["deterministic"]), int(train["steps_per_execution"]))

    def arrange(self, dataset: pd.DataFrame, truth: pd.DataFrame | None = None) -> ModelData:
        """The dataset as this model reads it: inputs, labels and weights per segment."""
        check_dataset_columns(self.spec, dataset.columns)
        return arrange(self.spec, dataset, truth)

    def fit(
        self,
        dataset: pd.DataFrame | ModelData,
        truth: pd.DataFrame | None = None,
        checkpoint: Path | None = None,
        on_epoch: Callable[[int, dict], None] | None = None,
        callbacks: Callable[[ModelData], list] | None = None,
        start_from: NextdayModel | None = None,
    ) -> NextdayModel:
        """Fit on the training segment with early stopping on validation.

        `dataset` is a prepared dataset (or data already arranged for this spec);
        `checkpoint` keeps the best weights on disk; `on_epoch(epoch, logs)` sees each epoch;
        `callbacks(data)` returns extra Keras callbacks that need the arranged data (tune's
        pruning); `start_from` is a trained model whose weights this one starts from.
        """
        from nextday.models.networks import build_network, transfer_weights
        from nextday.models.training import fit, seed_everything

        spec = self.spec
        data = dataset if isinstance(dataset, ModelData) else self.arrange(dataset, truth)
        self.data_ = data
        self.processor_ = FeatureProcessor.fit(
            spec.features, data.train_flat, data.train.y, spec.clip_quantile, spec.scaling
        )
        seed_everything(spec.seed, self.deterministic)
        self.network_ = build_network(spec, self.processor_)
        if start_from is not None:
            transfer_weights(
                start_from.fitted_network(), self.network_, start_from.spec.features, spec.features
            )
        self.history_ = fit(
            self.network_,
            spec,
            data.train,
            data.val,
            checkpoint=checkpoint,
            on_epoch=on_epoch,
            steps_per_execution=self.steps_per_execution,
            callbacks=callbacks(data) if callbacks else None,
        )
        return self

    def fitted_network(self) -> keras.Model:
        """The Keras network (`network_`), after `fit` or `load`."""
        if self.network_ is None:
            raise NotFittedError(f"the {self.spec.name} model is not fitted: call fit or load")
        return self.network_

    def fitted_processor(self) -> FeatureProcessor:
        """The feature processor (`processor_`), after `fit` or `load` (of model files that
        hold processor.json)."""
        if self.processor_ is None:
            raise NotFittedError(
                f"the {self.spec.name} model has no feature processor: call fit, or load "
                f"model files that hold {artifacts.PROCESSOR.name}"
            )
        return self.processor_

    def fitted_history(self) -> FitResult:
        """How the training went (`history_`); only after `fit` (`load` has no history)."""
        if self.history_ is None:
            raise NotFittedError(
                f"the {self.spec.name} model has no training history: call fit (load keeps none)"
            )
        return self.history_

    def fitted_data(self) -> ModelData:
        """The arranged dataset it was fitted on (`data_`); only after `fit` (`load` has no
        data: arrange the dataset instead)."""
        if self.data_ is None:
            raise NotFittedError(
                f"the {self.spec.name} model has no arranged data: call fit (load keeps none)"
            )
        return self.data_

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Deterministic next-day returns (dropout off), one per row, float64."""
        from nextday.models.training import predict

        return predict(self.fitted_network(), x)

    def sample(
        self, x: np.ndarray, passes: int, seed: int, on_pass: Callable[[], None] | None = None
    ) -> np.ndarray:
        """MC-dropout draws, shape (passes, rows); the same seed draws the same masks.
        `on_pass()` is called after each pass (progress)."""
        from nextday.models.mc_dropout import mc_samples

        return mc_samples(self.fitted_network(), x, passes, seed, on_pass=on_pass)

    def save(self, folder: Path) -> Path:
        """spec.json, processor.json and best.keras (the artifact names of model_files/)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / artifacts.SPEC.name).write_text(json.dumps(asdict(self.spec), indent=2))
        if self.processor_ is not None:
            self.processor_.to_json(folder / artifacts.PROCESSOR.name)
        self.fitted_network().save(folder / artifacts.CHECKPOINT.name)
        return folder

    @classmethod
    def load(cls, folder: Path) -> NextdayModel:
        """A trained model from its files (a train or tune run's model_files/)."""
        import keras

        from nextday.models.networks import Winsorize

        folder = Path(folder)
        spec = ModelSpec.from_dict(json.loads((folder / artifacts.SPEC.name).read_text()))
        model = cls(spec)
        model.network_ = keras.models.load_model(
            folder / artifacts.CHECKPOINT.name, custom_objects={"Winsorize": Winsorize}
        )
        processor = folder / artifacts.PROCESSOR.name
        if processor.exists():
            model.processor_ = FeatureProcessor.from_json(processor)
        return model
