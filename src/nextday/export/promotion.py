"""What becomes of a registered version: compared with the production version on its own
validation rows, then promoted when every check passed, or marked a challenger."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from nextday.contracts import tags
from nextday.contracts.metadata import ExportMetadata
from nextday.export import gate, registry
from nextday.models.data import Segment

log = logging.getLogger(__name__)


def versus_production(
    client,
    metadata: ExportMetadata,
    version: str,
    val: Segment,
    val_outputs: Mapping[str, np.ndarray],
    slack: float,
) -> gate.Check:
    """The production version's validation MAE on the new version's validation rows (`val`,
    where the new version answered `val_outputs`); it can only be compared when it takes the
    same inputs. `slack` is how much worse (relative) the new version may be."""
    from nextday.inference.model import ModelInference

    registered = metadata.registered_model
    current = registry.version_by_alias(client, registered, registry.PRODUCTION)
    if current is None or str(current.version) == str(version):
        return gate.versus_production(0.0, None, None, 0.0)
    production = ModelInference(f"models:/{registered}/{current.version}", device="cpu")
    new_mae = float(np.mean(np.abs(val_outputs["prediction"] - val.y)))
    production_mae = None
    if production.features == metadata.features and production.window == metadata.window:
        predicted = production.run(np.asarray(val.x, dtype=np.float32))["prediction"]
        production_mae = float(np.mean(np.abs(predicted - val.y)))
    return gate.versus_production(new_mae, production_mae, str(current.version), slack)


def decide(
    client, registered: str, version: str, checks: Sequence[gate.Check], promote: bool
) -> str:
    """Promote when every check passed (and promotion is on); else mark a challenger.
    Returns the decision, as the export run's gate tag says it."""
    failed = [f"{c.name} ({c.detail})" for c in checks if not c.passed]
    if failed:
        registry.mark_challenger(client, registered, version, failed)
        log.warning(
            "export: %s version %s stays a challenger: %s", registered, version, "; ".join(failed)
        )
        return "challenger: " + "; ".join(c.name for c in checks if not c.passed)
    client.set_model_version_tag(registered, version, tags.GATE, "passed")
    if not promote:
        return "passed, not promoted (export.promote=false)"
    registry.promote(client, registered, version, "passed the export gate")
    return "production"
