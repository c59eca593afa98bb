"""The ``jsonl_file`` notifier: one JSON object per line, appended to a file."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path

from mlwarden.types import Notification


class JsonlFileNotifier:
    """Appends each notification to ``path`` as one line of JSON.

    Parameters
    ----------
    path:
        The file to append to; its directory is created when missing.
    fsync:
        Flush the line to disk before ``send`` returns (default true), so a line the
        outbox counted as delivered survives a crash.
    """

    name = "jsonl_file"

    def __init__(self, *, path: str, fsync: bool = True) -> None:
        if not isinstance(path, str) or not path:
            raise ValueError("option 'path' must be a non-empty string")
        if not isinstance(fsync, bool):
            raise ValueError(f"option 'fsync' must be true or false, got {fsync!r}")
        self.path = Path(path)
        self.fsync = fsync

    async def send(self, notification: Notification) -> None:
        line = json.dumps(dataclasses.asdict(notification), sort_keys=True, default=str)
        # File I/O off the event loop; raising here lets the outbox retry.
        await asyncio.to_thread(self._append, line + "\n")

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            if self.fsync:
                fh.flush()
                os.fsync(fh.fileno())
