"""The typed drift report: ``DriftReport.to_dict()`` is the documented JSON, key for key."""

from __future__ import annotations

import json

from mlwarden.types import (
    RECOMMENDATIONS,
    DriftReport,
    DriftScore,
    DriftWindow,
    FeatureDrift,
    MultivariateDrift,
    PredictionDrift,
    RowCounts,
    TargetDrift,
)

#: The keys of a report in docs/api.md's order (``message`` only without a verdict).
TOP_KEYS = [
    "model", "checked_at", "source", "rows", "data_quality", "status", "drift_detected",
    "drift_score", "threshold", "recommendation", "drifted_features", "feature_drifts",
    "multivariate_drift", "prediction_drift", "target_drift", "window", "duration_seconds",
    "id",
]  # fmt: skip
INSUFFICIENT_KEYS = [*TOP_KEYS[:6], "message", *TOP_KEYS[6:]]

QUALITY = {"passed": True, "issues": [], "rows": 500}


def ks(statistic: float, drifted: bool) -> DriftScore:
    return DriftScore("ks", statistic, 0.05, drifted, p_value=0.01 if drifted else 0.5)


def psi(statistic: float, drifted: bool) -> DriftScore:
    return DriftScore("psi", statistic, 0.1, drifted, details={"bins": 10})


def drifted_report() -> DriftReport:
    return DriftReport(
        model="m",
        checked_at=1764100000.0,
        source="window",
        rows=RowCounts(current=500, reference=20000),
        threshold=0.2,
        data_quality=QUALITY,
        drift_detected=True,
        drift_score=0.5,
        recommendation="RETRAIN_IMMEDIATELY",
        drifted_features=("x2",),
        feature_drifts={
            "x1": FeatureDrift(kind="numeric", drifted=False, methods={"ks": ks(0.02, False)}),
            "x2": FeatureDrift(
                kind="numeric",
                drifted=True,
                methods={"ks": ks(0.4, True), "psi": psi(0.9, True)},
            ),
        },
        multivariate_drift=MultivariateDrift(
            columns=("x1", "x2"), drifted=False, error="mmd: too few rows"
        ),
        prediction_drift=PredictionDrift(
            column="prediction", kind="numeric", drifted=False, methods={"ks": ks(0.03, False)}
        ),
        target_drift=TargetDrift(
            column="label", labels=300, drifted=True, methods={"ks": ks(0.5, True)}
        ),
        window=DriftWindow(start=1764013600.0, end=1764100000.0, hours=24.0),
        duration_seconds=0.03,
        id=42,
    )


def ks_dict(statistic: float, drifted: bool) -> dict:
    p_value = 0.01 if drifted else 0.5
    return {"statistic": statistic, "p_value": p_value, "threshold": 0.05, "drifted": drifted}


DRIFTED = {
    "model": "m",
    "checked_at": 1764100000.0,
    "source": "window",
    "rows": {"current": 500, "reference": 20000},
    "data_quality": QUALITY,
    "status": "ok",
    "drift_detected": True,
    "drift_score": 0.5,
    "threshold": 0.2,
    "recommendation": "RETRAIN_IMMEDIATELY",
    "drifted_features": ["x2"],
    "feature_drifts": {
        "x1": {"kind": "numeric", "drifted": False, "methods": {"ks": ks_dict(0.02, False)}},
        "x2": {
            "kind": "numeric",
            "drifted": True,
            "methods": {
                "ks": ks_dict(0.4, True),
                "psi": {
                    "statistic": 0.9,
                    "p_value": None,
                    "threshold": 0.1,
                    "drifted": True,
                    "details": {"bins": 10},
                },
            },
        },
    },
    "multivariate_drift": {
        "columns": ["x1", "x2"],
        "drifted": False,
        "methods": {},
        "error": "mmd: too few rows",
    },
    "prediction_drift": {
        "column": "prediction",
        "kind": "numeric",
        "drifted": False,
        "methods": {"ks": ks_dict(0.03, False)},
    },
    "target_drift": {
        "column": "label",
        "labels": 300,
        "drifted": True,
        "methods": {"ks": ks_dict(0.5, True)},
    },
    "window": {"start": 1764013600.0, "end": 1764100000.0, "hours": 24.0, "version": None},
    "duration_seconds": 0.03,
    "id": 42,
}


def ordered(value):
    """``value`` with every dict as a list of items: equal only in the same key order."""
    if isinstance(value, dict):
        return [(k, ordered(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [ordered(v) for v in value]
    return value


def test_a_drifted_report_is_the_documented_json():
    report = drifted_report()
    out = report.to_dict()
    assert ordered(out) == ordered(DRIFTED)
    assert list(out) == TOP_KEYS
    assert json.loads(json.dumps(out)) == out  # plain JSON values only


def test_an_insufficient_data_report_is_the_documented_json():
    message = "50 rows in the window; at least 200 needed (monitoring.min_window_rows)"
    report = DriftReport(
        model="m",
        checked_at=1764100000.0,
        source="window",
        rows=RowCounts(current=50, reference=20000),
        threshold=0.2,
        data_quality=QUALITY,
        status="insufficient_data",
        message=message,
        window=DriftWindow(start=1764013600.0, end=1764100000.0, hours=24.0, version="2.0.0"),
    )
    assert report.to_dict() == {
        **{k: v for k, v in DRIFTED.items() if k not in ("duration_seconds", "id")},
        "rows": {"current": 50, "reference": 20000},
        "status": "insufficient_data",
        "message": message,
        "drift_detected": False,
        "drift_score": 0.0,
        "recommendation": "NO_ACTION_NEEDED",
        "drifted_features": [],
        "feature_drifts": {},
        "multivariate_drift": None,
        "prediction_drift": None,
        "target_drift": None,
        "window": {"start": 1764013600.0, "end": 1764100000.0, "hours": 24.0, "version": "2.0.0"},
    }
    # Stored, it gets its duration and id, in the places of a stored report.
    stored = report.to_dict() | {"duration_seconds": 0.01, "id": 7}
    assert list(stored) == INSUFFICIENT_KEYS


def test_recommendations_rank_from_least_to_most_urgent():
    assert RECOMMENDATIONS == ("NO_ACTION_NEEDED", "RETRAIN_SOON", "RETRAIN_IMMEDIATELY")
