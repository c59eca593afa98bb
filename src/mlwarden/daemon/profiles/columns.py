"""One batch of rows, column-wise, and its journal blob (daemon/ingest/ledger.py)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

__all__ = ["Columns"]

_COLUMNS_MAGIC = b"MLWCOL1\n"


@dataclass
class Columns:
    """One batch of rows, column-wise: numeric ``(n, F)`` float64 and categorical codes."""

    numeric: np.ndarray  # (n, F) float64; a null is NaN here and True in ``nulls``
    codes: np.ndarray  # (n, C) int32
    nulls: np.ndarray | None = None  # (n, F) bool, None when there are no nulls

    @property
    def rows(self) -> int:
        return int(self.numeric.shape[0])

    def take(self, index: np.ndarray) -> Columns:
        nulls = None if self.nulls is None else self.nulls[index]
        return Columns(self.numeric[index], self.codes[index], nulls)

    def to_bytes(self) -> bytes:
        """The journal blob: a JSON header of names, dtypes and shapes, then raw arrays.

        (Not ``.npz``: a batch is journaled once and read back only at a restart, and
        zipping it cost about as much as profiling it. ``from_bytes`` reads both.)
        """
        arrays = {"numeric": self.numeric, "codes": self.codes}
        if self.nulls is not None:
            arrays["nulls"] = self.nulls
        header = json.dumps([[k, a.dtype.str, list(a.shape)] for k, a in arrays.items()])
        head = header.encode()
        return b"".join(
            [_COLUMNS_MAGIC, len(head).to_bytes(4, "little"), head]
            + [np.ascontiguousarray(a).tobytes() for a in arrays.values()]
        )

    @staticmethod
    def count(blob: bytes) -> int:
        """The rows of a journal blob, read from its header alone."""
        if not blob.startswith(_COLUMNS_MAGIC):
            return Columns.from_bytes(blob).rows
        start = len(_COLUMNS_MAGIC) + 4
        end = start + int.from_bytes(blob[start - 4 : start], "little")
        shapes = {name: shape for name, _, shape in json.loads(blob[start:end])}
        return int(shapes["numeric"][0])

    @classmethod
    def from_bytes(cls, blob: bytes) -> Columns:
        if not blob.startswith(_COLUMNS_MAGIC):  # written before the raw layout: .npz
            with np.load(io.BytesIO(blob), allow_pickle=False) as data:
                return cls(data["numeric"], data["codes"], data.get("nulls"))
        start = len(_COLUMNS_MAGIC) + 4
        end = start + int.from_bytes(blob[start - 4 : start], "little")
        arrays = {}
        for name, dtype, shape in json.loads(blob[start:end]):
            count = int(np.prod(shape))
            array = np.frombuffer(blob, dtype, count, end) if count else np.empty(0, dtype)
            arrays[name] = array.reshape(shape).copy()
            end += array.nbytes
        return cls(arrays["numeric"], arrays["codes"], arrays.get("nulls"))
