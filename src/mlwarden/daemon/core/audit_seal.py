"""What makes the audit chain tamper-evident against someone who can write the database.

**The key.** Each new audit row is chained by HMAC-SHA256 under a key kept outside the
database, so a forger who edits a row cannot recompute the hashes after it. The key
is read from, in this order:

1. ``MLWARDEN_AUDIT_KEY`` (the key itself, at least 32 characters);
2. ``$CREDENTIALS_DIRECTORY/mlwarden-audit-key`` (systemd ``LoadCredential=``);
3. the file ``MLWARDEN_AUDIT_KEY_FILE``, by default ``<base_path>/audit.key``, which
   the daemon creates (mode 0600, 32 random bytes as hex) when it does not exist.

Several daemons writing one chain share the key through the same file or variable.

**Checkpoints.** After every commit of audit rows the writer appends the chain's head
(last row id and hash, and the last unkeyed legacy row), sealed with the same key, to
``<checkpoint dir>/audit-checkpoints.<writer>.jsonl`` (one file per writer; the
directory is ``MLWARDEN_AUDIT_CHECKPOINT_DIR``, by default ``<base_path>/audit``, the
writer ``MLWARDEN_AUDIT_WRITER``, by default the host name). Deleting the newest rows
then leaves a checkpoint naming a row that is gone, and rewriting the chain leaves one
whose hash no longer matches.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "AuditKey",
    "Checkpoint",
    "CheckpointWriter",
    "checkpoint_dir",
    "load_key",
    "read_checkpoints",
]

logger = logging.getLogger(__name__)

KEY_ENV = "MLWARDEN_AUDIT_KEY"
KEY_FILE_ENV = "MLWARDEN_AUDIT_KEY_FILE"
CHECKPOINT_DIR_ENV = "MLWARDEN_AUDIT_CHECKPOINT_DIR"
WRITER_ENV = "MLWARDEN_AUDIT_WRITER"
CREDENTIAL = "mlwarden-audit-key"
MIN_KEY_CHARS = 32


class AuditKeyError(ValueError):
    """The audit key is missing, unreadable or too short; the message names its source."""


@dataclass(frozen=True)
class AuditKey:
    """The secret of the keyed chain and where it came from (for messages, never shown)."""

    secret: bytes
    source: str

    def mac(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()


def _from_text(text: str, source: str) -> AuditKey:
    text = text.strip()
    if len(text) < MIN_KEY_CHARS:
        raise AuditKeyError(
            f"audit key from {source} is {len(text)} characters; at least {MIN_KEY_CHARS} "
            "expected (e.g. `openssl rand -hex 32`)"
        )
    return AuditKey(text.encode(), source)


def key_file(base_path: Path, env: Mapping[str, str]) -> Path:
    return Path(env.get(KEY_FILE_ENV) or base_path / "audit.key")


def load_key(
    base_path: Path, env: Mapping[str, str] | None = None, *, create: bool = False
) -> AuditKey | None:
    """The audit key (see the module docstring); None when there is none and not ``create``."""
    env = os.environ if env is None else env
    if env.get(KEY_ENV):
        return _from_text(env[KEY_ENV], f"${KEY_ENV}")
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL).is_file():
        path = Path(credentials) / CREDENTIAL
        return _from_text(path.read_text(), str(path))
    path = key_file(base_path, env)
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two daemons starting at once never overwrite each other's key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _from_text(path.read_text(), str(path))
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        logger.warning("created the audit key %s (mode 0600); back it up apart from the data", path)
    try:
        return _from_text(path.read_text(), str(path))
    except OSError as exc:
        raise AuditKeyError(f"audit key file {path}: {exc.strerror or exc}") from exc


def checkpoint_dir(base_path: Path, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(CHECKPOINT_DIR_ENV) or base_path / "audit")


def _canonical(record: Mapping[str, Any]) -> str:
    return json.dumps(
        {k: record[k] for k in ("id", "hash", "legacy", "writer")},
        sort_keys=True,
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class Checkpoint:
    """The chain's head as one writer saw it after a commit."""

    id: int
    hash: str
    legacy: int  # the last unkeyed (legacy) row; 0 when there is none
    writer: str
    file: str
    line: int


class CheckpointWriter:
    """Appends sealed checkpoints of the chain's head to this writer's file."""

    def __init__(self, directory: Path, key: AuditKey, writer: str | None = None) -> None:
        self.key = key
        self.writer = writer or os.environ.get(WRITER_ENV) or socket.gethostname() or "mlwarden"
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"audit-checkpoints.{self.writer}.jsonl"
        self._file: IO[str] | None = None

    def append(self, row_id: int, row_hash: str, legacy: int) -> None:
        # One short line, appended (O_APPEND) without fsync: a kill -9 keeps it (page
        # cache), and it costs microseconds, so it is written on the loop, per commit.
        if self._file is None:
            self._file = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        record: dict[str, Any] = {
            "id": row_id,
            "hash": row_hash,
            "legacy": legacy,
            "writer": self.writer,
        }
        record["mac"] = self.key.mac(_canonical(record))
        self._file.write(json.dumps(record, sort_keys=True) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class CheckpointError(ValueError):
    """A checkpoint line that is not what a writer wrote (forged, garbled, out of order)."""


def read_checkpoints(directory: Path, key: AuditKey) -> Iterator[Checkpoint]:
    """Every checkpoint of every writer, verified; CheckpointError names a bad line."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("audit-checkpoints.*.jsonl")):
        last = 0
        with open(path, encoding="utf-8") as f:
            for number, text in enumerate(f, start=1):
                where = f"{path}:{number}"
                if not text.endswith("\n"):
                    break  # a line being written right now
                try:
                    record = json.loads(text)
                    mac = record["mac"]
                    point = Checkpoint(
                        int(record["id"]),
                        str(record["hash"]),
                        int(record["legacy"]),
                        str(record["writer"]),
                        str(path),
                        number,
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    raise CheckpointError(f"checkpoint {where} is not valid: {exc}") from None
                if not hmac.compare_digest(str(mac), key.mac(_canonical(record))):
                    raise CheckpointError(f"checkpoint {where} does not carry the key's seal")
                if point.id < last:
                    raise CheckpointError(
                        f"checkpoint {where} names row {point.id} after one naming row {last} "
                        "(the log was cut back and written again)"
                    )
                last = point.id
                yield point
