"""Semantic versions of registered models, and the rules that pick the next one.

A version is ``MAJOR.MINOR.PATCH`` (three non-negative integers, no leading zeros).
When a registration gives no version, the next one is derived from a *base*: the
parent version when one is named, otherwise the model's highest version.

- no version yet: ``1.0.0``;
- **major** when the framework (the model's MLflow flavour) or the model's input
  columns (its signature) differ from the base's;
- **minor** when the training parameters differ from the base's;
- **patch** otherwise (same framework, inputs and parameters: a retrain on new data).

An explicit ``bump`` (major | minor | patch) overrides the rule. When the derived
version already exists (a second branch from an old parent), the bumped component is
increased until the version is free.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal, TypedDict

from ...errors import InvalidInput

__all__ = ["Bump", "SemVer", "VersionTraits", "choose_bump", "next_version", "parse_semver"]

Bump = Literal["major", "minor", "patch"]
BUMPS: tuple[Bump, ...] = ("major", "minor", "patch")

_PATTERN = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


@dataclass(frozen=True, order=True)
class SemVer:
    """A semantic version; ordered numerically (``1.10.0 > 1.9.0``)."""

    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def bump(self, kind: Bump) -> SemVer:
        if kind == "major":
            return SemVer(self.major + 1, 0, 0)
        if kind == "minor":
            return SemVer(self.major, self.minor + 1, 0)
        return SemVer(self.major, self.minor, self.patch + 1)


class VersionTraits(TypedDict):
    """What decides the bump between two versions (a version record has them all)."""

    framework: str | None
    inputs: list[str] | None
    params: dict[str, str]


def parse_semver(text: object, where: str = "version") -> SemVer:
    """Parse ``MAJOR.MINOR.PATCH``; InvalidInput names ``where`` and the expected form."""
    if not isinstance(text, str) or not (match := _PATTERN.match(text.strip())):
        raise InvalidInput(
            f"{where}: expected a semantic version MAJOR.MINOR.PATCH such as '1.2.0', got {text!r}",
            code="invalid_version",
        )
    return SemVer(*(int(part) for part in match.groups()))


def choose_bump(base: VersionTraits, candidate: VersionTraits) -> tuple[Bump, str]:
    """The bump from ``base`` to ``candidate`` (version records) and why."""
    if base.get("framework") and candidate.get("framework") != base.get("framework"):
        return "major", (
            f"framework changed from {base.get('framework')} to {candidate.get('framework')}"
        )
    base_inputs, new_inputs = base.get("inputs"), candidate.get("inputs")
    if base_inputs and new_inputs and list(base_inputs) != list(new_inputs):
        return "major", "the model's input columns changed"
    if dict(base.get("params") or {}) != dict(candidate.get("params") or {}):
        return "minor", "training parameters changed"
    return "patch", "same framework, inputs and parameters (retrained)"


def next_version(
    existing: Collection[str],
    base: str | None,
    bump: Bump,
) -> SemVer:
    """The version after ``base`` by ``bump``, skipping versions that already exist."""
    if base is None:
        candidate = SemVer(1, 0, 0)
        taken = {parse_semver(v) for v in existing}
        while candidate in taken:
            candidate = candidate.bump("major")
        return candidate
    taken = {parse_semver(v) for v in existing}
    candidate = parse_semver(base).bump(bump)
    while candidate in taken:
        candidate = candidate.bump(bump)
    return candidate
