"""``mlwarden keys new | rotate | status``: the key ring's life from the command line.

``rotate`` appends a new key to the key file (it becomes the active key), then has the
running daemon re-wrap every data key with it (``POST /api/system/keys/rotate``),
printing the progress, and finally removes the old keys from the file once nothing
uses them (``POST /api/system/keys/reload`` refuses while anything does). When no
daemon answers, the same work runs in the command's own process against the store,
opened by the caller's ``offline`` (the CLI hands in daemon/warden.py's
``offline_at_rest``: this package sits below the Warden and may not import it).
A ring in the environment or a systemd credential is rotated step by step with the
operator (guide.py); ``status`` says the next step for any ring.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ..core.config import Config
from ..core.keys import check_key_file, new_key, parse_keyring, write_key_file
from .guide import EXIT_ACTION_NEEDED, new_entry_steps, next_step

if TYPE_CHECKING:  # the sealing machinery is loaded only when no daemon answers
    from .at_rest import EncryptionAtRest

__all__ = [
    "DaemonClient",
    "OfflineAtRest",
    "default_url",
    "keys_new",
    "keys_rotate",
    "keys_status",
    "new_key_id",
]

#: Opens the store of ``config`` in this process, for the key ring's work when no daemon
#: answers: its :class:`EncryptionAtRest`, the store closed on exit.
OfflineAtRest = Callable[[Config], AbstractAsyncContextManager["EncryptionAtRest"]]


def new_key_id(existing: list[str]) -> str:
    base = "k" + time.strftime("%Y%m%d", time.gmtime())
    n = 1
    while f"{base}-{n}" in existing:
        n += 1
    return f"{base}-{n}"


@dataclass
class DaemonClient:
    """A small HTTPS-aware client of the daemon's admin routes (urllib; no event loop)."""

    url: str
    token: str = ""
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""
    timeout: float = 30.0

    def context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        ctx = ssl.create_default_context(cafile=self.cafile or None)
        if self.certfile:
            ctx.load_cert_chain(self.certfile, self.keyfile or None)
        return ctx

    def call(self, method: str, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(self.url.rstrip("/") + path, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context()) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body)
            except ValueError:
                return exc.code, {"error": {"message": body.decode(errors="replace")}}

    def reachable(self) -> bool:
        try:
            self.call("GET", "/healthz")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLError):
                raise  # a daemon that answers with a certificate we refuse: say so
            return False
        return True


def default_url(config: Config) -> str:
    scheme = "https" if config.tls.enabled else "http"
    host = config.daemon.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"{scheme}://{host}:{config.daemon.port}"


def keys_new(key_file: str) -> str:
    """A new ring in ``key_file`` (refused if it exists), or its line when no file is given."""
    key_id = new_key_id([])
    key = new_key()
    if not key_file:
        return f"{key_id}:{base64.b64encode(key).decode()}"
    path = Path(key_file)
    if path.exists():
        raise ConfigError(f"{path} exists; use `mlwarden keys rotate` to add a key", "keys new")
    write_key_file(path, {key_id: key})
    return f"wrote key {key_id} to {path} (mode 0600)"


def keys_rotate(config: Config, client: DaemonClient, offline: OfflineAtRest, out: Any) -> int:
    """Rotate the ring: by itself in a key file, step by step elsewhere (guide.py)."""
    if not config.encryption.key_file:
        return _rotate_guided(config, client, offline, out)
    path = Path(config.encryption.key_file)
    check_key_file(path)
    ring = parse_keyring(path.read_text(encoding="utf-8"), str(path))
    key_id = new_key_id(ring.ids)
    write_key_file(path, {**ring.keys, key_id: new_key()})
    print(f"added key {key_id} to {path}; it is now the active key", file=out, flush=True)
    progress = _rewrap(config, client, offline, out)
    if progress.get("state") != "done":
        return 1
    remaining = {k: n for k, n in progress.get("remaining_by_key", {}).items() if n}
    if remaining:
        print(f"not retiring the old keys, still in use: {remaining}", file=out)
        return 1
    old = [k for k in ring.ids]
    write_key_file(path, {key_id: parse_keyring(path.read_text(), str(path)).keys[key_id]})
    if client.reachable():
        status, body = client.call("POST", "/api/system/keys/reload")
        if status != 200:
            write_key_file(path, {**ring.keys, key_id: _key(path, key_id)})
            print(f"the daemon refused to retire {old}: {_message(body)}", file=out)
            return 1
    print(f"retired key(s) {', '.join(old)}; {path} now holds {key_id} only", file=out)
    return 0


def _rewrap(
    config: Config, client: DaemonClient, offline: OfflineAtRest, out: Any
) -> dict[str, Any]:
    """Every data key re-wrapped with the active key: by the daemon, else here."""
    if client.reachable():
        progress = _rotate_online(client, out)
    else:
        print("no daemon answers at", client.url, "- re-wrapping here", file=out, flush=True)
        progress = asyncio.run(_rotate_offline(config, offline))
    if progress.get("state") != "done":
        print(f"rotation failed: {progress.get('error')}", file=out)
    return progress


def _key(path: Path, key_id: str) -> bytes:
    return parse_keyring(path.read_text(), str(path)).keys[key_id]


def _message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", body))
    return str(body)


def _rotate_online(client: DaemonClient, out: Any) -> dict[str, Any]:
    status, body = client.call("POST", "/api/system/keys/rotate")
    if status != 202:
        raise ConfigError(f"the daemon refused the rotation ({status}): {_message(body)}")
    while True:
        status, body = client.call("GET", "/api/system/keys")
        progress = body.get("rotation") or {}
        print(
            f"re-wrapping data keys: {progress.get('done', 0)}/{progress.get('total', 0)} "
            f"({progress.get('state')})",
            file=out,
            flush=True,
        )
        if progress.get("state") in ("done", "failed"):
            return dict(progress)
        time.sleep(0.5)


async def _rotate_offline(config: Config, offline: OfflineAtRest) -> dict[str, Any]:
    async with offline(config) as at_rest:
        rotation = at_rest.new_rotation()
        with contextlib.suppress(Exception):  # the progress says why
            await rotation.run()
        return rotation.progress.to_dict()


def _rotate_guided(config: Config, client: DaemonClient, offline: OfflineAtRest, out: Any) -> int:
    """A ring in the environment or a credential: the step the daemon's ring is at."""
    status = keys_status(config, client, offline)
    if not status.get("enabled"):
        raise ConfigError("encryption is not enabled", "encryption.enabled")
    keys, active = dict(status.get("keys") or {}), str(status.get("active", ""))
    if list(keys) == [active] and not status.get("unknown_keys"):
        for line in new_entry_steps(status, config, new_key_id(list(keys))):
            print(line, file=out, flush=True)
        return EXIT_ACTION_NEEDED
    if any(n for k, n in keys.items() if k != active) and not status.get("unknown_keys"):
        progress = _rewrap(config, client, offline, out)
        if progress.get("state") != "done":
            return 1
        status = keys_status(config, client, offline)
    step = str(status["next_step"])
    print(f"next: {step}", file=out)
    return 0 if step.startswith("nothing to do") else EXIT_ACTION_NEEDED


def keys_status(config: Config, client: DaemonClient, offline: OfflineAtRest) -> dict[str, Any]:
    """The daemon's account of its ring, with ``next_step`` (guide.next_step)."""
    status = _status(config, client, offline)
    status["next_step"] = next_step(status, config)
    return status


def _status(config: Config, client: DaemonClient, offline: OfflineAtRest) -> dict[str, Any]:
    if client.reachable():
        status, body = client.call("GET", "/api/system/keys")
        if status != 200:
            raise ConfigError(f"the daemon answered {status}: {_message(body)}")
        return dict(body)

    async def status_here() -> dict[str, Any]:
        async with offline(config) as at_rest:
            return await at_rest.status()

    return asyncio.run(status_here())
