"""mlwarden's Grafana dashboards, built as code with grafana-foundation-sdk.

Run ``python grafana/dashboards.py`` to rewrite grafana/dashboards/*.json; a test fails
when the committed JSON differs from what this code builds. Every query uses only
metrics the daemon exports (a test runs each one against a real Prometheus).

The SDK is pinned (``grafana-foundation-sdk==1769699998!10.1.0``, types generated for
Grafana 10.1, dashboard schemaVersion 36) so the JSON is stable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    GridPos,
    VariableOption,
    VariableRefresh,
)

# The panels are data in grafana/panels.py, beside this script (which is no package).
sys.path.insert(0, str(Path(__file__).parent))
from panels import EXPERIMENT_TRACKING, MODEL_MONITORING, OVERVIEW, PanelSpec, Query

#: The datasource provisioned by grafana/provisioning/datasources/mlwarden.yaml.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="mlwarden-prometheus")
OUT = Path(__file__).parent / "dashboards"


DASHBOARDS = {
    "mlwarden-overview": ("mlwarden / Overview", OVERVIEW, False),
    "mlwarden-model-monitoring": ("mlwarden / Model Monitoring", MODEL_MONITORING, True),
    "mlwarden-experiments": ("mlwarden / Experiment Tracking", EXPERIMENT_TRACKING, True),
}


def _target(query: Query, ref: str) -> Dataquery:
    target = Dataquery().expr(query.expr).ref_id(ref).datasource(DATASOURCE)
    if query.legend:
        target = target.legend_format(query.legend)
    if query.instant:
        target = target.instant().format("table")
    return target


def _panel(spec: PanelSpec, pos: GridPos):
    builder = {"stat": stat.Panel, "timeseries": timeseries.Panel, "table": table.Panel}[
        spec.kind
    ]()
    builder = builder.title(spec.title).datasource(DATASOURCE).grid_pos(pos)
    if spec.description:
        builder = builder.description(spec.description)
    if spec.unit:
        builder = builder.unit(spec.unit)
    for i, query in enumerate(spec.queries):
        builder = builder.with_target(_target(query, chr(ord("A") + i)))
    return builder


def build(uid: str) -> Dashboard:
    title, rows, per_model = DASHBOARDS[uid]
    dash = (
        Dashboard(title)
        .uid(uid)
        .tags(["mlwarden"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
    )
    if per_model:
        dash = dash.with_variable(
            QueryVariable("model")
            .label("Model")
            .datasource(DATASOURCE)
            .query("label_values(model)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .current(VariableOption(selected=False, text="", value=""))
        )
    y = 0
    for row_title, panels in rows.items():
        dash = dash.with_row(Row(row_title).grid_pos(GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        x = 0
        row_height = 0
        for spec in panels:
            if x + spec.width > 24:
                x, y = 0, y + row_height
                row_height = 0
            dash = dash.with_panel(_panel(spec, GridPos(h=spec.height, w=spec.width, x=x, y=y)))
            x += spec.width
            row_height = max(row_height, spec.height)
        y += row_height
    return dash


def render(uid: str) -> str:
    return json.dumps(build(uid).build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def queries() -> list[tuple[str, str, str]]:
    """Every (dashboard uid, panel title, PromQL expression), for the Prometheus test."""
    out = []
    for uid, (_, rows, _) in DASHBOARDS.items():
        for panels in rows.values():
            for spec in panels:
                out.extend((uid, spec.title, query.expr) for query in spec.queries)
    return out


def main(argv: list[str]) -> int:
    OUT.mkdir(exist_ok=True)
    for uid in DASHBOARDS:
        path = OUT / f"{uid}.json"
        path.write_text(render(uid))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
