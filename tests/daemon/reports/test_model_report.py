"""The model report on a known shift and on none, as JSON and as one HTML file."""

from __future__ import annotations

import re

from mlwarden.daemon.reports.plots import plotly_js
from tests.daemon.reports.helpers import ingest_and_check, model_config


async def test_shifted_features_come_first_and_plots_show_the_shift(
    make_warden, make_client, tmp_path
):
    warden = await make_warden(model_config(tmp_path))
    client = await make_client(warden)
    check = await ingest_and_check(client, shifted=True)
    assert set(check["drifted_features"]) == {"x2", "kind"}

    resp = await client.get("/api/models/m/report?format=json")
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["verdict"]["drift_detected"] is True
    assert report["verdict"]["recommendation"] != "NO_ACTION_NEEDED"
    names = [f["name"] for f in report["features"]]
    assert set(names[:2]) == {"x2", "kind"}, names
    assert not any(f["drifted"] for f in report["features"][2:])
    x2 = next(f for f in report["features"] if f["name"] == "x2")
    methods = {m["method"]: m for m in x2["methods"]}
    assert set(methods) == {"ks", "psi"}
    assert methods["ks"]["p_value"] < 1e-6 and methods["ks"]["drifted"] is True
    dist = x2["distribution"]
    assert dist["kind"] == "numeric"

    def mean(shares):
        centers = [(lo + hi) / 2 for lo, hi in zip(dist["left"], dist["right"], strict=True)]
        return sum(c * s for c, s in zip(centers, shares, strict=True)) / sum(shares)

    # The plotted shares show the shift of 1.5 (within the reference's range).
    assert 0.9 < mean(dist["current"]) - mean(dist["reference"]) < 1.6
    kind = next(f for f in report["features"] if f["name"] == "kind")["distribution"]
    shares = dict(zip(kind["categories"], kind["current"], strict=False))
    assert abs(shares["c"] - 0.5) < 0.05 and abs(shares["a"] - 0.2) < 0.05
    assert len(report["drift_history"]) == 1

    resp = await client.get("/api/models/m/report")
    assert resp.status == 200 and resp.content_type == "text/html"
    html = await resp.text()
    assert html.count(plotly_js()[:200]) == 1  # plotly.js embedded exactly once
    assert not re.search(r"<script[^>]+src=", html)  # nothing loaded from elsewhere
    assert html.index("RETRAIN") < html.index('id="features"')
    assert html.index(">x2<") < html.index(">x1<")
    assert html.count('class="plotly-graph-div"') == len(report["features"]) + 1


async def test_unshifted_data_says_no_action(make_warden, make_client, tmp_path):
    warden = await make_warden(model_config(tmp_path))
    client = await make_client(warden)
    check = await ingest_and_check(client, shifted=False)
    assert check["drifted_features"] == []
    report = await (await client.get("/api/models/m/report?format=json")).json()
    assert report["verdict"]["recommendation"] == "NO_ACTION_NEEDED"
    assert not any(f["drifted"] for f in report["features"])
    html = await (await client.get("/api/models/m/report")).text()
    assert "No action needed" in html


async def test_bad_parameters(make_warden, make_client, tmp_path):
    warden = await make_warden(model_config(tmp_path))
    client = await make_client(warden)
    cases = {
        "/api/models/nope/report": (404, "'nope'"),
        "/api/models/m/report?format=pdf": (400, "'format'"),
        "/api/models/m/report?from=2026-02-01&to=2026-01-01": (400, "after 'to'"),
        "/api/models/m/report?from=yesterday": (400, "ISO 8601"),
        "/api/models/m/report?color=red": (400, "color"),
        "/api/experiments/nope/report": (404, "'nope'"),
        "/api/compliance/report?model=nope": (404, "'nope'"),
    }
    for path, (status, words) in cases.items():
        resp = await client.get(path)
        body = await resp.json()
        assert resp.status == status, (path, body)
        assert words in body["error"]["message"], (path, body)


async def test_a_range_without_data_says_so(make_warden, make_client, tmp_path):
    warden = await make_warden(model_config(tmp_path))
    client = await make_client(warden)
    await ingest_and_check(client, shifted=True)
    path = "/api/models/m/report?from=2001-01-01&to=2001-02-01"
    report = await (await client.get(path + "&format=json")).json()
    assert report["empty"] is True and report["verdict"] is None
    assert "no data for model 'm' between 2001-01-01T00:00:00Z and 2001-02-01" in report["message"]
    html = await (await client.get(path)).text()
    assert "no data for model" in html
    assert "plotly-graph-div" not in html
