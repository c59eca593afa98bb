"""AsyncClient: the same buffer and sender thread, with awaitable calls for asyncio code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._core import Client, ClientStats
from ._tables import entry, label_entry

__all__ = ["AsyncClient"]

_POLL_SECONDS = 0.005


class AsyncClient:
    """``Client`` for asyncio services: the calls never block the event loop.

    Takes ``Client``'s arguments. ``await log_predictions(...)`` appends to the buffer;
    when it is full, ``on_full="block"`` waits for room without blocking the loop (at
    most ``block_timeout`` seconds), ``"drop"`` drops and counts. ``await flush()`` and
    ``await close()`` (or ``async with``) wait in a thread.
    """

    def __init__(self, url: str = "http://127.0.0.1:9741", **options: Any) -> None:
        self._on_full = options.get("on_full", "block")
        self._block_timeout = options.get("block_timeout")
        # The sender thread decides; the calls themselves never wait on its lock long.
        self._client = Client(url, **{**options, "on_full": "drop"})
        self._client.on_full = "drop"

    async def log_predictions(
        self,
        model: str,
        data: Any,
        *,
        ids: Any = None,
        version: str | None = None,
        timestamps: Any = None,
        predictions: Any = None,
        probabilities: Any = None,
        classes: Sequence[Any] | None = None,
    ) -> bool:
        """As ``Client.log_predictions``; a full buffer is waited on without blocking."""
        import time

        item = entry(
            model,
            data,
            ids=ids,
            version=version,
            ts=time.time() if timestamps is None else timestamps,
            predictions=predictions,
            feature_names=self._client.feature_names,
            probabilities=probabilities,
            classes=classes,
        )
        return await self._put(item)

    async def log_labels(self, model: str, ids: Any, labels: Any) -> bool:
        """As ``Client.log_labels``."""
        return await self._put(label_entry(model, ids, labels))

    async def _put(self, item: Any) -> bool:
        import asyncio  # not at import: a synchronous service does not pay for asyncio

        client = self._client
        if self._on_full == "block" and item.rows <= client.max_buffer_rows:
            loop = asyncio.get_running_loop()
            deadline = None if self._block_timeout is None else loop.time() + self._block_timeout
            while client._held + item.rows > client.max_buffer_rows:
                if deadline is not None and loop.time() >= deadline:
                    break
                await asyncio.sleep(_POLL_SECONDS)
        return client._put(item)

    async def upload_reference(self, model: str, data: Any) -> dict[str, Any]:
        """As ``Client.upload_reference``, in a thread."""
        import asyncio

        return await asyncio.to_thread(self._client.upload_reference, model, data)

    async def remove_reference(self, model: str) -> dict[str, Any]:
        """As ``Client.remove_reference``, in a thread."""
        import asyncio

        return await asyncio.to_thread(self._client.remove_reference, model)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait (in a thread) until everything buffered is acknowledged."""
        import asyncio

        return await asyncio.to_thread(self._client.flush, timeout)

    async def close(self, timeout: float = 30.0) -> bool:
        """Flush, then stop the sender (in a thread)."""
        import asyncio

        return await asyncio.to_thread(self._client.close, timeout)

    def stats(self) -> ClientStats:
        return self._client.stats()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
