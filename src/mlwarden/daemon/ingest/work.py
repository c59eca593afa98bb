"""An item of the ingest writer (daemon/ingest/ledger.py), and folding into open buckets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from ..profiles.profile import Profile
from .prepare import BucketKey
from .state import ModelState

__all__ = ["Work", "fold"]

T = TypeVar("T")


@dataclass
class Work(Generic[T]):
    """One item for the writer: ``write`` in the shared transaction, ``after`` its commit.

    The writer runs ``after`` of an item before it starts the next one, so what a
    committed item folds into the open buckets is there before any later write.
    """

    write: Callable[[AsyncConnection], Awaitable[T]]
    after: Callable[[T], None]
    exclusive: bool = False
    future: asyncio.Future[T] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def fold(state: ModelState, key: BucketKey, profile: Profile) -> None:
    """Fold one journal row's ``profile`` into its open bucket."""
    current = state.open.get(key)
    state.open[key] = profile if current is None else current.fold(profile)
    state.journalled[key] = state.journalled.get(key, 0) + 1
