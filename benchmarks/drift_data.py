"""The synthetic data of benchmarks/drift.py: a reference and a current window, known truth.

Imported by drift.py and by every tool's subprocess (the peers' virtual environments
too), so it needs only the standard library, numpy and, for ``frames``, pandas.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def make_data(directory: Path, ref_rows: int, cur_rows: int, numeric: int, categorical: int,
              seed: int = 20261126) -> dict[str, Any]:  # fmt: skip
    """Write the reference and current windows to ``directory``; return the metadata.

    Numeric feature j has one of five shapes (normal, lognormal, uniform, Student t(5),
    a two-component mixture); every tenth one (j % 10 == 9) is shifted in the current
    window, alternately by half a standard deviation in mean and by a factor 1.5 in
    spread. Categorical feature k has 4 + 2k categories with Zipf-like shares; the last
    one moves a fifth of the top category's share to the rarest category.
    """
    rng = np.random.default_rng(seed)
    names = [f"num_{j:03d}" for j in range(numeric)]
    ref = np.empty((ref_rows, numeric))
    cur = np.empty((cur_rows, numeric))
    truth: dict[str, bool] = {}
    for j in range(numeric):
        draw = _shape(j % 5)
        ref[:, j] = draw(rng, ref_rows)
        values = draw(rng, cur_rows)
        shifted = j % 10 == 9
        if shifted:
            sd = float(ref[:, j].std())
            if (j // 10) % 2 == 0:
                values = values + 0.5 * sd
            else:
                centre = float(np.median(ref[:, j]))
                values = centre + 1.5 * (values - centre)
        cur[:, j] = values
        truth[names[j]] = shifted
    cat_names = [f"cat_{k}" for k in range(categorical)]
    categories: dict[str, list[str]] = {}
    ref_cat = np.empty((ref_rows, categorical), dtype=np.int16)
    cur_cat = np.empty((cur_rows, categorical), dtype=np.int16)
    for k, name in enumerate(cat_names):
        size = 4 + 2 * k
        shares = 1.0 / np.arange(1, size + 1)
        shares /= shares.sum()
        moved = shares.copy()
        shifted = k == categorical - 1
        if shifted:
            moved[0] -= 0.2 * shares[0]
            moved[-1] += 0.2 * shares[0]
        categories[name] = [f"{name}_v{i}" for i in range(size)]
        ref_cat[:, k] = rng.choice(size, ref_rows, p=shares)
        cur_cat[:, k] = rng.choice(size, cur_rows, p=moved)
        truth[name] = shifted
    directory.mkdir(parents=True, exist_ok=True)
    for label, array in (("ref_num", ref), ("cur_num", cur), ("ref_cat", ref_cat),
                         ("cur_cat", cur_cat)):  # fmt: skip
        np.save(directory / f"{label}.npy", array)
    meta = {"numeric": names, "categorical": cat_names, "categories": categories,
            "truth": truth, "ref_rows": ref_rows, "cur_rows": cur_rows}  # fmt: skip
    (directory / "meta.json").write_text(json.dumps(meta))
    return meta


def _shape(kind: int):
    if kind == 0:
        return lambda rng, n: rng.normal(5.0, 2.0, n)
    if kind == 1:
        return lambda rng, n: rng.lognormal(0.0, 0.75, n)
    if kind == 2:
        return lambda rng, n: rng.uniform(-3.0, 3.0, n)
    if kind == 3:
        return lambda rng, n: rng.standard_t(5, n)
    return lambda rng, n: np.where(rng.random(n) < 0.3, rng.normal(-2, 0.5, n), rng.normal(1, 1, n))


def load(directory: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    meta = json.loads((directory / "meta.json").read_text())
    arrays = [np.load(directory / f"{n}.npy") for n in ("ref_num", "cur_num", "ref_cat", "cur_cat")]
    return (meta, *arrays)


def frames(directory: Path):
    """Reference and current pandas DataFrames (categoricals as strings), for the peers."""
    import pandas as pd

    meta, ref_num, cur_num, ref_cat, cur_cat = load(directory)

    def frame(num: np.ndarray, cat: np.ndarray):
        data: dict[str, Any] = {n: num[:, j] for j, n in enumerate(meta["numeric"])}
        for k, name in enumerate(meta["categorical"]):
            labels = np.array(meta["categories"][name], dtype=object)
            data[name] = labels[cat[:, k]]
        return pd.DataFrame(data)

    return meta, frame(ref_num, ref_cat), frame(cur_num, cur_cat)
