"""Data quality from the same profiles as drift: missing values, range, unseen categories.

Each check compares a rate with its threshold from ``[monitoring]``:

- ``missing``: (nulls + NaN) / rows, per feature; ``max_null_rate``;
- ``out_of_range``: values outside [reference min, reference max] (infinities included)
  / non-NaN values; ``max_out_of_range_rate``;
- ``unseen_categories``: values the reference never had / non-null values;
  ``max_unseen_rate``.

Infinite values are reported (``inf_rate``) and count as out of range. Schema
violations are the batches the ingest API refused in the window's lifetime, by reason
(a refused batch stores nothing, so it cannot be in the profile).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.config import MonitoringConfig
from ..profiles.profile import Profile

__all__ = ["data_quality"]


def data_quality(
    profile: Profile,
    monitoring: MonitoringConfig,
    schema_violations: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The ``data_quality`` section of a drift report."""
    layout = profile.layout
    rows = max(profile.rows, 1)
    features: dict[str, Any] = {}
    issues: list[dict[str, Any]] = []

    def check(feature: str, name: str, value: float, threshold: float) -> None:
        if value > threshold:
            issues.append(
                {"feature": feature, "check": name, "value": value, "threshold": threshold}
            )

    for i, name in enumerate(layout.numeric):
        missing = float((profile.nulls[i] + profile.nans[i]) / rows)
        finite = int(profile.count[i])
        entry: dict[str, Any] = {
            "kind": "numeric",
            "null_rate": float(profile.nulls[i] / rows),
            "nan_rate": float(profile.nans[i] / rows),
            "inf_rate": float(profile.infs[i] / rows),
            "missing_rate": missing,
        }
        check(name, "missing", missing, monitoring.max_null_rate)
        if layout.edges is not None:
            outside = int(profile.hist[i, 0] + profile.hist[i, -1] + profile.infs[i])
            denominator = finite + int(profile.infs[i])
            rate = float(outside / denominator) if denominator else 0.0
            entry["out_of_range_rate"] = rate
            check(name, "out_of_range", rate, monitoring.max_out_of_range_rate)
        features[name] = entry
    for i, name in enumerate(layout.categorical):
        nulls = int(profile.cat_nulls[i])
        present = profile.rows - nulls
        unseen = float(profile.cat_unseen[i] / present) if present else 0.0
        missing = float(nulls / rows)
        features[name] = {"kind": "categorical", "null_rate": missing, "unseen_rate": unseen}
        check(name, "missing", missing, monitoring.max_null_rate)
        if layout.categories and layout.categories[i]:
            check(name, "unseen_categories", unseen, monitoring.max_unseen_rate)
    violations = dict(schema_violations or {})
    return {
        "passed": not issues,
        "issues": issues,
        "thresholds": {
            "max_null_rate": monitoring.max_null_rate,
            "max_out_of_range_rate": monitoring.max_out_of_range_rate,
            "max_unseen_rate": monitoring.max_unseen_rate,
        },
        "features": features,
        "schema_violations": violations,
        "rows": int(profile.rows),
    }
