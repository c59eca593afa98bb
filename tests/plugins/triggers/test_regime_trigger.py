"""The regime trigger on an outcome source of its own, and on outcomes the daemon recorded."""

from __future__ import annotations

import json
import sys

import numpy as np

from mlwarden.daemon.warden import Warden
from mlwarden.plugins.triggers.regime import RegimeTrigger
from mlwarden.types import Outcomes, TriggerContext

PY = sys.executable
START = 1_790_000_000.0


class RecordedOutcomes:
    """An OutcomeSource over fixed labels, one a minute: all a trigger needs of ingest."""

    def __init__(self, labels: np.ndarray) -> None:
        self.ts = START + 60.0 * np.arange(1, len(labels) + 1)
        self.labels = labels
        self.calls: list[tuple[str, float | None]] = []

    async def outcomes(
        self,
        model: str,
        *,
        version: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Outcomes:
        self.calls.append((model, since))
        keep = (self.ts >= (since or -np.inf)) & (self.ts < (until or np.inf))
        n = int(keep.sum())
        return Outcomes(
            id=np.array([f"p{i}" for i in range(n)], dtype=object),
            version=np.full(n, "1.0.0", dtype=object),
            ts=self.ts[keep],
            prediction=np.zeros(n),
            label=self.labels[keep],
            latency=np.full(n, np.nan),
            error=np.zeros(n, dtype=bool),
        )


async def test_fires_on_a_volatility_change_read_from_context_outcomes():
    rng = np.random.default_rng(11)
    source = RecordedOutcomes(
        np.concatenate([rng.normal(0, 0.01, 2000), rng.normal(0, 0.02, 1000)])
    )
    trigger = RegimeTrigger(interval_seconds=0, lookback_hours=100)
    now = float(source.ts[-1]) + 1
    decision = await trigger.evaluate(TriggerContext(model="btc", now=now, outcomes=source))
    assert decision.fire and "(up," in decision.reason, decision.reason
    assert source.calls == [("btc", now - 100 * 3600.0)]
    assert decision.data["change_started_at"] > source.ts[1500]
    again = TriggerContext(model="btc", now=now, outcomes=source, last_fired=now)
    assert not (await trigger.evaluate(again)).fire  # the same change does not fire twice


async def test_without_an_outcome_source_it_does_not_fire_and_says_why():
    decision = await RegimeTrigger().evaluate(TriggerContext(model="btc", now=START))
    assert not decision.fire and "no outcome source" in decision.reason


async def test_regime_change_in_realised_returns_queues_one_job(make_config):
    start = START
    now = [start]
    config = make_config(
        "[training]\nmin_training_data_points = 0\nscheduler_interval_seconds = 3600\n"
        '[[models]]\nname = "btc"\ntriggers = ["regime"]\n'
        "[models.trigger_options.regime]\ninterval_seconds = 0\nlookback_hours = 100\n"
        '[models.trainer]\nplugin = "command"\n'
        f"command = {json.dumps([PY, '-c', 'import time; time.sleep(30)'])}\n"
    )
    rng = np.random.default_rng(11)
    returns = np.concatenate([rng.normal(0, 0.01, 2000), rng.normal(0, 0.02, 1000)])
    async with Warden(config, clock=lambda: now[0]) as w:
        ingest, scheduler = w.ingest, w.scheduler
        ts = start + 60.0 * np.arange(1, len(returns) + 1)
        now[0] = float(ts[1999]) + 1  # first: the calm regime only
        for lo in range(0, 3000, 500):
            hi = lo + 500
            now[0] = max(now[0], float(ts[hi - 1]) + 1)
            records = [
                {"id": f"p{i}", "ts": float(ts[i]), "features": {"x": 0.0}, "prediction": 0.0}
                for i in range(lo, hi)
            ]
            await ingest.record_predictions("btc", {"records": records})
            labels = [{"id": f"p{i}", "label": float(returns[i])} for i in range(lo, hi)]
            await ingest.record_labels("btc", {"labels": labels})
            jobs = await scheduler.tick()
            if hi <= 2000:
                assert jobs == [], hi  # no alarm in the calm regime
        (job,) = await w.jobs.list(model="btc")
        assert job["trigger"] == "regime" and "(up," in job["reason"]
        assert await scheduler.tick() == []  # the same change does not fire twice
        await w.jobs.cancel(job["id"])
