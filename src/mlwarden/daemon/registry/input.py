"""Validation of what a registration carries (the body of ``POST .../versions``).

Every problem raises InvalidInput naming the field and what was expected, before
anything is written to MLflow or the store.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

from ...errors import InvalidInput
from .records import DataWindow
from .semver import BUMPS, Bump, parse_semver

__all__ = [
    "REGISTRATION_FIELDS",
    "Registration",
    "check_model_name",
    "clean_registration",
    "parse_ref",
]

#: Fields a registration body may carry.
REGISTRATION_FIELDS = (
    "model_uri",
    "run_id",
    "artifact_path",
    "version",
    "bump",
    "metrics",
    "params",
    "tags",
    "parent",
    "lineage",
    "author",
    "data_window",
    "description",
)

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class Registration(TypedDict):
    """A registration body once validated: what ``register_version`` works from."""

    model_uri: str
    version: NotRequired[str]
    bump: NotRequired[Bump]
    parent: NotRequired[str]
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    lineage: dict[str, str]
    author: NotRequired[str]
    description: str
    data_window: DataWindow | None


def check_model_name(name: object) -> str:
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise InvalidInput(
            "model name: expected 1-128 letters, digits, '_', '-' or '.', starting with a "
            f"letter or digit, got {name!r}"
        )
    return name


def clean_registration(body: Mapping[str, Any]) -> Registration:
    """A validated, normalised copy of a registration body."""
    unknown = sorted(set(body) - set(REGISTRATION_FIELDS))
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(unknown)}; expected some of: "
            + ", ".join(REGISTRATION_FIELDS)
        )
    model_uri, run_id = body.get("model_uri"), body.get("run_id")
    if (model_uri is None) == (run_id is None):
        raise InvalidInput("give exactly one of 'model_uri' and 'run_id'")
    if run_id is not None:
        _string(run_id, "run_id")
        path = body.get("artifact_path", "model")
        _string(path, "artifact_path")
        model_uri = f"runs:/{run_id}/{path.strip('/')}"
    elif "artifact_path" in body:
        raise InvalidInput("'artifact_path' goes with 'run_id', not with 'model_uri'")
    uri = _string(model_uri, "model_uri")
    version = body.get("version")
    version = str(parse_semver(version, "version")) if version is not None else None
    bump = _bump(body.get("bump"))
    if bump is not None and version is not None:
        raise InvalidInput("give 'version' or 'bump', not both")
    parent = body.get("parent")
    parent = str(parse_semver(parent, "parent")) if parent is not None else None
    metrics = _metrics(body.get("metrics"))
    params = _flat(body.get("params"), "params", structured=True)
    tags = _flat(body.get("tags"), "tags")
    lineage = _flat(body.get("lineage"), "lineage")
    author = _string(body["author"], "author") if body.get("author") is not None else None
    description = body.get("description") or ""
    if not isinstance(description, str):
        raise InvalidInput("description: expected a string")
    out: Registration = {
        "model_uri": uri,
        "metrics": metrics,
        "params": params,
        "tags": tags,
        "lineage": lineage,
        "description": description,
        "data_window": _data_window(body.get("data_window")),
    }
    if version is not None:
        out["version"] = version
    if bump is not None:
        out["bump"] = bump
    if parent is not None:
        out["parent"] = parent
    if author is not None:
        out["author"] = author
    return out


def _bump(value: object) -> Bump | None:
    if value is None:
        return None
    for bump in BUMPS:
        if value == bump:
            return bump
    raise InvalidInput(f"bump: expected one of {', '.join(BUMPS)}, got {value!r}")


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _metrics(value: object) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"metrics: expected an object of name -> number, got {value!r}")
    out: dict[str, float] = {}
    for key, number in value.items():
        if (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not math.isfinite(number)
        ):
            raise InvalidInput(f"metrics.{key}: expected a finite number, got {number!r}")
        out[str(key)] = float(number)
    return out


def _flat(value: object, where: str, *, structured: bool = False) -> dict[str, str]:
    """An object of name -> scalar, values kept as text (as MLflow stores them).

    With ``structured`` (params), arrays and objects are accepted and kept as JSON text
    (``hidden_layers = [64, 32]`` is a legitimate hyperparameter).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where}: expected an object of name -> value, got {value!r}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if structured and isinstance(item, list | tuple | dict):
            try:
                out[str(key)] = json.dumps(item, sort_keys=True, allow_nan=False)
            except (TypeError, ValueError):
                raise InvalidInput(
                    f"{where}.{key}: expected JSON-serialisable finite values, got {item!r}"
                ) from None
            continue
        if not isinstance(item, str | int | float | bool) or (
            isinstance(item, float) and not math.isfinite(item)
        ):
            raise InvalidInput(f"{where}.{key}: expected a string, number or boolean, got {item!r}")
        if not str(key):
            raise InvalidInput(f"{where}: empty key")
        out[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
    return out


def _data_window(value: object) -> DataWindow | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) - {"start", "end"}:
        raise InvalidInput(
            'data_window: expected {"start": ..., "end": ...} (ISO dates or Unix times)'
        )
    window: DataWindow = {}
    if "start" in value:
        window["start"] = _moment(value["start"], "start")
    if "end" in value:
        window["end"] = _moment(value["end"], "end")
    return window


def _moment(item: object, key: str) -> str | float | None:
    if item is None or (isinstance(item, str | int | float) and not isinstance(item, bool)):
        return item
    raise InvalidInput(f"data_window.{key}: expected an ISO date or a Unix time")


def parse_ref(text: object, where: str) -> tuple[str, str]:
    """``name@version`` -> (name, version); InvalidInput names the query parameter."""
    if not isinstance(text, str) or "@" not in text:
        raise InvalidInput(f"{where}: expected NAME@VERSION such as 'btc@1.2.0', got {text!r}")
    name, _, version = text.rpartition("@")
    if not name:
        raise InvalidInput(f"{where}: expected NAME@VERSION, the name is empty")
    parse_semver(version, where)
    return name, version
