"""The example third-party plugin, installed like a user would, is listed, loaded and called."""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mlwarden.daemon.core.plugins import PluginCatalog, make_plugin_manager
from mlwarden.types import FeatureData

ROOT = Path(__file__).resolve().parents[1]
ORIGIN = "entry point mlwarden_example (mlwarden-example)"


@pytest.fixture
def example(example_plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_plugin_site))
    return PluginCatalog(make_plugin_manager(autoload=True))


def test_entry_point_registers_both_classes_with_version_and_origin(example):
    infos = {i.name: i for i in example.infos()}
    assert (infos["jsonl_file"].kind, infos["mean_shift"].kind) == ("notifier", "drift_method")
    for name in ("jsonl_file", "mean_shift"):
        assert infos[name].plugin == "example"
        assert infos[name].version == "0.2.0"
        assert infos[name].origin == ORIGIN


def test_example_uses_only_the_public_plugin_api():
    allowed = {"mlwarden", "mlwarden.types"}
    package = ROOT / "examples" / "plugin-example" / "src" / "mlwarden_example"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlwarden"):
                assert node.module in allowed, f"{path.name} imports {node.module}"
                if node.module == "mlwarden":
                    assert [a.name for a in node.names] == ["hookimpl"], path.name
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("mlwarden") for a in node.names), path.name


def _feature(values: np.ndarray) -> FeatureData:
    return FeatureData("x", "numeric", sample=values)


def test_mean_shift_matches_scipy_and_holds_its_level(example):
    cls = example.get("drift_method", "mean_shift")
    rng = np.random.default_rng(7)
    ref, cur = rng.normal(0, 1, 300), rng.normal(0.3, 2, 200)
    score = cls(threshold=0.05).fit(_feature(ref)).score(_feature(cur))
    se = math.sqrt(ref.var(ddof=1) / 300 + cur.var(ddof=1) / 200)
    z = (cur.mean() - ref.mean()) / se
    assert score.statistic == pytest.approx(z, rel=1e-9)
    assert score.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    assert score.drifted == (score.p_value < 0.05)
    # Moments alone give the same answer as the sample.
    moments = FeatureData(
        "x", "numeric", count=200, mean=float(cur.mean()), m2=float(((cur - cur.mean()) ** 2).sum())
    )
    assert cls().fit(_feature(ref)).score(moments).statistic == pytest.approx(z, rel=1e-9)
    # Under no drift, the false-positive rate is close to the threshold.
    trials = 400
    false_positives = sum(
        cls(threshold=0.05)
        .fit(_feature(rng.normal(5, 2, 150)))
        .score(_feature(rng.normal(5, 2, 150)))
        .drifted
        for _ in range(trials)
    )
    assert 0.02 <= false_positives / trials <= 0.085
    # A real shift is found nearly always.
    assert (
        cls().fit(_feature(rng.normal(0, 1, 500))).score(_feature(rng.normal(0.5, 1, 500))).drifted
    )


def test_mean_shift_on_constant_windows_stays_finite(example):
    cls = example.get("drift_method", "mean_shift")
    fitted = cls().fit(_feature(np.full(50, 3.0)))
    same = fitted.score(_feature(np.full(40, 3.0)))
    assert (same.statistic, same.p_value, same.drifted) == (0.0, 1.0, False)
    moved = fitted.score(_feature(np.full(40, 3.5)))
    assert math.isfinite(moved.statistic) and moved.statistic > 0
    assert moved.p_value == 0.0 and moved.drifted


@pytest.mark.parametrize(
    "options", [{"threshold": 0}, {"threshold": 1.5}, {"threshold": "x"}, {"min_samples": 1}]
)
def test_mean_shift_rejects_bad_options(example, options):
    with pytest.raises(ValueError, match=f"option '{next(iter(options))}'"):
        example.get("drift_method", "mean_shift")(**options)


def test_mean_shift_refuses_positional_and_unknown_options(example):
    cls = example.get("drift_method", "mean_shift")
    with pytest.raises(TypeError):
        cls(0.05)
    with pytest.raises(TypeError):
        cls(alpha=0.05)


def test_jsonl_file_rejects_bad_options(example):
    cls = example.get("notifier", "jsonl_file")
    with pytest.raises(ValueError, match="option 'path'"):
        cls(path="")
    with pytest.raises(TypeError):
        cls()


def _env(site: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "MLWARDEN_DISABLE_PLUGIN_AUTOLOAD": "",
    }


def test_mlwarden_plugins_lists_the_installed_example(example_plugin_site):
    result = subprocess.run(
        [sys.executable, "-m", "mlwarden", "plugins"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(example_plugin_site),
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split(None, 4) for line in result.stdout.splitlines()}
    assert rows["NAME"] == ["NAME", "KIND", "VERSION", "PLUGIN", "ORIGIN"]
    assert rows["jsonl_file"] == ["jsonl_file", "notifier", "0.2.0", "example", ORIGIN]
    assert rows["mean_shift"] == ["mean_shift", "drift_method", "0.2.0", "example", ORIGIN]
    as_json = subprocess.run(
        [sys.executable, "-m", "mlwarden", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(example_plugin_site),
    )
    listed = {p["name"]: p for p in json.loads(as_json.stdout)}
    assert listed["jsonl_file"]["origin"] == ORIGIN


def test_real_daemon_delivers_an_event_through_the_example_notifier(
    example_plugin_site, daemon_factory, tmp_path
):
    target = tmp_path / "out" / "notifications.jsonl"
    daemon = daemon_factory(
        '[daemon]\nplugins = ["tests.fake_plugins.startup_event"]\n'
        f'[[notifiers]]\nname = "trail"\nplugin = "jsonl_file"\noptions = {{ path = "{target}" }}\n'
        "[alerts]\ngroup_wait_seconds = 0\ntick_seconds = 0.2\n"
        '[[alerts.rules]]\nname = "FakeStarted"\nfire_on = ["fake_plugin_started"]\n',
        env={"PYTHONPATH": os.pathsep.join([str(example_plugin_site), str(ROOT)])},
    ).start()
    deadline = time.monotonic() + 30
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.exists(), daemon.log()
    line = json.loads(target.read_text().splitlines()[0])
    assert line["model"] == "demo-model"
    assert line["severity"] == "warning"
    assert line["status"] == "firing"
    status, health = daemon.call("GET", "/api/system/health")
    assert status == 200
    plugins = {p["name"]: p for p in health["plugins"]}
    assert plugins["jsonl_file"]["origin"] == ORIGIN
    assert health["components"]["alerts"]["status"] == "ok"
    assert daemon.stop() == 0
