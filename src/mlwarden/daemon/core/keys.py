"""Key-encryption keys: where they come from and how they are written down.

A key ring is an ordered list of ``ID:BASE64`` entries (32-byte AES keys), one per line
or separated by commas; the last one is the *active* key that wraps new data keys, the
others only unwrap what they wrapped until a rotation has re-wrapped it. The ring is
read from, in order:

1. ``encryption.key_file`` (refused unless mode 0600 or stricter and owned by the user
   the daemon runs as),
2. the systemd credential ``encryption.credential`` in ``$CREDENTIALS_DIRECTORY``
   (``LoadCredential=mlwarden-keys:/etc/mlwarden/keys`` in the unit),
3. the environment variable ``encryption.key_env`` (default ``MLWARDEN_ENCRYPTION_KEYS``).

Processes the daemon does not configure (a trainer subprocess, ``mlflow`` run by hand)
find the ring through the environment: ``MLWARDEN_KEY_FILE`` names a key file,
``MLWARDEN_ENCRYPTION_KEYS`` holds the ring, or the credential ``mlwarden-keys``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError

__all__ = [
    "DEFAULT_CREDENTIAL",
    "DEFAULT_KEY_ENV",
    "KEY_FILE_ENV",
    "Keyring",
    "check_key_file",
    "format_keyring",
    "new_key",
    "parse_keyring",
    "write_key_file",
]

DEFAULT_KEY_ENV = "MLWARDEN_ENCRYPTION_KEYS"
DEFAULT_CREDENTIAL = "mlwarden-keys"
KEY_FILE_ENV = "MLWARDEN_KEY_FILE"
KEY_BYTES = 32
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class Keyring:
    """Key-encryption keys by id; ``active`` wraps new data keys."""

    keys: dict[str, bytes]
    active: str
    #: Where the ring was read from (a file path, ``env:NAME`` or ``credential:NAME``).
    source: str

    def get(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id)

    @property
    def ids(self) -> list[str]:
        return list(self.keys)


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def parse_keyring(text: str, source: str) -> Keyring:
    """The ring in ``text``; ConfigError names ``source`` and the bad entry."""
    keys: dict[str, bytes] = {}
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    entries = [e.strip() for line in lines for e in line.split(",")]
    for n, entry in enumerate((e for e in entries if e), 1):
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not _ID.match(key_id):
            raise ConfigError(
                f"encryption key entry {n}: expected ID:BASE64 with an id of letters, "
                "digits, '.', '_' or '-'",
                source,
            )
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"encryption key {key_id!r}: not valid base64", source) from None
        if len(key) != KEY_BYTES:
            raise ConfigError(
                f"encryption key {key_id!r}: expected {KEY_BYTES} bytes (AES-256), got {len(key)}",
                source,
            )
        if key_id in keys:
            raise ConfigError(f"encryption key {key_id!r} is listed twice", source)
        keys[key_id] = key
    if not keys:
        raise ConfigError("no encryption keys found (expected ID:BASE64 entries)", source)
    return Keyring(keys=keys, active=list(keys)[-1], source=source)


def format_keyring(keys: dict[str, bytes]) -> str:
    """The text of a ring with ``keys`` (the last one active)."""
    lines = ["# mlwarden encryption keys: ID:BASE64, the last one is active"]
    lines += [f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in keys.items()]
    return "\n".join(lines) + "\n"


def check_key_file(path: Path) -> None:
    """Refuse a key file others can read or that another user owns."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(
            f"encryption key file {path}: {exc.strerror}", "encryption.key_file"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"encryption key file {path}: not a regular file", "encryption.key_file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"encryption key file {path} has mode {mode:04o}; expected 0600 or stricter "
            f"(chmod 600 {path})",
            "encryption.key_file",
        )
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"encryption key file {path} is owned by uid {st.st_uid}, not by the daemon's "
            f"user (uid {os.geteuid()})",
            "encryption.key_file",
        )


def read_key_file(path: Path) -> Keyring:
    check_key_file(path)
    return parse_keyring(path.read_text(encoding="utf-8"), str(path))


def write_key_file(path: Path, keys: dict[str, bytes]) -> None:
    """Write the ring atomically, mode 0600, never readable by others even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(format_keyring(keys))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_keyring(
    key_file: str = "",
    key_env: str = DEFAULT_KEY_ENV,
    credential: str = DEFAULT_CREDENTIAL,
    environ: dict[str, str] | None = None,
) -> Keyring:
    """The ring from the first source that is set (see the module docstring)."""
    env = os.environ if environ is None else environ
    if key_file:
        return read_key_file(Path(key_file))
    if env.get(KEY_FILE_ENV):
        return read_key_file(Path(env[KEY_FILE_ENV]))
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / credential).is_file():
        path = Path(cred_dir) / credential
        # systemd writes credentials 0400 for the service's user: the same check holds.
        check_key_file(path)
        return parse_keyring(path.read_text(encoding="utf-8"), f"credential:{credential}")
    if env.get(key_env):
        return parse_keyring(env[key_env], f"env:{key_env}")
    raise ConfigError(
        "encryption is enabled but no key was found: set encryption.key_file, the systemd "
        f"credential {credential!r} (LoadCredential=) or the environment variable {key_env} "
        "(`mlwarden keys new` makes a key)",
        "encryption",
    )
