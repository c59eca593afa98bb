"""The lifecycle of a model version: statuses and the transitions allowed between them.

::

    training -> validation -> staging -> production -> deprecated -> archived
         \\           \\            \\                      |  ^
          +-> failed  +-> failed    +-> failed, validation  +--+ production (rollback)

A version leaves ``validation`` for ``staging`` only through passing validation gates
(checked by the registry). ``archived`` is final; ``failed`` may only be archived.
"""

from __future__ import annotations

from enum import StrEnum

from ...errors import Conflict, InvalidInput

__all__ = ["TRANSITIONS", "Status", "check_transition", "parse_status"]


class Status(StrEnum):
    TRAINING = "training"
    VALIDATION = "validation"
    STAGING = "staging"
    PRODUCTION = "production"
    DEPRECATED = "deprecated"
    ARCHIVED = "archived"
    FAILED = "failed"


#: from-status -> the statuses it may move to.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.TRAINING: frozenset({Status.VALIDATION, Status.FAILED}),
    Status.VALIDATION: frozenset({Status.STAGING, Status.FAILED}),
    Status.STAGING: frozenset({Status.PRODUCTION, Status.VALIDATION, Status.FAILED}),
    Status.PRODUCTION: frozenset({Status.DEPRECATED}),
    Status.DEPRECATED: frozenset({Status.PRODUCTION, Status.ARCHIVED}),
    Status.ARCHIVED: frozenset(),
    Status.FAILED: frozenset({Status.ARCHIVED}),
}


def parse_status(value: object, where: str = "status") -> Status:
    """A Status from text; InvalidInput lists the statuses there are."""
    try:
        return Status(str(value))
    except ValueError:
        choices = ", ".join(s.value for s in Status)
        raise InvalidInput(f"{where}: expected one of {choices}, got {value!r}") from None


def check_transition(model: str, version: str, current: Status, target: Status) -> None:
    """Raise Conflict (409) naming the rule when ``current -> target`` is not allowed."""
    if target in TRANSITIONS[current]:
        return
    allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "nothing (final)"
    if current == target:
        message = f"model {model!r} version {version} is already {current.value}"
    else:
        message = (
            f"model {model!r} version {version}: illegal transition {current.value} -> "
            f"{target.value}; from {current.value} a version may move to {allowed}"
        )
    error = Conflict(message)
    error.code = "illegal_transition"
    raise error
