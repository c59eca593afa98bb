"""alerting/: the Prometheus rules, their unit tests, the Alertmanager and apprise examples.

The binaries are the real ones (Debian ``prometheus`` and ``prometheus-alertmanager``);
``require_binary`` skips locally without them and fails under
``MLWARDEN_REQUIRE_INTEGRATION=1``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from mlwarden.daemon.alerts.notifiers import build_notifiers
from mlwarden.daemon.core.config_loader import load_config
from mlwarden.daemon.core.metrics import Metrics
from mlwarden.daemon.core.plugins import PluginCatalog, make_plugin_manager
from mlwarden.plugins.notifiers.apprise import AppriseNotifier
from tests.helpers import require_binary

ALERTING = Path(__file__).resolve().parents[1] / "alerting"
RULES = ALERTING / "prometheus" / "mlwarden-rules.yml"
RULE_TESTS = ALERTING / "prometheus" / "mlwarden-rules.test.yml"
ALERTMANAGER = ALERTING / "alertmanager" / "alertmanager.yml"
APPRISE_YAML = ALERTING / "apprise" / "apprise.yml"
NOTIFIERS_TOML = ALERTING / "apprise" / "notifiers.toml"

#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_check_rules():
    promtool = require_binary("promtool")
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def test_promtool_test_rules():
    promtool = require_binary("promtool")
    result = run(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test():
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load(RULE_TESTS.read_text())
    fired = {
        case["alertname"]
        for t in tests["tests"]
        for case in t["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert alerts == fired


def test_amtool_check_config():
    amtool = require_binary("amtool")
    result = run(amtool, "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "3 receivers" in result.stdout


def exported_metrics() -> dict[str, set[str]]:
    """Every sample name the daemon exports, with its label names."""
    out: dict[str, set[str]] = {}
    metrics = Metrics()
    for family in metrics.registry.collect():
        labels: set[str] = set()
        for collector_labels in _family_labels(metrics, family.name):
            labels |= collector_labels
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
        for suffix in suffixes.get(family.type, [""]):
            out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def _family_labels(metrics: Metrics, name: str) -> list[set[str]]:
    found = []
    for value in vars(metrics).values():
        if getattr(value, "_name", None) == name:
            found.append(set(value._labelnames))
    return found


def test_rules_use_only_metrics_and_labels_the_daemon_exports():
    exported = exported_metrics()
    rules = yaml.safe_load(RULES.read_text())
    used = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            expr = rule["expr"]
            for name, selector in re.findall(r"(mlwarden_\w+)(?:\{([^}]*)\})?", expr):
                assert name in exported, f"{rule['alert']}: {name} is not exported"
                for label in re.findall(r"(\w+)\s*[=!]~?", selector or ""):
                    assert label in exported[name] | TARGET_LABELS, (
                        f"{rule['alert']}: {name} has no label {label!r}"
                    )
                used += 1
            for by in re.findall(r"by \(([^)]*)\)", expr):
                for label in (x.strip() for x in by.split(",")):
                    assert any(label in labels for labels in exported.values()) or (
                        label in TARGET_LABELS
                    ), f"{rule['alert']}: no metric has label {label!r}"
    assert used >= 10


def test_apprise_yaml_example_loads_with_its_tags():
    assert len(AppriseNotifier(config_file=str(APPRISE_YAML)).targets()) == 4
    assert len(AppriseNotifier(config_file=str(APPRISE_YAML), tag="oncall").targets()) == 2
    assert len(AppriseNotifier(config_file=str(APPRISE_YAML), tag="team").targets()) == 3


def test_notifiers_toml_example_is_a_valid_config(tmp_path):
    text = NOTIFIERS_TOML.read_text().replace("/etc/mlwarden/apprise.yml", str(APPRISE_YAML))
    path = tmp_path / "mlwarden.toml"
    path.write_text(text)
    config = load_config(path, env={})
    pm = make_plugin_manager(autoload=False)
    notifiers = build_notifiers(PluginCatalog(pm), config)
    assert {n: len(x.targets()) for n, x in notifiers.items()} == {"oncall": 2, "team": 2, "log": 1}
    assert config.alerts.repeat_interval_seconds == 14400
