"""The regime trigger on real outcomes recorded through the ingest service."""

from __future__ import annotations

import json
import sys

import numpy as np

from mlwarden.daemon.warden import Warden

PY = sys.executable


async def test_regime_change_in_realised_returns_queues_one_job(make_config):
    start = 1_790_000_000.0
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
