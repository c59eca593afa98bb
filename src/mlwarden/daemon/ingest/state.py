"""What the ingest service holds of one watched model: its layout, reference, open buckets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..core.config import ModelConfig
from ..profiles.layout import Layout
from ..profiles.profile import Profile
from ..profiles.reference import Reference
from .bucket_window import BucketWindow
from .prepare import BucketKey

__all__ = ["ModelState", "OpenPart"]


@dataclass
class OpenPart:
    """Another daemon's open bucket, folded from its journal rows (daemon/ingest/shared.py)."""

    seqs: set[int]
    profile: Profile


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event


@dataclass
class ModelState:
    """What the ingest service holds of one watched model."""

    config: ModelConfig
    layout: Layout = field(default_factory=lambda: Layout((), (), fingerprint="open"))
    open_schema: bool = True
    reference: Reference | None = None
    reference_status: str = "loading"
    #: The SHA-256 of the uploaded reference in force ("": the configured one, or none).
    uploaded: str = ""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Open buckets; their samples change in place as batches fold in (Profile.fold).
    open: dict[BucketKey, Profile] = field(default_factory=dict)
    # Journal rows folded into each open bucket (a flush checks it deletes as many).
    journalled: dict[BucketKey, int] = field(default_factory=dict)
    generation: int = 0  # bumped when closed buckets are written
    # Writer items under way that move open rows into the store (a flush, a takeover)
    # and how many have ended: a window read spanning one is read again (Ledger.window).
    moving: int = 0
    moves: int = 0
    settled: asyncio.Event = field(default_factory=lambda: _set(asyncio.Event()))
    # Windows of closed buckets by version filter (bucket_window.py), moved under the lock
    # (window.py).
    windows: dict[str | None, BucketWindow] = field(default_factory=dict)
    window_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # On a shared store: other daemons' open buckets by (writer, version, bucket start).
    others: dict[tuple[str, str, float], OpenPart] = field(default_factory=dict)
