"""Envelope encryption of objects at rest: AES-256-GCM, a data key per object.

A sealed object is::

    b"MWE1" | len(kek_id) (1 byte) | kek_id | wrap nonce (12) | wrapped data key (48)
           | nonce (12) | AES-256-GCM ciphertext and tag

The data key is fresh for each object and wrapped (AES-256-GCM, the key id as
associated data) by the key-encryption key ``kek_id`` of the :class:`~.keys.Keyring`.
The object's *purpose* (``outbox``, ``artifact``, ``ingest_journal``, ...) is the
associated data of the body, so a sealed row cannot be passed off as another kind of
object. A rotation re-wraps the data key (a few dozen bytes) and never touches the body.
All cryptography is the ``cryptography`` package's ``AESGCM``.

Reading a sealed object either returns every byte of the plaintext or raises
:class:`~mlwarden.errors.DecryptionFailed` naming the object: a wrong key, a missing key
and a flipped byte (the GCM tag check) all end there, never in partial plaintext.
Objects written while encryption was off (no magic) are read as they are.

Many small rows written together (a label batch's outcomes) share one data key instead:
:class:`RowCipher` seals each row under it with a fresh nonce and the row's identity as
associated data (``b"MWR1" | nonce (12) | ciphertext and tag``); the data key itself is
stored as an ordinary sealed object (the caller's key table), so it is wrapped by a
key-encryption key with an id, and rotation, the inventory and the start-up check cover
it like any other. A :class:`SealedRows` column holds such rows.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...errors import DecryptionFailed
from .keys import Keyring

__all__ = [
    "MAGIC",
    "ROW_MAGIC",
    "TEXT_PREFIX",
    "Envelope",
    "Presealed",
    "RowCipher",
    "SealedBytes",
    "SealedRows",
    "SealedText",
    "Sealer",
    "current_sealer",
    "is_row_sealed",
    "is_sealed",
    "key_id_of",
    "open_text",
    "set_current_sealer",
]

logger = logging.getLogger(__name__)

MAGIC = b"MWE1"
ROW_MAGIC = b"MWR1"
TEXT_PREFIX = "mwenc1:"
_NONCE = 12
_WRAPPED = 32 + 16


@dataclass(frozen=True)
class Envelope:
    """The parsed header of a sealed object."""

    kek_id: str
    wrap_nonce: bytes
    wrapped_key: bytes
    body: bytes  # nonce + ciphertext + tag

    @classmethod
    def parse(cls, data: bytes, what: str) -> Envelope:
        try:
            n = data[4]
            kek_id = data[5 : 5 + n].decode("ascii")
            at = 5 + n
            wrap_nonce = data[at : at + _NONCE]
            wrapped = data[at + _NONCE : at + _NONCE + _WRAPPED]
            body = data[at + _NONCE + _WRAPPED :]
        except (IndexError, UnicodeDecodeError):
            raise DecryptionFailed(what, "the envelope header is damaged") from None
        if len(wrapped) != _WRAPPED or len(body) < _NONCE + 16:
            raise DecryptionFailed(what, "the envelope is truncated")
        return cls(kek_id, wrap_nonce, wrapped, body)

    def to_bytes(self) -> bytes:
        kid = self.kek_id.encode("ascii")
        return MAGIC + bytes([len(kid)]) + kid + self.wrap_nonce + self.wrapped_key + self.body


def is_sealed(data: bytes) -> bool:
    return data[:4] == MAGIC


def is_row_sealed(data: bytes) -> bool:
    """Sealed by a :class:`RowCipher` (its data key is a sealed object of its own)."""
    return data[:4] == ROW_MAGIC


class RowCipher:
    """One data key that seals many small rows: AES-256-GCM, a fresh nonce per row.

    The key is meant to be stored sealed (an envelope of its own) next to the rows; the
    associated data of each row names it (its table, the key's row, the row's key), so
    a row moved to another row or put under another key fails its tag check.
    """

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._aead = AESGCM(key)

    @classmethod
    def generate(cls) -> RowCipher:
        return cls(AESGCM.generate_key(bit_length=256))

    def seal(self, data: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return ROW_MAGIC + nonce + self._aead.encrypt(nonce, data, aad)

    def open(self, data: bytes, aad: bytes, what: str) -> bytes:
        """The plaintext of ``data``; DecryptionFailed naming ``what`` (never part of it)."""
        if not is_row_sealed(data) or len(data) < 4 + _NONCE + 16:
            raise DecryptionFailed(what, "its sealed row header is damaged")
        try:
            return self._aead.decrypt(data[4 : 4 + _NONCE], data[4 + _NONCE :], aad)
        except InvalidTag:
            raise DecryptionFailed(
                what, "its authentication tag does not match (the data was altered)"
            ) from None


class Sealer:
    """Seals and opens objects with a key ring; passes data through when ``keyring`` is None.

    ``on_failure(what, reason)`` is called (from any thread) for every object that fails
    to open, so the daemon can audit it.
    """

    def __init__(
        self,
        keyring: Keyring | None,
        on_failure: Callable[[str, str], None] | None = None,
        on_stored_failure: Callable[[DecryptionFailed], None] | None = None,
    ) -> None:
        self.keyring = keyring
        self.on_failure = on_failure
        #: Called instead of ``on_failure`` for a value read from a sealed column: the
        #: error carries the table and the stored value, so the row can be found.
        self.on_stored_failure = on_stored_failure
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.keyring is not None

    def replace_keyring(self, keyring: Keyring) -> None:
        with self._lock:
            self.keyring = keyring

    # -- bytes -----------------------------------------------------------------------

    def seal(self, data: bytes, purpose: str) -> bytes:
        ring = self.keyring
        if ring is None:
            return data
        dek = AESGCM.generate_key(bit_length=256)
        wrap_nonce = os.urandom(_NONCE)
        kid = ring.active
        wrapped = AESGCM(ring.keys[kid]).encrypt(wrap_nonce, dek, _wrap_aad(kid))
        nonce = os.urandom(_NONCE)
        body = nonce + AESGCM(dek).encrypt(nonce, data, purpose.encode())
        return Envelope(kid, wrap_nonce, wrapped, body).to_bytes()

    def open(self, data: bytes, purpose: str, what: str, *, report: bool = True) -> bytes:
        """The plaintext of ``data`` (as is when not sealed); DecryptionFailed names ``what``.

        ``report``: call ``on_failure`` on a failure (the sealed columns report theirs).
        """
        if not is_sealed(data):
            return data
        try:
            env = Envelope.parse(data, what)
            dek = self._unwrap(env, what)
            nonce, ciphertext = env.body[:_NONCE], env.body[_NONCE:]
            try:
                return AESGCM(dek).decrypt(nonce, ciphertext, purpose.encode())
            except InvalidTag:
                raise DecryptionFailed(
                    what, "its authentication tag does not match (the data was altered)"
                ) from None
        except DecryptionFailed as exc:
            if report:
                self._failed(what, exc.reason)
            raise

    def rewrap(self, data: bytes, what: str) -> bytes | None:
        """``data`` with its data key wrapped by the active key; None if already so or clear."""
        ring = self.keyring
        if ring is None or not is_sealed(data):
            return None
        env = Envelope.parse(data, what)
        if env.kek_id == ring.active:
            return None
        try:
            dek = self._unwrap(env, what)
        except DecryptionFailed as exc:
            self._failed(what, exc.reason)
            raise
        wrap_nonce = os.urandom(_NONCE)
        wrapped = AESGCM(ring.keys[ring.active]).encrypt(wrap_nonce, dek, _wrap_aad(ring.active))
        return Envelope(ring.active, wrap_nonce, wrapped, env.body).to_bytes()

    def _unwrap(self, env: Envelope, what: str) -> bytes:
        ring = self.keyring
        if ring is None:
            raise DecryptionFailed(
                what, f"it is encrypted with key {env.kek_id!r} but encryption is not enabled"
            )
        kek = ring.get(env.kek_id)
        if kek is None:
            raise DecryptionFailed(
                what,
                f"its key {env.kek_id!r} is not in the key ring ({ring.source}: "
                f"{', '.join(ring.ids)})",
            )
        try:
            return AESGCM(kek).decrypt(env.wrap_nonce, env.wrapped_key, _wrap_aad(env.kek_id))
        except InvalidTag:
            raise DecryptionFailed(
                what,
                f"key {env.kek_id!r} of the key ring ({ring.source}) does not unwrap its "
                "data key (a wrong key, or the header was altered)",
            ) from None

    def report(self, what: str, reason: str) -> None:
        """Record an object that failed to open elsewhere (a :class:`RowCipher` row)."""
        self._failed(what, reason)

    def _failed(self, what: str, reason: str) -> None:
        if self.on_failure is not None:
            try:
                self.on_failure(what, reason)
            except Exception:  # the failure itself is what matters to the caller
                logger.exception("recording the decryption failure of %s failed", what)

    # -- text columns ----------------------------------------------------------------

    def seal_text(self, text: str, purpose: str) -> str:
        if self.keyring is None:
            return text
        return TEXT_PREFIX + base64.b64encode(self.seal(text.encode(), purpose)).decode()

    def open_text(self, text: str, purpose: str, what: str, *, report: bool = True) -> str:
        if not text.startswith(TEXT_PREFIX):
            return text
        try:
            raw = base64.b64decode(text[len(TEXT_PREFIX) :], validate=True)
        except ValueError:
            if report:
                self._failed(what, "its base64 text is damaged")
            raise DecryptionFailed(what, "its base64 text is damaged") from None
        return self.open(raw, purpose, what, report=report).decode()

    def open_stored(self, value: bytes | str, table: str) -> bytes | str:
        """A value read from a sealed column of ``table``; a failure carries both.

        The error names the table only (the row's key is not at hand while a result is
        being read); ``on_stored_failure`` and the API find the row by its stored value
        (``rotation.name_stored_row``).
        """
        what = f"a stored {table} value"
        try:
            if isinstance(value, str):
                return self.open_text(value, table, what, report=False)
            return self.open(value, table, what, report=False)
        except DecryptionFailed as exc:
            exc.table, exc.stored = table, value
            if self.on_stored_failure is not None:
                try:
                    self.on_stored_failure(exc)
                except Exception:
                    logger.exception("recording the decryption failure of %s failed", what)
            else:
                self._failed(what, exc.reason)
            raise

    def rewrap_text(self, text: str, what: str) -> str | None:
        if not text.startswith(TEXT_PREFIX):
            return None
        out = self.rewrap(base64.b64decode(text[len(TEXT_PREFIX) :]), what)
        return None if out is None else TEXT_PREFIX + base64.b64encode(out).decode()


def key_id_of(data: bytes | str) -> str | None:
    """The id of the key that wraps ``data``'s data key (None when in clear)."""
    if isinstance(data, str):
        if not data.startswith(TEXT_PREFIX):
            return None
        data = base64.b64decode(data[len(TEXT_PREFIX) : len(TEXT_PREFIX) + 120] + "==")
    if not is_sealed(data):
        return None
    n = data[4]
    return data[5 : 5 + n].decode("ascii", "replace")


def _wrap_aad(kek_id: str) -> bytes:
    return b"mlwarden-data-key|" + kek_id.encode("ascii")


_current: Sealer | None = None


def set_current_sealer(sealer: Sealer | None) -> None:
    """The sealer the MLflow artifact plugin uses in this process (the daemon's)."""
    global _current
    _current = sealer


def current_sealer() -> Sealer | None:
    return _current


def _active() -> Sealer:
    return _current if _current is not None else _CLEAR


_CLEAR = Sealer(None)


def open_text(text: str, purpose: str, what: str) -> str:
    """Open a value of a :class:`SealedText` column read raw, naming it ``what``."""
    return _active().open_text(text, purpose, what)


class Presealed(bytes):
    """A value :meth:`SealedBytes.seal_ahead` sealed for its column: bound as it is."""


class SealedBytes(sa.types.TypeDecorator[bytes]):
    """A binary column whose values are sealed with the daemon's key ring when it has one.

    Values are sealed as they are bound (or beforehand: :meth:`seal_ahead`) and opened
    as they are read, so every query through SQLAlchemy sees plaintext; a value that
    fails to open raises :class:`~mlwarden.errors.DecryptionFailed` naming the table and
    column.
    """

    impl = sa.LargeBinary
    cache_ok = True

    def __init__(self, purpose: str) -> None:
        super().__init__()
        self.purpose = purpose

    def seal_ahead(self, value: bytes) -> bytes:
        """``value`` sealed as binding it would seal it, marked so that binding stores it
        as is: for a writer that seals what it will store beforehand, in a thread, and
        not in its transaction (a batch of predictions takes a fraction of a millisecond)."""
        sealer = _active()
        return Presealed(sealer.seal(bytes(value), self.purpose)) if sealer.enabled else value

    def process_bind_param(self, value: bytes | None, dialect: sa.Dialect) -> bytes | None:
        if value is None or type(value) is Presealed:
            return value
        return _active().seal(bytes(value), self.purpose)

    def process_result_value(self, value: bytes | None, dialect: sa.Dialect) -> bytes | None:
        if value is None:
            return None
        opened = _active().open_stored(bytes(value), self.purpose)
        assert isinstance(opened, bytes)  # bytes in, bytes out
        return opened


class SealedRows(SealedBytes):
    """A binary column of rows sealed by a :class:`RowCipher` (its reader opens them).

    Values are bound sealed and read as stored: opening a row needs its key's row and
    its own key (the caller's). Rows sealed one envelope each (written before such
    columns existed) are read as stored too, and a rotation re-wraps them as any
    :class:`SealedBytes` value; a plaintext value is refused, never stored in clear.
    """

    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: sa.Dialect) -> bytes | None:
        if value is not None and not is_row_sealed(value):
            raise ValueError(f"a {self.purpose} row must be sealed before it is stored")
        return None if value is None else bytes(value)

    def process_result_value(self, value: bytes | None, dialect: sa.Dialect) -> bytes | None:
        return None if value is None else bytes(value)


class SealedText(sa.types.TypeDecorator[str]):
    """A text column sealed like :class:`SealedBytes` (base64 behind ``mwenc1:``)."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, purpose: str) -> None:
        super().__init__()
        self.purpose = purpose

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else _active().seal_text(value, self.purpose)

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> str | None:
        if value is None:
            return None
        opened = _active().open_stored(value, self.purpose)
        assert isinstance(opened, str)  # text in, text out
        return opened
