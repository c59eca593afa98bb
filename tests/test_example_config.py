"""examples/mlwarden.toml loads, shows every key of the configuration, and its defaults."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from mlwarden.daemon.core.config import Config
from mlwarden.daemon.core.config_loader import load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mlwarden.toml"
#: Keys the example sets to something other than the default, on purpose.
NOT_DEFAULT = {"daemon.base_path"}
#: Sections whose values in the example are the defaults (the others hold examples).
DEFAULT_SECTIONS = (
    "daemon",
    "store",
    "mlflow",
    "monitoring",
    "training",
    "ab_testing",
    "alerts",
)


def config_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the configuration (``models.trainer``, ``auth.tokens.sha256``)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue
        dotted = f"{prefix}{f.name}"
        keys.append(dotted)
        hint = hints[f.name]
        inner = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint
        if dataclasses.is_dataclass(inner):
            keys.extend(config_keys(inner, dotted + "."))
    return keys


def test_example_loads():
    config = load_config(EXAMPLE, env={})
    assert config.daemon.base_path == "/var/lib/mlwarden"
    assert config.models[0].name == "btc-usdt-direction"
    assert config.auth.tokens[0].role == "viewer"
    assert config.notifiers[0].min_severity == "critical"


def test_example_shows_every_key():
    text = EXAMPLE.read_text()
    missing = []
    for dotted in config_keys():
        name = dotted.rpartition(".")[2]
        as_key = re.search(rf"^\s*{name}\s*=", text, re.M)
        as_table = re.search(rf"^\[\[?{re.escape(dotted)}[\].]", text, re.M)
        if not (as_key or as_table):
            missing.append(dotted)
    assert not missing, (
        f"examples/mlwarden.toml does not show {missing}: add each with its default and a "
        "comment (and a row in docs/configuration.md)"
    )


def test_example_values_are_the_defaults():
    config = load_config(EXAMPLE, env={})
    defaults = Config()
    differ = []
    for section in DEFAULT_SECTIONS:
        shown = dataclasses.asdict(getattr(config, section))
        default = dataclasses.asdict(getattr(defaults, section))
        for key, value in default.items():
            if key != "rules" and shown[key] != value and f"{section}.{key}" not in NOT_DEFAULT:
                differ.append(f"{section}.{key}: example {shown[key]!r}, default {value!r}")
    assert not differ, differ
