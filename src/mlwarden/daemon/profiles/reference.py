"""References: a model's reference data, loaded once into a persisted reference profile.

A reference is a Parquet, CSV or Arrow IPC (``.arrow``, ``.feather``) file path, an
MLflow artifact URI (``runs:/...``,
``models:/...``, ``mlflow-artifacts:/...``, downloaded with
``mlflow.artifacts.download_artifacts``), or a table uploaded over the API
(``PUT /api/models/{name}/reference``, daemon/ingest/uploads.py), whose bytes are
kept in the row itself (``upload``, sealed) and take precedence over the configured
file. It is read once, off the event loop, into a
``Layout`` (the model's feature schema: numeric features with histogram edges at the
reference quantiles, categorical features with their categories) and a reference
``Profile``, both stored in the ``reference_profiles`` table. At the next start the
stored profile is reused unless the source changed: a file whose size and mtime are
unchanged is not read again; one whose size or mtime changed is hashed and rebuilt only
if its SHA-256 differs. Artifact URIs are immutable in MLflow, so the URI itself is the
fingerprint. The profiling parameters (bins, top-K, sample size, feature lists) are part
of the fingerprint too: changing them rebuilds the profile.

The reference sample (``reference_sample_size`` rows of every numeric feature, 4 MB for
10,000 x 51) is needed only to fit the drift methods, which keep what they need of it.
A watched model's ``Reference`` therefore holds its profile without the sample
(:meth:`Reference.sample_in_store`); fitting reads the profile back from the
``reference_profiles`` row (:meth:`Reference.with_sample`), at the first check and
again whenever the methods are refitted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from ...errors import ConfigError, Conflict
from ..core.config import ModelConfig, MonitoringConfig
from ..core.encryption import SealedBytes
from ..core.memory import release_memory
from ..core.store import Store
from .columns import Columns
from .layout import Layout
from .profile import Profile

__all__ = [
    "REFERENCE_SUFFIXES",
    "UPLOAD_SOURCE",
    "Reference",
    "build_reference",
    "decode_reference",
    "encode_target",
    "load_frame",
    "profile_values",
    "read_reference",
    "reference_table",
    "source_stat",
    "stored_upload",
    "upload_frame",
]

logger = logging.getLogger(__name__)

#: At most this many distinct reference categories per feature are remembered.
MAX_CATEGORIES = 100_000
#: A reference is profiled this many rows at a time (``profile_frame``).
PROFILE_CHUNK_ROWS = 65_536
#: The ``source`` of a reference uploaded over the API (its bytes are in ``upload``).
UPLOAD_SOURCE = "upload"
#: The reference files the daemon reads, by suffix.
REFERENCE_SUFFIXES = (".parquet", ".csv", ".arrow", ".feather")

reference_table = sa.Table(
    "reference_profiles",
    sa.MetaData(),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("params", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    # Sealed with encryption on: the layout holds reference quantiles (min and max are
    # raw values), the profile a sample of the reference's rows.
    sa.Column("layout", SealedBytes("reference_profiles"), nullable=False),
    sa.Column("profile", SealedBytes("reference_profiles"), nullable=False),
    sa.Column("target", SealedBytes("reference_profiles"), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    # An uploaded reference (source UPLOAD_SOURCE): the body as sent, and its media
    # type. In the store, not on one host's disk, so every daemon of a cluster reads it.
    sa.Column("upload", SealedBytes("reference_profiles"), nullable=True),
    sa.Column("upload_type", sa.String(100), nullable=True),
)


@dataclass
class Reference:
    """A model's layout, reference profile and (when the reference has labels) target.

    ``stored`` is set when ``profile`` is kept without its sample: it reads the whole
    profile back from the store (see :meth:`sample_in_store`).
    """

    layout: Layout
    profile: Profile
    rows: int
    target: Profile | None = None  # over ``target_layout``
    stored: Callable[[], Awaitable[Profile]] | None = None

    @property
    def target_layout(self) -> Layout | None:
        return None if self.target is None else self.target.layout

    def sample_in_store(self, store: Store, model: str, sample_size: int) -> Reference:
        """This reference without its sample in memory; the sample stays in ``store``.

        ``store`` must hold this reference's row in ``reference_profiles`` (the caller
        has just read or written it). The target profile (one column) stays whole.
        """
        profile = dataclasses.replace(
            self.profile, keys=np.zeros(0), sample=self.profile.sample[:0].copy()
        )
        loader = _StoredProfile(store, model, self.layout, sample_size)
        return dataclasses.replace(self, profile=profile, stored=loader)

    async def with_sample(self) -> Reference:
        """This reference with its profile's sample, read from the store if not in memory.

        What the drift methods are fitted on. Conflict (409) when the stored profile is
        no longer this reference's (the reference was rebuilt meanwhile).
        """
        if self.stored is None:
            return self
        return dataclasses.replace(self, profile=await self.stored(), stored=None)


@dataclass(frozen=True)
class _StoredProfile:
    """Reads a model's reference profile, sample included, back from the store."""

    store: Store
    model: str
    layout: Layout
    sample_size: int

    async def __call__(self) -> Profile:
        t = reference_table
        query = sa.select(t.c.layout, t.c.profile).where(t.c.model == self.model)
        async with self.store.connect() as conn:
            row = (await conn.execute(query)).first()
        return await asyncio.to_thread(self._decode, row)

    def _decode(self, row: sa.Row[bytes, bytes] | None) -> Profile:
        if row is None or Layout.from_bytes(row.layout).fingerprint != self.layout.fingerprint:
            raise Conflict(
                f"model {self.model!r}: the stored reference profile is no longer the one "
                "in use (the reference was rebuilt); check again"
            )
        return Profile.from_bytes(self.layout, row.profile, self.sample_size)


def is_artifact_uri(source: str) -> bool:
    scheme = source.split(":", 1)[0] if ":" in source else ""
    return len(scheme) > 1 and scheme != "file"


def source_stat(source: str) -> tuple[int, int]:
    """(size, mtime_ns) of a local reference file; (0, 0) for an artifact URI."""
    if is_artifact_uri(source):
        return 0, 0
    st = os.stat(_local_path(source))
    return st.st_size, st.st_mtime_ns


def source_sha256(source: str) -> str:
    if is_artifact_uri(source):
        return hashlib.sha256(source.encode()).hexdigest()
    digest = hashlib.sha256()
    with open(_local_path(source), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def params_fingerprint(
    model: ModelConfig, monitoring: MonitoringConfig, source: str | None = None
) -> str:
    """A hash of everything besides the data that shapes the reference profile.

    ``source`` replaces ``model.reference`` (``UPLOAD_SOURCE`` for an uploaded one).
    """
    params = {
        "source": model.reference if source is None else source,
        "features": list(model.features),
        "categorical": list(model.categorical),
        "task": model.task,
        "prediction": model.prediction_column,
        "label": model.label_column,
        "scores": [model.probability_column, model.probabilities_prefix],
        "bins": monitoring.histogram_bins,
        "top_k": monitoring.top_k_categories,
        "sample": monitoring.reference_sample_size,
        "format": 1,
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]


def _local_path(source: str) -> Path:
    return Path(source[len("file://") :] if source.startswith("file://") else source)


def load_frame(
    source: str, tracking_uri: str | None = None, columns: Sequence[str] | None = None
) -> Any:
    """Read a reference into a pandas DataFrame (blocking: call it in a thread).

    ``columns``: read only those of them that the file has (None: every column).
    Parquet columns are converted one block each, not consolidated into one 2-D block
    (which is one more copy of the data).
    """
    import pandas as pd

    path = _local_path(source)
    with tempfile.TemporaryDirectory(prefix="mlwarden-reference-") as tmp:
        if is_artifact_uri(source):
            import mlflow.artifacts

            path = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri
                )
            )
            if path.is_dir():
                found = sorted(p for p in path.rglob("*") if p.suffix in REFERENCE_SUFFIXES)
                if len(found) != 1:
                    raise ConfigError(
                        f"reference {source!r}: expected one .parquet, .csv, .arrow or "
                        f".feather file in the artifact, found {len(found)}"
                    )
                path = found[0]
        if path.suffix == ".parquet":
            if columns is not None:
                import pyarrow.parquet as pq

                present = set(pq.read_schema(path).names)
                columns = [c for c in columns if c in present]
            return pd.read_parquet(
                path,
                columns=columns,
                to_pandas_kwargs={"split_blocks": True},
            )
        if path.suffix == ".csv":
            wanted = None if columns is None else set(columns)
            return pd.read_csv(path, usecols=None if wanted is None else wanted.__contains__)
        if path.suffix in (".arrow", ".feather"):
            import pyarrow.feather as feather

            table = feather.read_table(path, memory_map=True)  # columns mapped, not read
            if columns is not None:
                table = table.select([c for c in columns if c in table.column_names])
            return table.to_pandas(split_blocks=True)
        raise ConfigError(
            f"reference {source!r}: expected a .parquet, .csv, .arrow or .feather file"
        )


async def stored_upload(store: Store, model: str, fingerprint: str) -> tuple[bytes, str] | None:
    """The uploaded reference body of ``model`` and its media type, when it is the one
    of layout ``fingerprint`` (None: the reference in force is not an upload)."""
    t = reference_table
    query = sa.select(t.c.sha256, t.c.upload, t.c.upload_type).where(
        t.c.model == model, t.c.source == UPLOAD_SOURCE
    )
    async with store.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.upload is None or fingerprint[16:] != row.sha256[:16]:
        return None
    return row.upload, row.upload_type


def upload_frame(data: bytes, media_type: str) -> Any:
    """An uploaded reference body (checked when it was stored) as a DataFrame (blocking)."""
    import pyarrow as pa

    if media_type == "text/csv":
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(pa.BufferReader(data))
    elif media_type == "application/vnd.apache.parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(pa.BufferReader(data))
    else:
        with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
            table = reader.read_all()
    return table.to_pandas(split_blocks=True, self_destruct=True)


def build_reference(
    frame: Any,
    model: ModelConfig,
    monitoring: MonitoringConfig,
    fingerprint: str,
    seed: int = 0,
) -> Reference:
    """The layout and reference profile of ``frame`` (blocking: call it in a thread)."""
    import pandas as pd

    where = f"models[{model.name}].reference"
    special = {model.prediction_column, model.label_column}
    if model.task == "classification":  # a classifier's scores are not features (api.md)
        special |= {model.probability_column} | {
            c for c in frame.columns if str(c).startswith(model.probabilities_prefix)
        }
    features = list(model.features) or [c for c in frame.columns if c not in special]
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ConfigError(f"{where}: the reference has no column {missing[0]!r}")
    categorical = [
        f
        for f in features
        if f in model.categorical
        or not (
            pd.api.types.is_numeric_dtype(frame[f]) and not pd.api.types.is_bool_dtype(frame[f])
        )
    ]
    numeric = [f for f in features if f not in categorical]
    prediction = ""
    if model.prediction_column in frame.columns:
        prediction = model.prediction_column
        (categorical if model.task == "classification" else numeric).append(prediction)
    layout = _layout(frame, numeric, categorical, monitoring, fingerprint, prediction)
    rng = np.random.default_rng(seed)
    profile = profile_frame(frame, layout, monitoring.reference_sample_size, rng)
    target = None
    if model.label_column in frame.columns:
        label = model.label_column
        kinds = ([], [label]) if model.task == "classification" else ([label], [])
        target_layout = _layout(frame, kinds[0], kinds[1], monitoring, fingerprint, "")
        target = profile_frame(frame, target_layout, monitoring.reference_sample_size, rng)
    return Reference(layout, profile, len(frame), target)


def _layout(
    frame: Any,
    numeric: list[str],
    categorical: list[str],
    monitoring: MonitoringConfig,
    fingerprint: str,
    prediction: str,
) -> Layout:
    quantiles = np.linspace(0.0, 1.0, monitoring.histogram_bins + 1)
    edges = np.zeros((len(numeric), len(quantiles)))
    for j, name in enumerate(numeric):
        values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[np.isfinite(values)]
        if len(values):
            edges[j] = np.quantile(values, quantiles)
    categories = []
    for name in categorical:
        counts = frame[name].dropna().astype(str).value_counts(sort=True)
        categories.append(tuple(counts.index[:MAX_CATEGORIES]))
    return Layout(
        numeric=tuple(numeric),
        categorical=tuple(categorical),
        edges=edges,
        categories=tuple(categories),
        top_k=monitoring.top_k_categories,
        fingerprint=fingerprint,
        prediction=prediction,
    )


def layout_without_reference(model: ModelConfig, monitoring: MonitoringConfig) -> Layout | None:
    """The schema from ``features``/``categorical`` when there is no reference (or None)."""
    if not model.features:
        return None
    categorical = tuple(f for f in model.features if f in model.categorical)
    numeric = tuple(f for f in model.features if f not in categorical)
    return Layout(
        numeric=numeric,
        categorical=categorical,
        edges=None,
        categories=tuple(() for _ in categorical),
        top_k=monitoring.top_k_categories,
        fingerprint="config:" + params_fingerprint(model, monitoring),
    )


def frame_columns(frame: Any, layout: Layout) -> Columns:
    """A DataFrame's columns under ``layout`` (blocking). Non-numeric numeric data is an error."""
    import pandas as pd

    n = len(frame)
    numeric = np.empty((n, len(layout.numeric)))
    nulls = np.zeros(numeric.shape, dtype=bool)
    for j, name in enumerate(layout.numeric):
        column = frame[name]
        if not pd.api.types.is_numeric_dtype(column) and not column.isna().all():
            converted = pd.to_numeric(column, errors="coerce")
            if (converted.isna() & column.notna()).any():
                raise ConfigError(f"column {name!r}: expected numbers, got {column.dtype}")
            column = converted
        if not pd.api.types.is_float_dtype(column) or isinstance(column.dtype, pd.Float64Dtype):
            # Missing values of object and nullable columns are nulls; a NumPy float
            # column cannot tell a null from a NaN, so its missing values count as NaN.
            nulls[:, j] = column.isna().to_numpy()
        numeric[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
    codes = np.empty((n, len(layout.categorical)), dtype=np.int32)
    for j, name in enumerate(layout.categorical):
        codes[:, j] = layout.encode(j, frame[name].to_numpy(dtype=object))
    return Columns(numeric, codes, nulls if nulls.any() else None)


def profile_frame(
    frame: Any, layout: Layout, sample_size: int, rng: np.random.Generator
) -> Profile:
    """The profile of a DataFrame, built ``PROFILE_CHUNK_ROWS`` rows at a time (blocking).

    Profiling copies the rows into a float matrix and makes a few temporaries of its
    size; in chunks they stay small (1M x 100 references: 0.2 GB instead of ~4 GB).
    Merging chunk profiles is exact for every count, min and max, equal to rounding
    for the moments (Chan et al.), and the bottom-k sample is the same rows: the keys
    are drawn from ``rng`` in the same order as in one piece.
    """
    n = len(frame)
    if n <= PROFILE_CHUNK_ROWS:
        return Profile.from_columns(layout, frame_columns(frame, layout), sample_size, rng)
    profile = Profile(layout, sample_size)
    for start in range(0, n, PROFILE_CHUNK_ROWS):
        chunk = frame_columns(frame.iloc[start : start + PROFILE_CHUNK_ROWS], layout)
        profile.merge(Profile.from_columns(layout, chunk, sample_size, rng))
    return profile


def read_reference(
    mc: ModelConfig, monitoring: MonitoringConfig, tracking_uri: str, fingerprint: str
) -> Reference:
    """Read and profile ``mc.reference`` (blocking), then give the memory back."""
    columns = None
    if mc.features:
        columns = [*dict.fromkeys((*mc.features, mc.prediction_column, mc.label_column))]
    frame = load_frame(mc.reference, tracking_uri, columns)
    try:
        return build_reference(frame, mc, monitoring, fingerprint)
    finally:
        del frame
        release_memory()


def profile_values(reference: Reference) -> dict[str, Any]:
    """The columns of a ``reference_profiles`` row that hold ``reference``'s profile."""
    return {
        "rows": reference.rows,
        "layout": reference.layout.to_bytes(),
        "profile": reference.profile.to_bytes(),
        "target": None if reference.target is None else encode_target(reference.target),
    }


def encode_target(target: Profile) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(
        buffer,
        layout=np.frombuffer(target.layout.to_bytes(), np.uint8),
        profile=np.frombuffer(target.to_bytes(), np.uint8),
    )
    return buffer.getvalue()


def decode_reference(row: sa.Row[*tuple[Any, ...]], sample_size: int) -> Reference:
    """The reference of a ``reference_profiles`` row (``layout``, ``profile``, ``target``)."""
    import io

    layout = Layout.from_bytes(row.layout)
    profile = Profile.from_bytes(layout, row.profile, sample_size)
    target = None
    if row.target is not None:
        with np.load(io.BytesIO(row.target)) as data:
            target_layout = Layout.from_bytes(data["layout"].tobytes())
            target = Profile.from_bytes(target_layout, data["profile"].tobytes(), sample_size)
    return Reference(layout, profile, int(row.rows), target)
