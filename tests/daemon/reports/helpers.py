"""A model with a reference and a window, shifted or not, built through the real API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = ("x1", "x2", "x3")


def frame(n: int, seed: int, shift: float = 0.0, kinds=(0.5, 0.3, 0.2)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {name: rng.normal(size=n) for name in FEATURES}
    data["x2"] = data["x2"] + shift
    data["kind"] = rng.choice(["a", "b", "c"], n, p=list(kinds))
    data["prediction"] = rng.normal(size=n)
    return pd.DataFrame(data)


def as_columns(data: pd.DataFrame, prefix: str) -> dict:
    return {
        "columns": {
            "id": [f"{prefix}{i}" for i in range(len(data))],
            "features": {name: data[name].tolist() for name in (*FEATURES, "kind")},
            "prediction": data["prediction"].tolist(),
        }
    }


def model_config(tmp_path: Path, extra: str = "") -> str:
    reference = tmp_path / "reference.csv"
    frame(5000, seed=1).to_csv(reference, index=False)
    return (
        "[monitoring]\ninterval_seconds = 3600\ndrift_threshold = 0.2\n"
        f'[[models]]\nname = "m"\nreference = "{reference}"\n'
        'drift_methods = ["ks", "psi", "chi2"]\n'
        "[models.drift_options.ks]\nthreshold = 0.001\n"
        "[models.drift_options.chi2]\nthreshold = 0.001\n" + extra
    )


async def ingest_and_check(client, *, shifted: bool, headers=None) -> dict:
    """Ingest 3000 rows (x2 shifted by 1.5 and the categories swapped when ``shifted``)
    and run a drift check; its report."""
    data = (
        frame(3000, seed=20, shift=1.5, kinds=(0.2, 0.3, 0.5)) if shifted else frame(3000, seed=20)
    )
    resp = await client.post(
        "/api/models/m/predictions",
        json=as_columns(data, f"p{int(shifted)}-"),
        headers=headers or {},
    )
    assert resp.status == 201, await resp.text()
    resp = await client.post("/api/models/m/drift-check", headers=headers or {})
    assert resp.status == 200, await resp.text()
    return await resp.json()
