"""One suite for every drift method class: the built-ins and a third-party plugin's.

The classes come from a plugin manager built by ``make_plugin_manager`` (built-ins
through DEFAULT_PLUGINS) with the example plugin project's module added the way a
config's ``daemon.plugins`` adds one. The example project is not installed in the
test environment, so its ``src`` directory is put on ``sys.path`` first: the classes
must be known when the tests are collected. The last test also loads it the way users
get it, installed (the ``example_plugin_site`` fixture) and found by its entry point,
and runs the same checks on it; a third-party author can call these test functions on
their own class the same way.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlwarden.daemon.core.plugins import PluginCatalog, make_plugin_manager
from mlwarden.plugins.drift import DEFAULT_METHODS, MODULES
from mlwarden.plugins.drift.base import FEATURE_KINDS
from mlwarden.types import DriftScore, FeatureData

EXAMPLE_SRC = Path(__file__).resolve().parents[3] / "examples" / "plugin-example" / "src"
if EXAMPLE_SRC.is_dir() and str(EXAMPLE_SRC) not in sys.path:
    sys.path.insert(0, str(EXAMPLE_SRC))

EXTRA = ("mlwarden_example",) if (EXAMPLE_SRC / "mlwarden_example").is_dir() else ()
CATALOG = PluginCatalog(make_plugin_manager(EXTRA, autoload=False))
CLASSES: dict[str, type] = CATALOG.classes("drift_method")
CASES = [
    pytest.param(cls, params, id=f"{name}-{i}")
    for name, cls in sorted(CLASSES.items())
    for i, params in enumerate(getattr(cls, "test_params", None) or [{}])
]
BOGUS = "\x00not-a-valid-value"


# --- data as the profiles hand it over -------------------------------------------------


def feature(kind: str, seed: int, *, size: int = 600, shift: float = 0.0) -> FeatureData:
    """A window of ``size`` rows; ``shift`` moves it (in sd, or share of categories)."""
    rng = np.random.default_rng(seed)
    if kind == "numeric":
        values = rng.normal(10.0 + 3.0 * shift, 3.0, size=size)
        edges = np.linspace(0.0, 20.0, 41)  # stands in for the reference's quantile edges
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=42)
        mean = float(values.mean())
        return FeatureData(
            "f_num", "numeric", sample=values, bin_edges=edges, counts=counts,
            count=size, mean=mean, m2=float(((values - mean) ** 2).sum()),
            minimum=float(values.min()), maximum=float(values.max()),
        )  # fmt: skip
    if kind == "categorical":
        shares = np.array([0.5, 0.3, 0.15, 0.05])
        shares = (1 - shift) * shares + shift * shares[::-1] if shift else shares
        counts = rng.multinomial(size, shares / shares.sum())
        return FeatureData(
            "f_cat", "categorical", categories=("a", "b", "c", "__other__"),
            counts=counts, count=size,
        )  # fmt: skip
    rows = rng.normal(size=(size, 3)) + shift
    return FeatureData("__multivariate__", "multivariate", sample=rows, count=size,
                       columns=("a", "b", "c"))  # fmt: skip


def other_kind(cls: type) -> str | None:
    return next((k for k in FEATURE_KINDS if k not in cls.kinds), None)


def check_score(cls: type, method: Any, score: Any) -> None:
    assert isinstance(score, DriftScore)
    assert score.method == cls.name
    assert isinstance(score.statistic, float) and np.isfinite(score.statistic)
    assert isinstance(score.threshold, float)
    assert isinstance(score.drifted, bool)
    assert score.p_value is None or (type(score.p_value) is float and 0 <= score.p_value <= 1)
    assert score.threshold == method.threshold
    score.to_dict()  # JSON-able shape for the report


# --- the checks ------------------------------------------------------------------------


def test_the_built_ins_and_the_example_are_all_here():
    builtins = {"ks", "psi", "chi2", "wasserstein", "jensen_shannon", "mmd", "page_hinkley"}
    assert builtins <= set(CLASSES)
    assert len(MODULES) == len(builtins)
    if EXTRA:
        assert "mean_shift" in CLASSES
    for kind, names in DEFAULT_METHODS.items():
        assert kind in FEATURE_KINDS
        for name in names:
            assert kind in CLASSES[name].kinds


@pytest.mark.parametrize("cls", CLASSES.values(), ids=list(CLASSES))
def test_name_kinds_and_keyword_only_options(cls):
    assert isinstance(cls.name, str) and cls.name.isidentifier()
    assert list(CLASSES).count(cls.name) == 1
    assert isinstance(cls.kinds, tuple) and cls.kinds
    assert set(cls.kinds) <= set(FEATURE_KINDS)
    parameters = list(inspect.signature(cls).parameters.values())
    for p in parameters:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{cls.name}: {p.name} not keyword-only"
        assert p.default is not inspect.Parameter.empty, f"{cls.name}: {p.name} has no default"
    method = cls()
    assert isinstance(method.threshold, float)
    if parameters:
        with pytest.raises(TypeError):
            cls(parameters[0].default)
    with pytest.raises(TypeError):
        cls(no_such_option=1)
    for p in parameters:  # the message names the option (built-ins also name the method)
        with pytest.raises(ValueError, match=p.name):
            cls(**{p.name: BOGUS})


@pytest.mark.parametrize(("cls", "params"), CASES)
def test_fit_and_score_types(cls, params):
    for kind in cls.kinds:
        method = cls(**params)
        assert method.fit(feature(kind, 1)) is method
        check_score(cls, method, method.score(feature(kind, 2)))


@pytest.mark.parametrize(("cls", "params"), CASES)
def test_no_drift_on_identical_distributions_most_of_the_time(cls, params):
    for kind in cls.kinds:
        flagged = 0
        for rep in range(20):
            method = cls(**params).fit(feature(kind, 1000 + rep, size=1500))
            flagged += method.score(feature(kind, 2000 + rep)).drifted
        assert flagged <= 4, f"{cls.name} on {kind}: {flagged}/20 false alarms"


@pytest.mark.parametrize(("cls", "params"), CASES)
def test_drift_on_a_big_shift(cls, params):
    for kind in cls.kinds:
        method = cls(**params).fit(feature(kind, 3, size=1500))
        score = method.score(feature(kind, 4, shift=1.0))
        assert score.drifted, f"{cls.name} on {kind} misses a big shift: {score}"


@pytest.mark.parametrize(("cls", "params"), CASES)
def test_deterministic(cls, params):
    for kind in cls.kinds:
        reference, current = feature(kind, 5), feature(kind, 6, shift=0.1)
        first = cls(**params).fit(reference)
        a, b = first.score(current), first.score(current)
        c = cls(**params).fit(reference).score(current)
        assert a.to_dict() == b.to_dict() == c.to_dict()


@pytest.mark.parametrize(("cls", "params"), CASES)
@pytest.mark.parametrize("size", [5, 12, 30])
def test_small_nan_free_inputs(cls, params, size):
    for kind in cls.kinds:
        method = cls(**params).fit(feature(kind, 7, size=size))
        check_score(cls, method, method.score(feature(kind, 8, size=size)))


@pytest.mark.parametrize("cls", CLASSES.values(), ids=list(CLASSES))
def test_rejects_wrong_kinds_and_score_before_fit(cls):
    with pytest.raises(RuntimeError):
        cls().score(feature(cls.kinds[0], 9))
    wrong = other_kind(cls)
    if wrong is not None:
        with pytest.raises(ValueError):
            cls().fit(feature(wrong, 9))
    if wrong is not None and "mlwarden.plugins.drift" in cls.__module__:
        method = cls().fit(feature(cls.kinds[0], 9))
        with pytest.raises(ValueError, match=f'"{cls.name}"'):
            method.score(feature(wrong, 10))


def test_the_example_plugin_loaded_through_its_entry_point_conforms(
    example_plugin_site, monkeypatch
):
    """The example installed as a distribution: found by entry point, same checks pass."""
    monkeypatch.syspath_prepend(str(example_plugin_site))
    catalog = PluginCatalog(make_plugin_manager(autoload=True))
    cls = catalog.get("drift_method", "mean_shift")
    info = next(i for i in catalog.infos() if i.name == "mean_shift")
    assert info.origin.startswith("entry point") and "mlwarden-example" in info.origin
    test_name_kinds_and_keyword_only_options(cls)
    test_rejects_wrong_kinds_and_score_before_fit(cls)
    for params in cls.test_params:
        test_fit_and_score_types(cls, params)
        test_no_drift_on_identical_distributions_most_of_the_time(cls, params)
        test_drift_on_a_big_shift(cls, params)
        test_deterministic(cls, params)
        for size in (5, 12, 30):
            test_small_nan_free_inputs(cls, params, size)
