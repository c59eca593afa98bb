"""Rotation of a key ring mlwarden cannot edit: an environment variable, a credential.

``mlwarden keys rotate`` edits ``encryption.key_file`` itself. A ring held in the
daemon's environment (``encryption.key_env``) or in a systemd credential
(``LoadCredential=``, copied into ``$CREDENTIALS_DIRECTORY`` at start) is read by the
daemon once, when it starts, from a place only the operator (or the service manager)
can change. There rotation is a short dialogue, each step read from the daemon's own
account of its ring (``GET /api/system/keys``), so running the command again after each
step verifies that step:

1. every object under the active key, no other key: a new entry is printed, to append
   as the ring's last entry; then restart the daemon (it becomes the active key);
2. objects under an older key: the daemon re-wraps them with the active key (as for a
   key file), then says which entries to remove;
3. an older key that wraps nothing: remove its entry, restart;
4. only the active key, wrapping everything: nothing to do.

:func:`next_step` says which of these applies; ``keys status`` prints it too.
"""

from __future__ import annotations

import base64
from typing import Any

from ..core.config import Config
from ..core.keys import new_key

__all__ = ["EXIT_ACTION_NEEDED", "new_entry_steps", "next_step", "source_of"]

#: ``keys rotate``'s exit code when the operator must act before it can go on.
EXIT_ACTION_NEEDED = 3


def source_of(status: dict[str, Any], config: Config) -> tuple[str, str]:
    """(where the ring is, how the daemon re-reads it) for the operator's instructions."""
    source = str(status.get("source") or "")
    if source.startswith("env:"):
        name = source[4:]
        return (
            f"the environment variable {name} of the daemon (entries separated by commas)",
            "restart the daemon with the new value (systemctl restart mlwarden)",
        )
    if source.startswith("credential:"):
        name = source.split(":", 1)[1]
        return (
            f"the file that the unit's LoadCredential={name}:... names "
            "(e.g. /etc/mlwarden/keys, one entry per line)",
            "restart the daemon, systemd copies credentials at start (systemctl restart mlwarden)",
        )
    path = source or config.encryption.key_file
    return f"the key file {path}", "run `mlwarden keys rotate` (it edits the file itself)"


def next_step(status: dict[str, Any], config: Config) -> str:
    """What the operator does next with the ring that ``status`` (``GET /api/system/keys``)
    describes."""
    if not status.get("enabled"):
        return "encryption is not enabled ([encryption] enabled = true)"
    where, restart = source_of(status, config)
    active = str(status.get("active", ""))
    keys: dict[str, int] = dict(status.get("keys") or {})
    unknown = dict(status.get("unknown_keys") or {})
    if unknown:
        return (
            f"stored objects use key(s) {', '.join(sorted(unknown))}, which the ring lacks: "
            f"put them back into {where}, then {restart}"
        )
    rotation = status.get("rotation") or {}
    if rotation.get("state") == "running":
        return (
            f"a rotation is running ({rotation.get('done', 0)}/{rotation.get('total', 0)}); "
            "run `mlwarden keys status` again"
        )
    in_use = {k: n for k, n in keys.items() if k != active and n}
    if in_use:
        count = sum(in_use.values())
        return (
            f"run `mlwarden keys rotate`: it re-wraps the {count} stored objects still under "
            f"{', '.join(sorted(in_use))} with the active key {active}"
        )
    idle = sorted(k for k in keys if k != active)
    if idle:
        return f"key(s) {', '.join(idle)} wrap nothing: remove them from {where}, then {restart}"
    return f"nothing to do: the active key {active} wraps every stored object"


def new_entry_steps(status: dict[str, Any], config: Config, key_id: str) -> list[str]:
    """Step 1: the new entry and what to do with it (the entry holds the key: keep it
    out of shell history and logs)."""
    where, restart = source_of(status, config)
    entry = f"{key_id}:{base64.b64encode(new_key()).decode()}"
    return [
        f"the key ring comes from {where}; mlwarden cannot edit it. To rotate:",
        "1. append this entry as the last one of the ring (it becomes the active key):",
        f"     {entry}",
        f"2. {restart}",
        "3. run `mlwarden keys rotate` again: it re-wraps every data key with "
        f"{key_id} and says which old entries to remove",
    ]
