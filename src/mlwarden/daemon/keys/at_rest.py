"""Encryption at rest on a daemon: the key ring in use and the objects it seals.

The Warden (daemon/warden.py) holds one :class:`EncryptionAtRest` as ``warden.at_rest``.
At start it makes the daemon's sealer the process's (MLflow's artifact repository and
trainer subprocesses open artifacts through it) and checks that every stored object is
sealed by a key of the ring; while the daemon runs it answers ``/api/system/keys``,
re-reads the ring, retires keys no object uses, rotates them in the background and
records every object that could not be opened. The sealing itself is core's
(core/encryption.py, core/keys.py, core/rotation.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from ...errors import ConfigError, Conflict, DecryptionFailed
from ..core.artifacts import register_scheme
from ..core.context import Context
from ..core.encryption import set_current_sealer
from ..core.keys import KEY_FILE_ENV, Keyring, load_keyring
from ..core.rotation import (
    Inventory,
    KeyRotation,
    check_keys,
    inventory,
    name_stored_row,
    sealed_columns,
)

__all__ = ["EncryptionAtRest"]

logger = logging.getLogger(__name__)


class EncryptionAtRest:
    """The daemon's key ring and what it seals: status, reload, retirement, rotation."""

    def __init__(self, context: Context) -> None:
        self.context = context
        #: The last key rotation started on this daemon (its progress), if any.
        self.rotation: KeyRotation | None = None
        #: The daemon's loop, to which a failure reported from another thread is handed.
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Make the daemon's sealer the process's (called on the loop, before the store opens)."""
        self.loop = asyncio.get_running_loop()
        set_current_sealer(self.context.sealer)
        register_scheme()
        key_file = self.context.config.encryption.key_file
        if key_file:
            # Trainer subprocesses and MLflow read the artifacts through the same ring.
            os.environ[KEY_FILE_ENV] = str(Path(key_file).resolve())

    async def check_keys(self) -> None:
        """ConfigError when a stored object is sealed by a key the ring lacks."""
        context = self.context
        await check_keys(context.store, context.sealer, self.sealed_columns(), self.artifact_root)

    def stop(self) -> None:
        set_current_sealer(None)

    def sealed_columns(self) -> list[Any]:
        """The store's sealed columns (outbox, journal, batches, profiles, references,
        outcomes and their data keys, the id key)."""
        from ..alerts.outbox_records import outbox_table
        from ..ingest.ids import id_key_table, outcome_keys_table
        from ..ingest.tables import (
            journal_table,
            outcomes_table,
            prediction_batches_table,
            profile_table,
        )
        from ..profiles.reference import reference_table

        tables = [outbox_table, journal_table, prediction_batches_table, profile_table]
        sealed = [reference_table, outcomes_table, outcome_keys_table, id_key_table]
        return sealed_columns([*tables, *sealed])

    @property
    def artifact_root(self) -> Path | None:
        """The encrypted MLflow artifact directory (None with encryption off)."""
        context = self.context
        return Path(context.config.artifact_location) if context.sealer.enabled else None

    async def status(self) -> dict[str, Any]:
        """Keys in the ring, sealed objects per key, the last rotation's progress."""
        ring = self.context.sealer.keyring
        inv: Inventory = await inventory(
            self.context.store, self.sealed_columns(), self.artifact_root
        )
        return {
            "enabled": ring is not None,
            "source": ring.source if ring else "",
            "active": ring.active if ring else "",
            "keys": {k: inv.counts.get(k, 0) for k in (ring.ids if ring else [])},
            "unknown_keys": {k: n for k, n in inv.counts.items() if not ring or k not in ring.keys},
            "clear_objects": inv.clear,
            "rotation": self.rotation.progress.to_dict() if self.rotation else None,
        }

    def reload(self) -> Keyring:
        """Re-read the key ring from its source; refuse one that lacks a key in use."""
        enc = self.context.config.encryption
        if not enc.enabled:
            raise ConfigError("encryption is not enabled", "encryption.enabled")
        ring = load_keyring(enc.key_file, enc.key_env, enc.credential)
        self.context.sealer.replace_keyring(ring)
        return ring

    async def retire(self) -> Keyring:
        """Re-read the ring without its retired keys; 409 while one still wraps objects."""
        sealer = self.context.sealer
        old = sealer.keyring
        ring = self.reload()
        inv = await inventory(self.context.store, self.sealed_columns(), self.artifact_root)
        missing = sorted(k for k in inv.counts if k not in ring.keys)
        if missing:
            if old is not None:
                sealer.replace_keyring(old)
            raise Conflict(
                f"the key ring ({ring.source}) lacks key(s) {', '.join(missing)} that still "
                f"wrap {sum(inv.counts[k] for k in missing)} stored objects; keep them until "
                "a rotation has re-wrapped those objects"
            )
        retired = sorted(set(old.ids if old else []) - set(ring.ids))
        await self.context.audit.record(
            "system", "keys_reload", ring.active, detail={"retired": retired}
        )
        return ring

    async def rotate(self) -> dict[str, Any]:
        """Re-read the ring (a new active key) and re-wrap every data key in the background."""
        if self.rotation is not None and self.rotation.progress.state == "running":
            raise Conflict("a key rotation is already running")
        ring = await self.retire()
        context = self.context
        self.rotation = self.new_rotation()
        context.spawn(self._rotate(self.rotation), name="key-rotation")
        await context.audit.record("system", "keys_rotate", ring.active, detail={"keys": ring.ids})
        return self.rotation.progress.to_dict()

    def new_rotation(self) -> KeyRotation:
        """A rotation (not started) of every sealed object to the ring's active key."""
        context = self.context
        return KeyRotation(context.store, context.sealer, self.sealed_columns(), self.artifact_root)

    async def _rotate(self, rotation: KeyRotation) -> None:
        try:
            await rotation.run()
        except Exception as exc:
            self.context.record_error("key-rotation", str(exc))

    def decryption_failed(
        self, what: str, reason: str, error: DecryptionFailed | None = None
    ) -> None:
        """Log and audit an object that could not be opened (called from any thread);
        a sealed column's value (``error``) is named by its row key once found."""
        loop = self.loop
        if error is None or loop is None or loop.is_closed():
            logger.error("refused %s: cannot decrypt it: %s", what, reason)
        if loop is None or loop.is_closed():
            return
        context = self.context

        async def record(what: str) -> None:
            if error is not None:
                what = (await self.name_stored_row(error)).what
                logger.error("refused %s: cannot decrypt it: %s", what, reason)
            await context.audit.record(
                "system", "decryption_failed", what, "refused", {"reason": reason}
            )

        def audit() -> None:
            if context.store.engine is not None:
                context.spawn(record(what), name="audit-decryption-failure")
            elif error is not None:
                logger.error("refused %s: cannot decrypt it: %s", what, reason)

        loop.call_soon_threadsafe(audit)

    async def name_stored_row(self, error: DecryptionFailed) -> DecryptionFailed:
        """``error`` naming the table, column and key of the row it came from."""
        return await name_stored_row(self.context.store, self.sealed_columns(), error)
