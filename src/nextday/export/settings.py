"""The `export` config group, checked when the step starts: the ONNX files, the parity
checks, the serving policy written into metadata.json and the promotion gate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nextday.inference.model import RANGE_POLICIES


@dataclass(frozen=True)
class ParitySettings:
    tolerance: float  # max |ONNX - Keras| of the deterministic graph
    calibration_tolerance: float  # max |ONNX - Calibration.apply| / the row's sigma
    calibration_sd_ulps: float  # max |MC spread, ONNX - float64| in float32 ulps of the samples
    mc_rows: int  # test rows for the statistical MC check (and the calibration check)
    mc_calls: int  # calls of each side per row
    mc_max_share_z_above_4: float
    mc_spread_band: tuple[float, float]  # average MC spread, ONNX / Keras

    @classmethod
    def from_config(cls, parity: Mapping) -> ParitySettings:
        low, high = parity["mc_spread_band"]
        return cls(
            tolerance=float(parity["tolerance"]),
            calibration_tolerance=float(parity["calibration_tolerance"]),
            calibration_sd_ulps=float(parity["calibration_sd_ulps"]),
            mc_rows=int(parity["mc_rows"]),
            mc_calls=int(parity["mc_calls"]),
            mc_max_share_z_above_4=float(parity["mc_max_share_z_above_4"]),
            mc_spread_band=(float(low), float(high)),
        )


@dataclass(frozen=True)
class ServingSettings:
    """What ModelInference and the served model accept (metadata.json `serving`)."""

    max_rows: int
    out_of_range: str  # one of RANGE_POLICIES
    range_multiple: float
    # the served model checks its alias this often and serves the version it names (0: never)
    follow_alias_s: float = 30.0
    # ONNX Runtime in each served process: intra-op threads (0: its default, one per core)
    # and whether idle threads spin waiting for work
    threads: int = 1
    spinning: bool = False

    def __post_init__(self) -> None:
        if self.out_of_range not in RANGE_POLICIES:
            raise ValueError(
                f"export.serving.out_of_range={self.out_of_range!r}: one of {RANGE_POLICIES}"
            )
        if not self.follow_alias_s >= 0:
            raise ValueError(
                f"export.serving.follow_alias_s={self.follow_alias_s}: 0 (off) or more seconds"
            )
        if self.threads < 0:
            raise ValueError(
                f"export.serving.threads={self.threads}: 0 (ONNX Runtime's default) or more"
            )

    @classmethod
    def from_config(cls, serving: Mapping) -> ServingSettings:
        return cls(
            max_rows=int(serving["max_rows"]),
            out_of_range=str(serving["out_of_range"]),
            range_multiple=float(serving["range_multiple"]),
            follow_alias_s=float(serving.get("follow_alias_s", 30.0)),
            threads=int(serving.get("threads", 1)),
            spinning=bool(serving.get("spinning", False)),
        )


@dataclass(frozen=True)
class GateSettings:
    """What a version must show to become production."""

    coverage_band: tuple[float, float]  # test coverage of the 80% interval
    significance: float  # one-sided Diebold-Mariano p vs the zero predictor, test
    max_val_mae_increase: float  # relative, against the production version
    online_score_slack: float  # relative: the online rule's test interval score vs static

    @classmethod
    def from_config(cls, gate: Mapping) -> GateSettings:
        low, high = gate["coverage_band"]
        return cls(
            coverage_band=(float(low), float(high)),
            significance=float(gate["significance"]),
            max_val_mae_increase=float(gate["max_val_mae_increase"]),
            online_score_slack=float(gate["online_score_slack"]),
        )


@dataclass(frozen=True)
class ExportSettings:
    registered_model_prefix: str  # the registered model is <prefix><model>
    opset: int
    seed: int  # seeds the MC graph's draws and the parity checks
    float16: bool  # served as float16 on a GPU by default
    promote: bool  # false: register and check, never move the production alias
    online: bool  # serve the interval corrected online (calibrate.online); false: the static one
    parity: ParitySettings
    serving: ServingSettings
    gate: GateSettings

    @classmethod
    def from_config(cls, export: Mapping) -> ExportSettings:
        """`export` is the export config group."""
        return cls(
            registered_model_prefix=str(export["registered_model_prefix"]),
            opset=int(export["opset"]),
            seed=int(export["seed"]),
            float16=bool(export["float16"]),
            promote=bool(export["promote"]),
            online=bool(export["online"]),
            parity=ParitySettings.from_config(export["parity"]),
            serving=ServingSettings.from_config(export["serving"]),
            gate=GateSettings.from_config(export["gate"]),
        )
