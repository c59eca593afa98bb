"""Every built-in drift method's docstring example runs (doctest) and has the sections."""

from __future__ import annotations

import doctest
import importlib

import pytest

from mlwarden.plugins.drift import MODULES


@pytest.mark.parametrize("dotted", MODULES)
def test_docstring_examples_run(dotted):
    module = importlib.import_module(dotted)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{dotted} has no doctest example"
    assert result.failed == 0


@pytest.mark.parametrize("dotted", MODULES)
def test_docstring_has_summary_parameters_example_references(dotted):
    module = importlib.import_module(dotted)
    [cls] = module.mlwarden_drift_methods()
    doc = cls.__doc__ or ""
    summary, _, rest = doc.partition("\n\n")
    assert summary.strip() and "\n" not in summary.strip()
    for section in ("Parameters\n", "Example\n", "References\n"):
        assert section in rest, f"{cls.__name__} docstring lacks {section.strip()}"
