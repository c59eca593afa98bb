"""A real daemon: stream data, find the shift, and keep everything across kill -9."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

FEATURES = ("x1", "x2", "x3", "x4")


def frame(n: int, seed: int, shift: float = 0.0, kinds=(0.5, 0.3, 0.2)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {name: rng.normal(size=n) for name in FEATURES}
    data["x2"] = data["x2"] + shift
    data["kind"] = rng.choice(["a", "b", "c"], n, p=list(kinds))
    data["prediction"] = rng.normal(size=n)
    return pd.DataFrame(data)


def as_records(data: pd.DataFrame, prefix: str) -> dict:
    return {
        "records": [
            {
                "id": f"{prefix}{i}",
                "features": {name: row[name] for name in (*FEATURES, "kind")},
                "prediction": row["prediction"],
            }
            for i, row in enumerate(data.to_dict("records"))
        ]
    }


def as_columns(data: pd.DataFrame, prefix: str) -> dict:
    return {
        "columns": {
            "id": [f"{prefix}{i}" for i in range(len(data))],
            "features": {name: data[name].tolist() for name in (*FEATURES, "kind")},
            "prediction": data["prediction"].tolist(),
        }
    }


def metric(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return None


def test_stream_shift_and_survive_kill_9(daemon_factory, tmp_path):
    reference = tmp_path / "reference.csv"
    frame(20000, seed=1).to_csv(reference, index=False)
    config = (
        "[monitoring]\nbucket_seconds = 2\ninterval_seconds = 3600\ndrift_threshold = 0.2\n"
        f'[[models]]\nname = "m"\nreference = "{reference}"\n'
        'drift_methods = ["ks", "psi", "chi2"]\n'
        "[models.drift_options.ks]\nthreshold = 0.001\n"
        "[models.drift_options.chi2]\nthreshold = 0.001\n"
    )
    daemon = daemon_factory(config).start()
    for batch in range(3):  # reference-like, record form
        status, body = daemon.call(
            "POST",
            "/api/models/m/predictions",
            as_records(frame(1000, seed=10 + batch), f"ok{batch}-"),
        )
        assert status == 201, body
    status, calm = daemon.call("POST", "/api/models/m/drift-check")
    assert status == 200, calm
    assert calm["drifted_features"] == [] and calm["recommendation"] == "NO_ACTION_NEEDED"
    assert calm["rows"]["current"] == 3000

    status, body = daemon.call(
        "POST",
        "/api/models/m/predictions",
        as_columns(frame(6000, seed=20, shift=1.0, kinds=(0.2, 0.3, 0.5)), "shift-"),
    )
    assert status == 201, body
    status, drifted = daemon.call("POST", "/api/models/m/drift-check")
    assert status == 200, drifted
    assert drifted["drifted_features"] == ["kind", "x2"]
    assert drifted["recommendation"] == "RETRAIN_IMMEDIATELY"
    assert drifted["rows"]["current"] == 9000
    status, text = daemon.call("GET", "/metrics")
    assert metric(text, "mlwarden_drift_detected", model="m") == 1.0
    assert metric(text, "mlwarden_retrain_recommendation", model="m") == 2.0
    assert metric(text, "mlwarden_predictions_total", model="m") == 9000.0
    assert (
        metric(text, "mlwarden_feature_drift_score", model="m", feature="x2", method="psi")
        == drifted["feature_drifts"]["x2"]["methods"]["psi"]["statistic"]
    )

    # One more acknowledged batch, then kill -9 at once: it must not be lost.
    status, body = daemon.call(
        "POST",
        "/api/models/m/predictions",
        as_columns(frame(500, seed=30, shift=1.0, kinds=(0.2, 0.3, 0.5)), "last-"),
    )
    assert status == 201, body
    daemon.kill()
    daemon.start()
    status, history = daemon.call("GET", "/api/models/m/drift-history?days=1")
    assert status == 200, history
    assert [r["recommendation"] for r in history["reports"]] == [
        "NO_ACTION_NEEDED",
        "RETRAIN_IMMEDIATELY",
    ]
    status, again = daemon.call("POST", "/api/models/m/drift-check")
    assert status == 200, again
    assert again["rows"]["current"] == 9500
    assert again["drifted_features"] == ["kind", "x2"]
    assert again["recommendation"] == "RETRAIN_IMMEDIATELY"
    status, text = daemon.call("GET", "/metrics")
    assert metric(text, "mlwarden_drift_detected", model="m") == 1.0
    # Stored ids survive too: a duplicate of an acknowledged record is refused.
    status, body = daemon.call(
        "POST", "/api/models/m/predictions", as_columns(frame(1, seed=31), "last-")
    )
    assert status == 409 and body["error"]["code"] == "duplicate_id"

    # A clean stop and start agree as well (histograms are exact, so PSI is identical).
    assert daemon.stop() == 0
    daemon.start()
    status, final = daemon.call("POST", "/api/models/m/drift-check")
    assert final["rows"]["current"] == 9500
    assert final["drifted_features"] == ["kind", "x2"]
    psi = {
        f: e["methods"]["psi"]["statistic"]
        for f, e in final["feature_drifts"].items()
        if "psi" in e["methods"]
    }
    assert psi == {
        f: e["methods"]["psi"]["statistic"]
        for f, e in again["feature_drifts"].items()
        if "psi" in e["methods"]
    }
    status, history = daemon.call("GET", "/api/models/m/drift-history?days=1")
    assert len(history["reports"]) == 4
