"""The layout of a model's profiles: its columns, histogram edges and categories.

A ``Layout`` is fixed by the model's reference (daemon/profiles/reference.py): numeric
features with histogram edges at the reference quantiles, categorical features with
their reference categories. Every ``Profile`` of the model is built over it.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["NULL", "OTHER", "UNSEEN", "Layout", "bin_map", "pack_arrays", "unpack_arrays"]

#: The bucket that holds every category outside the reference's top K.
OTHER = "__other__"

#: Codes of categorical values: >= 0 index into ``Layout.categories``; these are not.
UNSEEN = -1
NULL = -2


@dataclass(frozen=True)
class Layout:
    """The columns a model's profiles are built over, fixed by its reference.

    ``edges`` has one row of ``B + 1`` ascending edges per numeric feature (None when
    there is no reference: moments and the sample are still kept). ``categories[i]``
    lists every reference category of categorical feature ``i`` (most frequent first,
    at most ``max_categories``); the first ``top_k`` of them are counted one by one.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    edges: np.ndarray | None = None
    categories: tuple[tuple[str, ...], ...] = ()
    top_k: int = 50
    fingerprint: str = ""
    #: The column (numeric or categorical) that holds the model's prediction, if profiled.
    prediction: str = ""

    @property
    def features(self) -> tuple[str, ...]:
        """The input features (every column except the prediction)."""
        return tuple(c for c in (*self.numeric, *self.categorical) if c != self.prediction)

    @property
    def bins(self) -> int:
        return 0 if self.edges is None else self.edges.shape[1] - 1

    @functools.cached_property
    def bin_maps(self) -> tuple[tuple[np.ndarray, np.ndarray | None], ...]:
        """Per numeric feature: its strictly increasing edges and where tied bins go.

        The second item is None when the reference edges have no ties (the histogram is
        used as it is); see ``_dedupe_bins``. Computed once per layout: a drift check
        reads every numeric feature's histogram. (``cached_property`` writes the
        instance's ``__dict__`` directly, which a frozen dataclass allows.)
        """
        if self.edges is None:
            return ()
        return tuple(bin_map(row) for row in self.edges)

    def counted(self, i: int) -> tuple[str, ...]:
        """The categories of categorical feature ``i`` counted one by one, then ``__other__``."""
        return (*self.categories[i][: self.top_k], OTHER)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "categories": [list(c) for c in self.categories],
            "top_k": self.top_k,
            "fingerprint": self.fingerprint,
            "prediction": self.prediction,
        }

    def to_bytes(self) -> bytes:
        arrays = {"meta": np.frombuffer(json.dumps(self.to_dict()).encode(), dtype=np.uint8)}
        if self.edges is not None:
            arrays["edges"] = self.edges
        return pack_arrays(arrays)

    @classmethod
    def from_bytes(cls, blob: bytes) -> Layout:
        arrays = unpack_arrays(blob)
        meta = json.loads(arrays["meta"].tobytes())
        return cls(
            numeric=tuple(meta["numeric"]),
            categorical=tuple(meta["categorical"]),
            edges=arrays.get("edges"),
            categories=tuple(tuple(c) for c in meta["categories"]),
            top_k=meta["top_k"],
            fingerprint=meta["fingerprint"],
            prediction=meta.get("prediction", ""),
        )

    def encode(self, i: int, values: np.ndarray | Sequence[object]) -> np.ndarray:
        """Codes of raw categorical values of feature ``i`` (vectorised through pandas)."""
        import pandas as pd

        series = pd.Series(values, dtype=object)
        nulls = series.isna().to_numpy()
        index = pd.Index(self.categories[i] if self.categories else (), dtype=object)
        codes = index.get_indexer(series.astype(str)).astype(np.int32)
        codes[nulls] = NULL
        return codes


def bin_map(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Strictly increasing reference edges, and the bin each tied bin's counts go to.

    Tied reference quantiles give zero-width bins; their counts (only values equal to
    the tie land there) go to the bin that starts at the tied value. The map is None
    when there is no tie; an empty one marks a constant reference feature.
    """
    unique = np.unique(edges)
    if len(unique) == len(edges):
        return edges, None
    if len(unique) == 1:
        return unique, np.zeros(0, dtype=np.int64)
    target = np.clip(np.searchsorted(unique, edges[:-1], side="right") - 1, 0, len(unique) - 2)
    return unique, target


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """Named arrays as one uncompressed ``.npz`` blob (no pickles)."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    """The named arrays of a ``pack_arrays`` blob."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
