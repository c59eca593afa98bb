"""The ``mlflow_alias`` traffic backend: the table mirrored as MLflow aliases and tags."""

from __future__ import annotations

import logging

from ...hookspecs import hookimpl
from ...types import AliasRegistry

__all__ = ["MlflowAliasBackend"]

logger = logging.getLogger(__name__)


class MlflowAliasBackend:
    """Mirror a traffic table in the MLflow model registry.

    - alias ``challenger``: the version other than the production one with the largest
      positive weight (a canary, a blue-green candidate, an A/B arm), removed when no
      other version has traffic;
    - tag ``mlwarden.traffic_weight`` on every version in the table, and ``0`` on the
      versions that leave it.

    The ``champion`` alias is not this backend's: the registry points it at the
    version in ``production``, in the same step as the status (one writer, so that it
    never disagrees with the registry; docs/rollouts.md, "Which version serves").
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
        challenger_alias: str = "challenger",
        champion_alias: str = "champion",
    ) -> None:
        # Kept so that older configs still start; the registry owns the alias.
        if champion_alias != "champion":
            raise ValueError(
                "option 'champion_alias': the registry points 'champion' at the "
                f"production version and it cannot be renamed, got {champion_alias!r} "
                "(remove the option)"
            )
        if not isinstance(challenger_alias, str) or not challenger_alias:
            raise ValueError(
                f"option 'challenger_alias': expected a non-empty string, got {challenger_alias!r}"
            )
        if challenger_alias == "champion":
            raise ValueError("option 'challenger_alias': 'champion' is the registry's alias")
        self.registry = registry
        self.challenger_alias = challenger_alias
        self._tagged: dict[str, set[str]] = {}

    async def apply(self, model: str, weights: dict[str, float]) -> None:
        registry = self.registry
        production = await registry.production(model)
        current = production["version"] if production else None
        others = sorted(
            (v for v in weights if v != current and weights[v] > 0),
            key=lambda v: (-weights[v], v),
        )
        challenger = others[0] if others else None
        await registry.set_alias(model, self.challenger_alias, challenger)
        previous = self._tagged.get(model, set())
        tags = {v: weights.get(v, 0.0) for v in set(weights) | previous}
        for version, weight in tags.items():
            await registry.set_version_tag(model, version, self.tag, f"{weight:g}")
        self._tagged[model] = set(weights)
        logger.debug("mlflow alias of %s: %s=%s", model, self.challenger_alias, challenger)


@hookimpl
def mlwarden_traffic_backends() -> list[type]:
    return [MlflowAliasBackend]
