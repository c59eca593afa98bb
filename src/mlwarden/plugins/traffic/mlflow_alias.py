"""The ``mlflow_alias`` traffic backend: the table mirrored as MLflow aliases and tags."""

from __future__ import annotations

import logging

from ...hookspecs import hookimpl
from ...types import AliasRegistry

__all__ = ["MlflowAliasBackend"]

logger = logging.getLogger(__name__)


class MlflowAliasBackend:
    """Mirror a traffic table in the MLflow model registry.

    - alias ``champion``: the version with the largest weight (on a tie, the version in
      production keeps it);
    - alias ``challenger``: the other version with the largest positive weight, removed
      when the table has a single version;
    - tag ``mlwarden.traffic_weight`` on every version in the table, and ``0`` on the
      versions that leave it.

    Aliases and tags go through the registry it is given (``registry=``, an
    :class:`~mlwarden.types.AliasRegistry`), which maps the semantic version to MLflow's.
    Serving systems that read ``models:/NAME@champion`` and ``@challenger`` and split
    by the tag need nothing else from mlwarden.
    """

    name = "mlflow_alias"
    tag = "mlwarden.traffic_weight"

    def __init__(
        self,
        *,
        registry: AliasRegistry,
        champion_alias: str = "champion",
        challenger_alias: str = "challenger",
    ) -> None:
        for key, value in (
            ("champion_alias", champion_alias),
            ("challenger_alias", challenger_alias),
        ):
            if not isinstance(value, str) or not value:
                raise ValueError(f"option {key!r}: expected a non-empty string, got {value!r}")
        self.registry = registry
        self.champion_alias = champion_alias
        self.challenger_alias = challenger_alias
        self._tagged: dict[str, set[str]] = {}

    async def apply(self, model: str, weights: dict[str, float]) -> None:
        registry = self.registry
        production = await registry.production(model)
        current = production["version"] if production else None
        ranked = sorted(weights, key=lambda v: (-weights[v], v != current, v))
        champion = ranked[0]
        challenger = ranked[1] if len(ranked) > 1 else None
        await registry.set_alias(model, self.champion_alias, champion)
        await registry.set_alias(model, self.challenger_alias, challenger)
        previous = self._tagged.get(model, set())
        tags = {v: weights.get(v, 0.0) for v in set(weights) | previous}
        for version, weight in tags.items():
            await registry.set_version_tag(model, version, self.tag, f"{weight:g}")
        self._tagged[model] = set(weights)
        logger.debug(
            "mlflow aliases of %s: %s=%s %s=%s",
            model,
            self.champion_alias,
            champion,
            self.challenger_alias,
            challenger,
        )


@hookimpl
def mlwarden_traffic_backends() -> list[type]:
    return [MlflowAliasBackend]
