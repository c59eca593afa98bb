"""A drift method that fails (not with ValueError) when it fits or when it scores."""

from __future__ import annotations

from typing import ClassVar

from mlwarden import hookimpl
from mlwarden.types import FeatureData


class Broken:
    """``broken``: raises ZeroDivisionError in ``fit`` or RuntimeError in ``score``."""

    name: ClassVar[str] = "broken"
    kinds: ClassVar[tuple[str, ...]] = ("numeric", "categorical", "multivariate")

    def __init__(self, *, fail_in: str = "score") -> None:
        self.fail_in = fail_in

    def fit(self, reference: FeatureData) -> Broken:
        if self.fail_in == "fit":
            raise ZeroDivisionError(f"broken cannot fit {reference.name}")
        return self

    def score(self, current: FeatureData):
        raise RuntimeError(f"broken cannot score {current.name}")


@hookimpl
def mlwarden_drift_methods() -> list[type]:
    return [Broken]
