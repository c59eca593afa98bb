"""Silences: label matchers with an expiry that keep matching alerts from notifying.

As in Alertmanager, a silence has one or more matchers (label ``name``, ``value``,
``is_regex``, ``is_equal``); an alert is silenced when every matcher of an active
silence matches its labels. Deleting a silence expires it (the record stays).
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from ...errors import Conflict, InvalidInput, NotFound
from ..core.store import Store

__all__ = [
    "Matcher",
    "MatcherRecord",
    "Silence",
    "SilenceRecord",
    "Silences",
    "parse_silence",
    "silences_table",
]

_meta = sa.MetaData()
silences_table = sa.Table(
    "alert_silences",
    _meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("matchers", sa.Text, nullable=False),
    sa.Column("starts_at", sa.Float, nullable=False),
    sa.Column("ends_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
)


class MatcherRecord(TypedDict):
    """A silence's matcher as JSON."""

    name: str
    value: str
    is_regex: bool
    is_equal: bool


class SilenceRecord(TypedDict):
    """A silence as the API shows it (``GET /api/silences``)."""

    id: str
    matchers: list[MatcherRecord]
    starts_at: float
    ends_at: float
    created_by: str
    created_at: float
    comment: str
    #: ``pending``, ``active`` or ``expired``.
    state: str


@dataclass(frozen=True)
class Matcher:
    """One label condition: equal / not equal, literal or anchored regex."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.is_regex:
            hit = re.fullmatch(self.value, actual) is not None
        else:
            hit = actual == self.value
        return hit if self.is_equal else not hit

    def to_dict(self) -> MatcherRecord:
        return {
            "name": self.name,
            "value": self.value,
            "is_regex": self.is_regex,
            "is_equal": self.is_equal,
        }


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    created_at: float
    comment: str

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def silences(self, labels: dict[str, str], now: float) -> bool:
        return self.active(now) and all(m.matches(labels) for m in self.matchers)

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def to_dict(self, now: float) -> SilenceRecord:
        return {
            "id": self.id,
            "matchers": [m.to_dict() for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "comment": self.comment,
            "state": self.state(now),
        }


def _timestamp(value: object, key: str) -> float:
    if isinstance(value, bool):
        raise InvalidInput(f"silence: '{key}' must be a Unix time or an ISO 8601 string")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise InvalidInput(f"silence: '{key}' must be a Unix time or an ISO 8601 string, got {value!r}")


def _matcher(raw: object, i: int) -> Matcher:
    where = f"silence: matchers[{i}]"
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where} must be an object with 'name' and 'value'")
    unknown = set(raw) - {"name", "value", "is_regex", "is_equal"}
    if unknown:
        raise InvalidInput(
            f"{where}: unknown key(s) {sorted(unknown)} (expected name, value, is_regex, is_equal)"
        )
    name, value = raw.get("name"), raw.get("value")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where}.name must be a non-empty string (a label name)")
    if not isinstance(value, str):
        raise InvalidInput(f"{where}.value must be a string")
    is_regex, is_equal = _flag(raw, "is_regex", False, where), _flag(raw, "is_equal", True, where)
    if is_regex:
        try:
            re.compile(value)
        except re.error as exc:
            raise InvalidInput(f"{where}.value is not a valid regular expression: {exc}") from None
    return Matcher(name, value, is_regex=is_regex, is_equal=is_equal)


def _flag(raw: Mapping[str, object], key: str, default: bool, where: str) -> bool:
    flag = raw.get(key, default)
    if not isinstance(flag, bool):
        raise InvalidInput(f"{where}.{key} must be true or false")
    return flag


def parse_silence(body: Mapping[str, Any], *, now: float, created_by: str) -> Silence:
    """Validate a ``POST /api/silences`` body; InvalidInput names the bad key."""
    unknown = set(body) - {"matchers", "starts_at", "ends_at", "duration_seconds", "comment"}
    if unknown:
        raise InvalidInput(
            f"silence: unknown key(s) {sorted(unknown)} (expected matchers, starts_at, "
            "ends_at or duration_seconds, comment)"
        )
    raw = body.get("matchers")
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("silence: 'matchers' must be a non-empty array of matchers")
    matchers = tuple(_matcher(m, i) for i, m in enumerate(raw))
    if all(m.matches({}) for m in matchers):
        raise InvalidInput(
            "silence: these matchers would silence every alert; at least one matcher must not "
            "match an empty label (as in Alertmanager)"
        )
    starts_at = _timestamp(body["starts_at"], "starts_at") if "starts_at" in body else now
    if ("ends_at" in body) == ("duration_seconds" in body):
        raise InvalidInput("silence: give exactly one of 'ends_at' and 'duration_seconds'")
    if "ends_at" in body:
        ends_at = _timestamp(body["ends_at"], "ends_at")
    else:
        duration = body["duration_seconds"]
        if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
            raise InvalidInput("silence: 'duration_seconds' must be a positive number")
        ends_at = starts_at + float(duration)
    if ends_at <= max(starts_at, now):
        raise InvalidInput("silence: 'ends_at' must be in the future and after 'starts_at'")
    comment = body.get("comment", "")
    if not isinstance(comment, str):
        raise InvalidInput("silence: 'comment' must be a string")
    return Silence(uuid.uuid4().hex, matchers, starts_at, ends_at, created_by, now, comment)


class Silences:
    """The silences in the store, cached in memory (they are few and read every tick)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, Silence] = {}

    async def load(self) -> None:
        async with self.store.connect() as conn:
            rows = (await conn.execute(sa.select(silences_table))).mappings().all()
        self._cache = {row["id"]: _from_row(row) for row in rows}

    async def add(self, silence: Silence) -> Silence:
        async with self.store.begin() as conn:
            await conn.execute(silences_table.insert(), _to_row(silence))
        self._cache[silence.id] = silence
        return silence

    async def expire(self, silence_id: str, now: float) -> Silence:
        silence = self._cache.get(silence_id)
        if silence is None:
            raise NotFound(f"silence {silence_id!r} does not exist")
        if silence.ends_at <= now:
            raise Conflict(f"silence {silence_id!r} has already expired")
        ends_at = max(now, silence.starts_at)
        async with self.store.begin() as conn:
            await conn.execute(
                silences_table.update()
                .where(silences_table.c.id == silence_id)
                .values(ends_at=ends_at)
            )
        silence = dataclasses.replace(silence, ends_at=ends_at)
        self._cache[silence_id] = silence
        return silence

    def all(self) -> list[Silence]:
        return sorted(self._cache.values(), key=lambda s: s.created_at, reverse=True)

    def silenced_by(self, labels: dict[str, str], now: float) -> list[str]:
        """Ids of the active silences matching ``labels``."""
        return [s.id for s in self._cache.values() if s.silences(labels, now)]


def _to_row(s: Silence) -> dict[str, object]:
    return {
        "id": s.id,
        "matchers": json.dumps([m.to_dict() for m in s.matchers]),
        "starts_at": s.starts_at,
        "ends_at": s.ends_at,
        "created_by": s.created_by,
        "created_at": s.created_at,
        "comment": s.comment,
    }


def _from_row(row: RowMapping) -> Silence:
    return Silence(
        id=row["id"],
        matchers=tuple(Matcher(**m) for m in json.loads(row["matchers"])),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        comment=row["comment"],
    )
