"""The period a report or an export covers: ``from`` and ``to``, checked."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from ...errors import InvalidInput

__all__ = ["DEFAULT_DAYS", "Period", "parse_period", "parse_time"]

#: The period when ``from`` is not given: this many days before ``to``.
DEFAULT_DAYS = 30.0


@dataclass(frozen=True)
class Period:
    """``[since, until]`` in Unix seconds."""

    since: float
    until: float

    def to_dict(self) -> dict[str, object]:
        return {
            "from": self.since,
            "to": self.until,
            "from_iso": iso(self.since),
            "to_iso": iso(self.until),
        }


def iso(ts: float | None) -> str:
    """``ts`` as an ISO 8601 UTC time to the second ('' for None)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(key: str, raw: str) -> float:
    """A time given as Unix seconds or ISO 8601 (``2026-01-31``, ``...T12:00:00Z``);
    InvalidInput names ``key`` and what it expects."""
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"query parameter {key!r} must be Unix seconds or an ISO 8601 time "
                f"(2026-01-31 or 2026-01-31T12:00:00Z), got {raw!r}"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(f"query parameter {key!r} must be a time >= 0, got {raw!r}")
    return value


def parse_period(raw_from: str | None, raw_to: str | None, now: float) -> Period:
    """The period of ``from``/``to`` (``to`` defaults to now, ``from`` to DEFAULT_DAYS
    before ``to``); InvalidInput when ``from`` is after ``to``."""
    until = parse_time("to", raw_to) if raw_to else now
    since = parse_time("from", raw_from) if raw_from else until - DEFAULT_DAYS * 86400.0
    if since > until:
        raise InvalidInput(
            f"query parameter 'from' ({iso(since)}) is after 'to' ({iso(until)}): "
            "expected from <= to"
        )
    return Period(since, until)
