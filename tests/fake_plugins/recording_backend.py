"""Traffic backends for the rollout tests: one records every table, one always fails."""

from __future__ import annotations

from mlwarden import hookimpl


class RecordingBackend:
    """Appends each applied table to the class-level ``applied`` list."""

    name = "recording"
    applied: list[tuple[str, dict[str, float]]] = []

    def __init__(self, *, label: str = "") -> None:
        self.label = label

    async def apply(self, model: str, weights: dict[str, float]) -> None:
        self.applied.append((model, dict(weights)))


class BrokenBackend:
    """Raises on every apply, like a webhook whose receiver is down."""

    name = "broken"

    async def apply(self, model: str, weights: dict[str, float]) -> None:
        raise ConnectionError("receiver is down")


@hookimpl
def mlwarden_traffic_backends() -> list[type]:
    return [RecordingBackend, BrokenBackend]
