"""Reading the configuration: one TOML file plus environment overrides, validated.

Every error names the file, the key and what was expected; unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ...errors import ConfigError
from .config import Config
from .config_checks import check_config

__all__ = ["ENV_OVERRIDES", "load_config"]

#: Environment variable -> (section, key). Names kept from the original specification.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "MLFLOW_TRACKING_URI": ("mlflow", "tracking_uri"),
    "MLOPS_BASE_PATH": ("daemon", "base_path"),
    "MLWARDEN_INSTANCE": ("cluster", "instance"),
    "MLWARDEN_STORE_URL": ("store", "url"),
    "MAX_CONCURRENT_TRAINING_JOBS": ("training", "max_concurrent_jobs"),
    "TRAINING_JOB_TIMEOUT_HOURS": ("training", "job_timeout_hours"),
    "MIN_TRAINING_DATA_POINTS": ("training", "min_training_data_points"),
    "DRIFT_THRESHOLD": ("monitoring", "drift_threshold"),
    "PERFORMANCE_THRESHOLD": ("monitoring", "performance_threshold"),
    "MONITORING_WINDOW_HOURS": ("monitoring", "window_hours"),
    "AB_TEST_MIN_DURATION_HOURS": ("ab_testing", "min_duration_hours"),
    "AB_TEST_CONFIDENCE_LEVEL": ("ab_testing", "confidence_level"),
    "AB_TEST_SIGNIFICANCE_THRESHOLD": ("ab_testing", "significance_threshold"),
}


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read ``path`` (or embedded defaults), apply environment and explicit overrides.

    ``overrides`` maps ``"section.key"`` to a value (the CLI's ``--listen`` uses it).
    Raises ConfigError listing every problem found, each naming the file and key.
    """
    env = os.environ if env is None else env
    source = str(path) if path else "<defaults>"
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("file not found", source) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", source) from None
    problems: list[str] = []
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var, "") != "":
            raw.setdefault(section, {})
            if isinstance(raw[section], dict):
                raw[section][key] = _EnvValue(var, env[var])
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        raw.setdefault(section, {})[key] = value
    config = _build(Config, raw, "", problems)
    if not problems:
        problems.extend(check_config(config))
    if problems:
        raise ConfigError(problems, source)
    return dataclasses.replace(config, source=source)


@dataclass(frozen=True)
class _EnvValue:
    """A value that came from an environment variable (a string to be parsed)."""

    var: str
    text: str


def _build(cls: type, raw: Any, where: str, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"key '{where}': expected a table, got {_kind(raw)}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{where}.{key}" if where else key
        if key not in fields:
            expected = ", ".join(sorted(fields))
            problems.append(f"key '{dotted}': unknown key (expected one of: {expected})")
            continue
        kwargs[key] = _coerce(hints[key], value, dotted, problems)
    for name, f in fields.items():
        if (
            name not in kwargs
            and f.default is dataclasses.MISSING
            and (f.default_factory is dataclasses.MISSING)
        ):
            problems.append(f"key '{where}.{name}': required")
    try:
        return cls(**kwargs)
    except TypeError:
        return None


def _coerce(hint: Any, value: Any, where: str, problems: list[str]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(value, _EnvValue):
        value = _parse_env(hint, value, where, problems)
        if value is None:
            return None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where, problems)
    if origin is Literal:
        if value not in args:
            choices = " | ".join(repr(a) for a in args)
            problems.append(f"key '{where}': expected one of {choices}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            problems.append(f"key '{where}': expected an array, got {_kind(value)}")
            return ()
        return tuple(_coerce(args[0], v, f"{where}[{i}]", problems) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"key '{where}': expected a table, got {_kind(value)}")
            return {}
        return {k: _coerce(args[1], v, f"{where}.{k}", problems) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            problems.append(f"key '{where}': expected true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"key '{where}': expected an integer, got {_kind(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"key '{where}': expected a number, got {_kind(value)}")
            return value
        if not math.isfinite(value):
            problems.append(f"key '{where}': expected a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            problems.append(f"key '{where}': expected a string, got {_kind(value)}")
        return value
    return value


def _parse_env(hint: Any, value: _EnvValue, where: str, problems: list[str]) -> Any:
    text = value.text.strip()
    try:
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
    except ValueError:
        kind = "an integer" if hint is int else "a number"
        problems.append(f"environment {value.var} (key '{where}'): expected {kind}, got {text!r}")
        return None
    return text


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__) + f" ({value!r})"
