"""The promotion gate: which checks a new version must pass before it serves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def acceptance_checks(
    parity_deterministic: float,
    tolerance: float,
    parity_mc_ok: bool,
    parity_mc_detail: str,
    coverage: float,
    band: tuple[float, float],
    dm_p: float,
    significance: float,
) -> list[Check]:
    """Parity, calibration and skill: what any version must show on its own."""
    low, high = band
    return [
        Check(
            "parity_deterministic",
            parity_deterministic <= tolerance,
            f"max |ONNX - Keras| {parity_deterministic:.2e} (limit {tolerance:.0e})",
        ),
        Check("parity_mc", parity_mc_ok, parity_mc_detail),
        Check(
            "calibration",
            low <= coverage <= high,
            f"test coverage of the 80% interval {coverage:.3f} (band {low:.2f}-{high:.2f})",
        ),
        Check(
            "beats_zero",
            dm_p < significance,
            f"Diebold-Mariano p = {dm_p:.3g} that the model beats the zero predictor on test "
            f"(needs < {significance:g})",
        ),
    ]


def versus_production(
    new_mae: float, production_mae: float | None, production_version: str | None, slack: float
) -> Check:
    """Not worse than the version serving now, on the new version's validation rows."""
    if production_version is None:
        return Check("vs_production", True, "no production version yet")
    if production_mae is None:
        return Check(
            "vs_production",
            False,
            f"production version {production_version} takes other inputs: compare by hand",
        )
    limit = production_mae * (1.0 + slack)
    return Check(
        "vs_production",
        new_mae <= limit,
        f"validation MAE {new_mae:.6f} vs production version {production_version} "
        f"{production_mae:.6f} (limit {limit:.6f})",
    )
