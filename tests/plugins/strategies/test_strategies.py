"""Every deployment strategy, built-in or from a plugin, through the same conformance checks."""

from __future__ import annotations

import doctest
import sys
import warnings

import pytest

import mlwarden.plugins.strategies as strategies
import mlwarden.types
from mlwarden.daemon.core.plugins import PluginCatalog, make_plugin_manager
from mlwarden.plugins.strategies import Strategy
from mlwarden.plugins.strategies.blue_green import BlueGreenStrategy
from mlwarden.plugins.strategies.canary import CanaryStrategy
from mlwarden.plugins.strategies.rolling import RollingStrategy
from mlwarden.plugins.strategies.shadow import ShadowStrategy
from mlwarden.types import Analysis, Check, RolloutView, Step

PASS = Analysis("pass", (Check("mse", 1.0, 1.0, 1.1, True),))
FAIL = Analysis("fail", (Check("mse", 2.0, 1.0, 1.1, False),))
WAIT = Analysis("inconclusive", reason="too few samples")


def _catalog() -> dict[str, type]:
    return PluginCatalog(make_plugin_manager(autoload=False)).classes("strategy")


def _cases() -> list[tuple[type, dict]]:
    return [(cls, params) for cls in _catalog().values() for params in cls.test_params]


def _view(
    step: int = -1,
    *,
    now: float = 0.0,
    started: float = 0.0,
    failures: int = 0,
    weight: float = 0.0,
    memo: dict | None = None,
) -> RolloutView:
    return RolloutView(
        "m", "2.0.0", "1.0.0", step, started, now, weight=weight, failures=failures, memo=memo or {}
    )


def _walk(strategy: Strategy, analysis: Analysis, limit: int = 50) -> list[Step]:
    """Drive a strategy as the controller does, with the same analysis at every step."""
    view = _view()
    steps = [strategy.first(view)]
    now, failures, memo = 0.0, 0, {}
    while steps[-1].action in ("traffic", "retry", "wait") and len(steps) < limit:
        last = steps[-1]
        if last.action == "traffic":
            view = _view(
                last.index,
                now=now,
                started=now,
                failures=failures,
                weight=last.weight,
                memo={**memo, **(last.memo or {})},
            )
            memo = dict(view.memo)
        elif last.action == "retry":
            failures += 1
            view = _view(
                view.step, now=now, started=now, failures=failures, weight=view.weight, memo=memo
            )
        now += 10**6
        view = _view(
            view.step,
            now=now,
            started=view.step_started_at,
            failures=failures,
            weight=view.weight,
            memo=memo,
        )
        assert strategy.due(view)
        steps.append(strategy.decide(view, analysis))
    return steps


def test_every_builtin_strategy_is_registered():
    assert {"canary", "blue_green", "rolling", "shadow"} <= set(_catalog())


@pytest.mark.parametrize(("cls", "params"), _cases(), ids=lambda c: getattr(c, "name", str(c)))
def test_conformance(cls, params):
    strategy = cls(**params)
    assert isinstance(strategy, Strategy) and cls.name
    assert isinstance(strategy.options(), dict)
    # Options round-trip: a resumed rollout rebuilds the strategy from what was stored.
    assert cls(**strategy.options()).options() == strategy.options()
    first = strategy.first(_view())
    assert first.action in ("traffic", "promote")
    if first.action == "traffic":
        assert 0.0 <= first.weight <= 1.0 and first.index is not None
    if first.action == "traffic":  # a step that has just begun is not due yet
        assert not strategy.due(_view(first.index, now=0.0, started=0.0))
    # A passing rollout ends in promotion (or completion), a failing one in a rollback.
    ends = _walk(strategy, PASS)
    assert ends[-1].action in ("promote", "complete")
    weights = [s.weight for s in ends if s.action == "traffic"]
    assert weights == sorted(weights)  # traffic only ever moves towards the candidate
    failing = _walk(strategy, FAIL)
    assert failing[-1].action == "rollback"
    assert sum(s.action == "retry" for s in failing) == strategy.failure_budget
    # Too few samples is never a failure: it waits.
    assert strategy.decide(_view(0, now=10**6), WAIT).action == "wait"


def test_canary_walks_its_steps_then_promotes():
    steps = _walk(CanaryStrategy(steps=[5, 25, 50, 100], interval_seconds=60), PASS)
    assert [(s.action, s.weight) for s in steps] == [
        ("traffic", 0.05),
        ("traffic", 0.25),
        ("traffic", 0.5),
        ("promote", None),
    ]


def test_canary_failure_budget_retries_before_rolling_back():
    steps = _walk(CanaryStrategy(failure_budget=2), FAIL)
    assert [s.action for s in steps] == ["traffic", "retry", "retry", "rollback"]
    assert "failure budget 2 exhausted" in steps[-1].reason


def test_canary_waits_for_its_interval():
    canary = CanaryStrategy(interval_seconds=300)
    assert not canary.due(_view(0, now=299.0, started=0.0))
    assert canary.due(_view(0, now=300.0, started=0.0))


def test_blue_green_shadow_bake_then_switch_then_bake():
    bg = BlueGreenStrategy(shadow_bake_seconds=60, interval_seconds=600)
    steps = _walk(bg, PASS)
    assert [(s.action, s.weight, s.mirror) for s in steps] == [
        ("traffic", 0.0, True),
        ("traffic", 1.0, False),
        ("promote", None, False),
    ]
    assert steps[1].confirm is True and steps[2].confirm is False
    # After the switch the baseline is measured over the equally long window before it.
    view = _view(1, now=1600.0, started=1000.0, memo={"switched_at": 1000.0})
    assert bg.windows(view) == ((1000.0, 1600.0), (400.0, 1000.0))
    assert not bg.due(_view(0, now=59.0)) and bg.due(_view(0, now=60.0))


def test_blue_green_switches_back_on_a_failed_bake():
    steps = _walk(BlueGreenStrategy(), FAIL)
    assert [s.action for s in steps] == ["traffic", "rollback"]
    assert steps[-1].reason.startswith("switching back")


def test_rolling_replaces_replicas_in_batches():
    steps = _walk(RollingStrategy(replicas=4, batch_size=1), PASS)
    assert [s.weight for s in steps if s.action == "traffic"] == [0.25, 0.5, 0.75]
    assert steps[-1].action == "promote"
    assert RollingStrategy().thresholds.max_metric_increase is None  # a health gate


def test_shadow_mirrors_then_promotes_or_completes():
    assert [s.action for s in _walk(ShadowStrategy(), PASS)] == ["traffic", "promote"]
    assert [s.action for s in _walk(ShadowStrategy(promote=False), PASS)][-1] == "complete"


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (CanaryStrategy, {"steps": []}, "option 'steps'"),
        (CanaryStrategy, {"steps": [50, 25]}, "strictly increasing"),
        (CanaryStrategy, {"steps": [0, 50]}, "percents in (0, 100]"),
        (CanaryStrategy, {"interval_seconds": 0}, "option 'interval_seconds'"),
        (CanaryStrategy, {"failure_budget": -1}, "option 'failure_budget'"),
        (CanaryStrategy, {"min_samples": 0}, "option 'min_samples'"),
        (CanaryStrategy, {"max_error_rate": 2}, "option 'max_error_rate'"),
        (CanaryStrategy, {"stepz": [1]}, "unknown option(s) stepz"),
        (RollingStrategy, {"replicas": 2, "batch_size": 3}, "option 'batch_size'"),
        (RollingStrategy, {"replicas": 0}, "option 'replicas'"),
        (BlueGreenStrategy, {"shadow_bake_seconds": -5}, "option 'shadow_bake_seconds'"),
        (ShadowStrategy, {"promote": "yes"}, "option 'promote'"),
    ],
)
def test_bad_options_name_the_option(cls, options, message):
    with pytest.raises(ValueError) as info:
        cls(**options)
    assert message in str(info.value)


@pytest.mark.parametrize("name", ["Analysis", "Check", "RolloutView", "Step", "Thresholds"])
def test_contract_names_from_plugins_strategies_warn_and_are_the_types(name):
    with pytest.warns(DeprecationWarning, match=r"import it from mlwarden\.types") as record:
        moved = getattr(strategies, name)
    assert moved is getattr(mlwarden.types, name)
    assert record[0].filename == __file__  # the warning points at the importer


def test_from_import_of_a_moved_name_warns():
    with pytest.warns(DeprecationWarning, match=r"mlwarden\.plugins\.strategies\.Analysis"):
        from mlwarden.plugins.strategies import Analysis as Old
    assert Old is Analysis


def test_strategy_stays_importable_from_plugins_strategies_without_a_warning():
    from mlwarden.plugins.strategies.base import Strategy as Base

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from mlwarden.plugins.strategies import Strategy as Same
    assert Same is Base is Strategy
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = strategies.Nope


@pytest.mark.parametrize(
    "cls", [BlueGreenStrategy, CanaryStrategy, RollingStrategy, ShadowStrategy]
)
def test_docstring_examples_run(cls):
    module = sys.modules[cls.__module__]
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0
