"""One suite for every registered trigger and trainer class (built-ins and plugins').

A third-party author runs the same checks on their class with
``check_trigger(MyTrigger, options)`` / ``check_trainer(MyTrainer, options)``.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from mlwarden.daemon.core.plugins import PluginCatalog, make_plugin_manager
from mlwarden.types import Decision, Event, TriggerContext

CATALOG = PluginCatalog(make_plugin_manager(autoload=False))
BOGUS = "\x00not-a-valid-value"


def cases(kind: str) -> list:
    return [
        pytest.param(cls, params, id=f"{name}-{i}")
        for name, cls in sorted(CATALOG.classes(kind).items())
        for i, params in enumerate(getattr(cls, "test_params", None) or [{}])
    ]


def keyword_only(cls: type) -> None:
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self":
            continue
        assert param.kind in (param.KEYWORD_ONLY, param.VAR_KEYWORD), (cls, name)


def check_trigger(cls: type, options: dict[str, Any]) -> None:
    assert isinstance(cls.name, str) and cls.name
    keyword_only(cls)
    trigger = cls(**options)
    assert float(trigger.cooldown_seconds) >= 0
    for event in (None, Event(kind="something_else", model="m")):
        context = TriggerContext(model="m", now=1_800_000_000.0, event=event, armed_at=None)
        decision = trigger.evaluate(context)
        if inspect.isawaitable(decision):
            decision = asyncio.run(decision)
        assert isinstance(decision, Decision)
        assert not decision.fire  # nothing to fire on: no data, no event of its kind
    for key in options:
        with pytest.raises((ValueError, TypeError)):
            cls(**{**options, key: BOGUS})


def check_trainer(cls: type, options: dict[str, Any]) -> None:
    assert isinstance(cls.name, str) and cls.name
    keyword_only(cls)
    trainer = cls(**options)
    assert inspect.iscoroutinefunction(trainer.train)
    with pytest.raises(TypeError):
        cls(**options, unknown_option=1)
    for key in options:
        with pytest.raises((ValueError, TypeError)):
            cls(**{**options, key: BOGUS})


@pytest.mark.parametrize(("cls", "options"), cases("trigger"))
def test_trigger_conformance(cls, options):
    check_trigger(cls, options)


@pytest.mark.parametrize(("cls", "options"), cases("trainer"))
def test_trainer_conformance(cls, options):
    check_trainer(cls, options)


def test_every_builtin_is_covered():
    assert set(CATALOG.names("trigger")) >= {"schedule", "drift", "performance", "regime"}
    assert set(CATALOG.names("trainer")) >= {"command", "python"}
