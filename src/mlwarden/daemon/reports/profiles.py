"""Profile summaries per window: each stored bucket profile, one row per feature.

A bucket is decoded with its model's layout (the reference's, matched by fingerprint)
without its sample: only counts and moments are read. A bucket whose layout is no
longer known (the reference changed since) gives one row with its row count only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ..ingest.tables import profile_table
from ..profiles.blobs import decode_bucket
from ..profiles.layout import Layout

__all__ = ["ProfileSummaries"]

_S, _F, _I = pa.string(), pa.float64(), pa.int64()


class ProfileSummaries:
    """Turns ``profile_buckets`` rows into summary rows, given the known layouts."""

    table = profile_table
    columns: tuple[tuple[str, pa.DataType], ...] = (
        ("model", _S), ("version", _S), ("bucket_start", _F), ("rows", _I), ("feature", _S),
        ("kind", _S), ("count", _I), ("missing", _I), ("mean", _F), ("std", _F),
        ("min", _F), ("max", _F),
    )  # fmt: skip

    def __init__(self, layouts: Mapping[str, Layout]) -> None:
        #: Layouts by fingerprint.
        self.layouts = dict(layouts)

    @staticmethod
    def unused(row: Mapping[str, Any]) -> tuple[Any, ...]:
        """The bucket alone (its layout unknown): model, version, start and rows."""
        return (row["model"], row["version"], row["bucket_start"], row["rows"],
                None, None, None, None, None, None, None, None)  # fmt: skip

    def rows(self, row: Mapping[str, Any]) -> Sequence[tuple[Any, ...]]:
        layout = self.layouts.get(row["layout"])
        if layout is None:
            return [self.unused(row)]
        profile = decode_bucket(layout, row["profile"], 0, with_sample=False)
        head = (row["model"], row["version"], row["bucket_start"], int(row["rows"]))
        out: list[tuple[Any, ...]] = []
        for i, name in enumerate(layout.numeric):
            count = int(profile.count[i])
            var = float(profile.m2[i] / (count - 1)) if count > 1 else math.nan
            has = count > 0
            out.append(
                (*head, name, "numeric", count, int(profile.nulls[i] + profile.nans[i]),
                 float(profile.mean[i]) if has else None, math.sqrt(var) if count > 1 else None,
                 float(profile.minimum[i]) if has else None,
                 float(profile.maximum[i]) if has else None)
            )  # fmt: skip
        for i, name in enumerate(layout.categorical):
            counted = int(profile.cat_counts[i].sum())
            out.append(
                (*head, name, "categorical", counted, int(profile.cat_nulls[i]),
                 None, None, None, None)
            )  # fmt: skip
        return out
