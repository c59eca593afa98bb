"""Performance monitoring through the real ingest path: metrics, history, degradation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from mlwarden import hookimpl
from mlwarden.daemon.warden import Warden

CONFIG = """
[monitoring]
window_hours = 1
interval_seconds = 3600
performance_threshold = 0.15
min_performance_samples = 30
[[models]]
name = "m"
[[models]]
name = "cls"
task = "classification"
[[models]]
name = "trade"
[models.trading]
periods_per_year = 8760
"""


class Events:
    def __init__(self) -> None:
        self.seen = []

    @hookimpl
    def mlwarden_event(self, event):
        self.seen.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.seen if e.kind.startswith("performance_")]


class Clock:
    now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def perf(make_config, make_client):
    clock = Clock()
    events = Events()
    warden = Warden(make_config(CONFIG), clock=clock)
    await warden.start()
    warden.pm.register(events, name="test-events")
    yield warden, clock, events, await make_client(warden)
    await warden.stop()


async def send(warden, model, start, predictions, labels, ts, version="1.0.0", latency=None):
    ingest = warden.ingest
    records = []
    for i, (p, t) in enumerate(zip(predictions, ts, strict=True)):
        rec = {"id": f"{model}-{start + i}", "ts": float(t), "version": version,
               "features": {"x": float(i)}, "prediction": p}  # fmt: skip
        if latency is not None:
            rec["latency_ms"] = latency
        records.append(rec)
    await ingest.record_predictions(model, {"records": records})
    pairs = [{"id": f"{model}-{start + i}", "label": y} for i, y in enumerate(labels)]
    await ingest.record_labels(model, {"labels": pairs})


async def test_degradation_raises_once_and_recovery_once(perf):
    warden, clock, events, client = perf
    service = warden.performance
    rng = np.random.default_rng(7)
    n = 200

    async def window(start_id: int, noise: float):
        y = rng.normal(size=n)
        p = y + rng.permutation(np.tile([noise, -noise], n // 2))  # mse is exactly noise**2
        ts = np.linspace(clock.now - 3500, clock.now - 10, n)
        await send(warden, "m", start_id, p.tolist(), y.tolist(), ts, latency=20.0)
        return y, p

    y, p = await window(0, 0.1)
    [result] = await service.evaluate("m")
    assert result["metrics"]["mse"] == pytest.approx(skm.mean_squared_error(y, p))
    assert result["metrics"]["r2"] == pytest.approx(skm.r2_score(y, p))
    assert result["metrics"]["latency_p95"] == pytest.approx(0.02)
    assert (result["baseline_source"], result["event"]) == ("first_window", None)
    baseline = result["metrics"]["mse"]

    clock.now += 3600
    await window(1000, 0.4)  # mse ~16x the baseline
    [result] = await service.evaluate("m")
    assert result["degraded"] and result["event"] == "performance_degraded"
    assert result["baseline"] == baseline and result["fall"] > 0.15
    await service.evaluate("m")  # still degraded: no second event
    assert events.kinds() == ["performance_degraded"]
    degraded = next(e for e in events.seen if e.kind == "performance_degraded")
    assert degraded.data["threshold"] == 0.15 and degraded.data["metric"] == "mse"

    clock.now += 3600
    await window(2000, 0.1)
    await service.evaluate("m")
    await service.evaluate("m")
    assert events.kinds() == ["performance_degraded", "performance_recovered"]

    # the history is persisted and served
    resp = await client.get("/api/models/m/performance-history?days=1")
    body = await resp.json()
    assert resp.status == 200, body
    assert len(body["history"]) == 5
    assert body["state"]["1.0.0"]["degraded"] is False
    history = await warden.get_model_performance_history("m", days=30)
    assert history["history"][0]["metrics"]["mse"] == pytest.approx(baseline)
    for query, status in (("days=abc", 400), ("days=-1", 400)):
        assert (await client.get(f"/api/models/m/performance-history?{query}")).status == status
    assert (await client.get("/api/models/nope/performance-history")).status == 404
    text = await (await client.get("/metrics")).text()
    assert 'mlwarden_model_metric{metric="mse",model="m",version="1.0.0"}' in text
    clock.now += 31 * 86400  # past monitoring.retention_days (30)
    assert await service.purge() == 5
    assert (await warden.get_model_performance_history("m", days=365))["history"] == []


async def test_hovering_at_the_threshold_does_not_flap(perf):
    warden, clock, events, _ = perf
    service = warden.performance
    # baseline mse 1.0 (errors of exactly +-1), then falls of 20 %, 10 %, 20 %, 10 %:
    # degraded once; 10 % is above half the threshold, so no recovery in between.
    start = 0
    for scale in (1.0, 1.2**0.5, 1.1**0.5, 1.2**0.5, 1.1**0.5):
        y = np.zeros(60)
        p = np.tile([scale, -scale], 30)
        ts = np.linspace(clock.now - 3000, clock.now - 10, 60)
        await send(warden, "m", start, p.tolist(), y.tolist(), ts)
        start += 60
        await service.evaluate("m")
        clock.now += 3600
    assert events.kinds() == ["performance_degraded"]


async def test_classification_and_trading_metrics_from_outcomes(perf):
    warden, clock, _, client = perf
    service = warden.performance
    rng = np.random.default_rng(3)
    y = rng.choice(["0", "1"], size=100).tolist()
    p = [v if rng.uniform() < 0.8 else str(rng.choice(["0", "1"])) for v in y]
    ts = np.linspace(clock.now - 3000, clock.now - 10, 100)
    await send(warden, "cls", 0, p, y, ts)
    [result] = await service.evaluate("cls")
    got = result["metrics"]
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert got["f1"] == pytest.approx(skm.f1_score(y, p, pos_label="1"))
    assert got["recall_macro"] == pytest.approx(skm.recall_score(y, p, average="macro"))

    returns = rng.normal(0.001, 0.01, size=100)
    forecasts = returns + rng.normal(0, 0.01, size=100)
    await send(warden, "trade", 0, forecasts.tolist(), returns.tolist(), ts)
    [result] = await service.evaluate("trade")
    strategy = np.sign(forecasts) * returns
    expected = strategy.mean() / strategy.std(ddof=1) * np.sqrt(8760)
    assert result["metrics"]["sharpe"] == pytest.approx(expected)
    assert result["metric"] == "sharpe"
    assert result["metrics"]["win_rate"] == pytest.approx(np.mean(strategy > 0))

    # The model report carries the trading metrics and plots each one over time.
    resp = await client.get("/api/models/trade/report?format=json")
    assert resp.status == 200, await resp.text()
    performance = (await resp.json())["performance"]
    assert performance["trading"] is True
    [window] = performance["history"]
    assert window["metrics"]["sharpe"] == pytest.approx(expected)
    assert {"max_drawdown", "win_rate"} <= set(window["metrics"])
    resp = await client.get("/api/models/trade/report")
    html = await resp.text()
    assert "Performance over time" in html
    for trace in ("sharpe (1.0.0)", "max_drawdown (1.0.0)", "win_rate (1.0.0)"):
        assert f'"name":"{trace}"' in html, trace  # a trace of the performance plot


async def test_registered_metric_is_the_baseline(perf):
    import asyncio

    from tests.daemon.registry.helpers import log_model_files

    warden, clock, events, _ = perf
    run_id = await asyncio.to_thread(log_model_files, warden)
    await warden.register_model("m", run_id=run_id, metrics={"mse": 0.01})
    y = np.zeros(60)
    p = np.tile([0.2, -0.2], 30)  # mse 0.04: four times the registered 0.01
    await send(
        warden, "m", 0, p.tolist(), y.tolist(), np.linspace(clock.now - 3000, clock.now - 1, 60)
    )
    [result] = await warden.performance.evaluate("m")
    assert (result["baseline_source"], result["baseline"]) == ("registered", 0.01)
    assert events.kinds() == ["performance_degraded"]
