"""The committed dashboards are what grafana/dashboards.py builds, and use real metrics."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from mlwarden.daemon.core.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]


def load_dashboards_module():
    spec = importlib.util.spec_from_file_location(
        "mlwarden_dashboards", ROOT / "grafana/dashboards.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


dashboards = load_dashboards_module()


@pytest.mark.parametrize("uid", sorted(dashboards.DASHBOARDS))
def test_committed_json_is_what_the_code_builds(uid):
    committed = (ROOT / "grafana/dashboards" / f"{uid}.json").read_text()
    assert committed == dashboards.render(uid), (
        f"grafana/dashboards/{uid}.json is stale: run `python grafana/dashboards.py`"
    )


@pytest.mark.parametrize("uid", sorted(dashboards.DASHBOARDS))
def test_dashboard_round_trips_through_the_sdk(uid):
    data = json.loads((ROOT / "grafana/dashboards" / f"{uid}.json").read_text())
    model = Dashboard.from_json(data)
    assert json.loads(json.dumps(model, cls=JSONEncoder)) == data
    assert data["schemaVersion"] == 36
    assert data["uid"] == uid


def exported_metric_names() -> set[str]:
    metrics = Metrics()
    names = set()
    for family in metrics.registry.collect():
        for sample in family.samples:
            names.add(sample.name)
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
    return names


def test_every_panel_query_uses_only_exported_metrics():
    names = exported_metric_names()
    for uid, title, expr in dashboards.queries():
        for used in re.findall(r"\b(mlwarden_[a-z_]+)", expr):
            assert used in names, f"{uid} / {title}: {used} is not exported by the daemon"
        assert "$model" not in expr or uid != "mlwarden-overview"


def test_model_variable_on_per_model_dashboards():
    for uid in ("mlwarden-model-monitoring", "mlwarden-experiments"):
        data = json.loads((ROOT / "grafana/dashboards" / f"{uid}.json").read_text())
        assert [v["name"] for v in data["templating"]["list"]] == ["model"]


def test_counters_are_only_read_through_rate_or_increase():
    """Counters restart at 0 with the daemon (docs/monitoring.md): a panel that reads one
    raw would drop to 0 at every restart."""
    for uid in dashboards.DASHBOARDS:
        data = json.loads((ROOT / "grafana/dashboards" / f"{uid}.json").read_text())
        exprs = re.findall(r'"expr": "((?:[^"\\]|\\.)*)"', json.dumps(data))
        for expr in exprs:
            for match in re.finditer(r"mlwarden_\w+_total\b", expr):
                before = expr[: match.start()]
                assert re.search(r"\b(rate|increase|irate)\($", before), (uid, expr)
    text = (ROOT / "docs/monitoring.md").read_text()
    assert "restart at 0 when the daemon restarts" in text
