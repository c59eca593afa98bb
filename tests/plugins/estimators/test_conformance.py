"""One suite for every performance estimator class: the built-ins and any plugin's.

The classes come from a plugin manager built by ``make_plugin_manager`` (built-ins
through DEFAULT_PLUGINS, plus the example plugin project when it has an estimator). A
third-party author runs the same checks on their class:
``check_estimator(MyEstimator, options)``.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import numpy as np
import pytest

from mlwarden.daemon.core.plugins import PluginCatalog, make_plugin_manager
from mlwarden.plugins.estimators import DEFAULT_ESTIMATORS, MODULES
from mlwarden.types import EstimationData, MetricEstimate

from .scenarios import classification, regression

CLASSES: dict[str, type] = PluginCatalog(make_plugin_manager(autoload=False)).classes(
    "performance_estimator"
)
CASES = [
    pytest.param(cls, params, id=f"{name}-{i}")
    for name, cls in sorted(CLASSES.items())
    for i, params in enumerate(getattr(cls, "test_params", None) or [{}])
]
BOGUS = "\x00not-a-valid-value"
TASKS = ("classification", "regression")


def data(task: str, seed: int, rows: int, **kwargs: Any) -> EstimationData:
    rng = np.random.default_rng(seed)
    if task == "classification":
        return classification(rng, rows, **kwargs)
    return regression(rng, rows, **kwargs)


def check_estimator(cls: type, options: dict[str, Any]) -> None:
    """The contract of a performance estimator class, on simulated data of its tasks."""
    assert isinstance(cls.name, str) and cls.name.isidentifier()
    assert cls.tasks and set(cls.tasks) <= set(TASKS)
    assert cls.metrics and all(isinstance(m, str) for m in cls.metrics)
    for p in list(inspect.signature(cls).parameters.values()):
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{cls.name}: {p.name} not keyword-only"
        assert p.default is not inspect.Parameter.empty, f"{cls.name}: {p.name} has no default"
    with pytest.raises(TypeError):
        cls(no_such_option=1)
    for key in options:  # the message names the option
        with pytest.raises(ValueError, match=key):
            cls(**{**options, key: BOGUS})
    for task in cls.tasks:
        estimator = cls(**options)
        with pytest.raises(RuntimeError):
            estimator.estimate(data(task, 1, 100))
        reference = data(task, 2, 3000)
        assert estimator.fit(reference) is estimator
        result = estimator.estimate(data(task, 3, 500, labels=False))
        assert set(result) == set(cls.metrics)
        for metric, estimate in result.items():
            assert isinstance(estimate, MetricEstimate) and estimate.metric == metric
            assert type(estimate.value) is float and np.isfinite(estimate.value)
            assert estimate.lower <= estimate.value <= estimate.upper, estimate
            assert estimate.sampling_error >= 0
            assert estimate.realized is None and estimate.error is None
            estimate.to_dict()
        labelled = estimator.estimate(data(task, 4, 500))
        for estimate in labelled.values():
            assert estimate.realized is not None and np.isfinite(estimate.realized)
            assert isinstance(estimate.within_band, bool)


@pytest.mark.parametrize(("cls", "params"), CASES)
def test_every_estimator_keeps_the_contract(cls, params):
    check_estimator(cls, params)


def test_the_built_ins_are_all_here():
    assert {"cbpe", "dle"} <= set(CLASSES)
    assert len(MODULES) == 2
    for task, name in DEFAULT_ESTIMATORS.items():
        assert task in CLASSES[name].tasks


@pytest.mark.parametrize("cls", CLASSES.values(), ids=list(CLASSES))
def test_a_reference_without_labels_is_refused_naming_them(cls):
    for task in cls.tasks:
        with pytest.raises(ValueError, match="labels"):
            cls().fit(data(task, 5, 500, labels=False))


@pytest.mark.parametrize("cls", CLASSES.values(), ids=list(CLASSES))
def test_a_classifier_without_probabilities_is_refused_naming_them(cls):
    if "classification" not in cls.tasks:
        pytest.skip("not a classification estimator")
    reference = dataclasses.replace(data("classification", 6, 500), probabilities=None)
    with pytest.raises(ValueError, match="probabilit"):
        cls().fit(reference)
    fitted = cls().fit(data("classification", 7, 2000))
    current = dataclasses.replace(data("classification", 8, 300), probabilities=None)
    with pytest.raises(ValueError, match="probabilit"):
        fitted.estimate(current)


@pytest.mark.parametrize("cls", CLASSES.values(), ids=list(CLASSES))
def test_a_task_it_does_not_take_is_refused(cls):
    other = [t for t in TASKS if t not in cls.tasks]
    if not other:
        pytest.skip("takes every task")
    with pytest.raises(ValueError, match=other[0]):
        cls().fit(data(other[0], 9, 500))


@pytest.mark.parametrize(("cls", "params"), CASES)
def test_no_shift_estimates_fall_within_their_band_most_of_the_time(cls, params):
    for task in cls.tasks:
        estimator = cls(**params).fit(data(task, 10, 5000))
        hits = total = 0
        for rep in range(8):
            for estimate in estimator.estimate(data(task, 100 + rep, 800)).values():
                hits += bool(estimate.within_band)
                total += 1
        assert hits >= 0.75 * total, f"{cls.name} on {task}: {hits}/{total} within the band"
