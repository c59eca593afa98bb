"""Semantic versions and the automatic bump rules."""

from __future__ import annotations

import pytest

from mlwarden.daemon.registry.semver import SemVer, choose_bump, next_version, parse_semver
from mlwarden.errors import InvalidInput


def test_parse_and_order_numerically():
    assert parse_semver("1.10.0") > parse_semver("1.9.3")
    assert str(parse_semver(" 2.0.1 ")) == "2.0.1"
    assert SemVer(1, 2, 3).bump("major") == SemVer(2, 0, 0)
    assert SemVer(1, 2, 3).bump("minor") == SemVer(1, 3, 0)
    assert SemVer(1, 2, 3).bump("patch") == SemVer(1, 2, 4)


@pytest.mark.parametrize("bad", ["1.2", "v1.2.0", "01.2.0", "1.2.3.4", "", None, 1, "1.2.-1"])
def test_bad_versions_are_refused_with_the_field_named(bad):
    with pytest.raises(InvalidInput, match="parent: expected a semantic version"):
        parse_semver(bad, "parent")


def test_bump_rules():
    base = {"framework": "sklearn", "inputs": ["a", "b"], "params": {"alpha": "1"}}
    assert choose_bump(base, {**base})[0] == "patch"
    assert choose_bump(base, {**base, "params": {"alpha": "2"}})[0] == "minor"
    assert choose_bump(base, {**base, "framework": "xgboost"})[0] == "major"
    assert choose_bump(base, {**base, "inputs": ["a", "c"]})[0] == "major"
    # unknown inputs on either side do not force a major bump
    assert choose_bump(base, {**base, "inputs": None})[0] == "patch"


def test_next_version_skips_taken_versions():
    assert str(next_version([], None, "patch")) == "1.0.0"
    taken = ["1.0.0", "1.0.1", "1.1.0"]
    assert str(next_version(taken, "1.0.0", "patch")) == "1.0.2"
    assert str(next_version(taken, "1.0.0", "minor")) == "1.2.0"
    assert str(next_version(taken, "1.1.0", "major")) == "2.0.0"
