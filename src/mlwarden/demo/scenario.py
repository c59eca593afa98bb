"""The demo's story, driven through the real HTTP API of a running daemon.

1. A calm market: reference data is written, a first ridge model is trained, logged to
   MLflow, registered and put in production; predictions stream through the gateway
   and labels (the realised returns) follow.
2. The market turns volatile: the monitor finds drift, the drift trigger queues a
   training job, the trainer fits a new model on recent data, it is registered in
   validation, passes its gates and is rolled out as a canary.
3. Once the canary is promoted (or rolled back), an A/B test compares the two
   versions; alerts go to the log notifier (and to any apprise URLs given).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..client._core import tls_context
from .config import MODEL
from .market import FEATURES, Market
from .trainer import fit_and_log, fit_ridge

__all__ = ["Scenario"]

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    """What has happened so far; printed as the status line and the final summary."""

    started: float = field(default_factory=time.monotonic)
    predictions: int = 0
    regime: str = "calm"
    milestones: dict[str, float] = field(default_factory=dict)
    #: Set at each new milestone, so the status line shows it at once (``run.py``).
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def mark(self, name: str) -> None:
        if name not in self.milestones:
            self.milestones[name] = time.monotonic() - self.started
            logger.info("demo: %s (t=%.0fs)", name, self.milestones[name])
            self.changed.set()

    def status(self) -> tuple[str, int, str]:
        """What the status line says, without the clock: regime, predictions, last milestone."""
        return self.regime, self.predictions, next(reversed(self.milestones), "starting")


class Scenario:
    """Drives the demo against ``url``; ``shift_after`` seconds of calm before the shift."""

    def __init__(
        self,
        url: str,
        data_dir: Path,
        tracking_uri: str,
        *,
        shift_after: float = 45.0,
        steps_per_tick: int = 20,
        tick_seconds: float = 0.25,
        seed: int = 7,
        cafile: str = "",
    ) -> None:
        self.url = url.rstrip("/")
        #: CA bundle that signed an HTTPS daemon's certificate ("": $MLWARDEN_CA_BUNDLE,
        #: else the system's trust store), as mlwarden.client takes it.
        self.cafile = cafile
        self.data_dir = data_dir
        self.tracking_uri = tracking_uri
        self.shift_after = shift_after
        self.steps_per_tick = steps_per_tick
        self.tick_seconds = tick_seconds
        self.market = Market(seed=seed)
        self.progress = Progress()
        self.first_version: str | None = None
        self.candidate: str | None = None
        self.experiment: str | None = None
        self.concluded = False
        self.streaming_since = time.monotonic()
        self._market_log = data_dir / "market.csv"

    # -- HTTP ------------------------------------------------------------------------

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.url + path, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path} -> {resp.status}: {data}")
            return data

    # -- the story -------------------------------------------------------------------

    async def prepare(self) -> None:
        """Write the reference and the market log; runs before the daemon starts."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.market.history(48)  # warm-up: 24h of returns behind the features
        # A long reference: the features are persistent (24h returns, funding), so a
        # short one would not cover the calm market's own variation.
        reference = self.market.history(20_000)
        self._reference = reference.tail(3000).reset_index(drop=True)
        # With the first model's predictions and the realized targets, the reference
        # lets the daemon estimate the model's error before the labels arrive (DLE).
        model = fit_ridge(self._reference)  # the same fit as bootstrap's fit_and_log
        columns = reference[list(FEATURES)].assign(
            prediction=model.predict(reference[list(FEATURES)]), label=reference["target"]
        )
        columns.to_csv(self.data_dir / "reference.csv", index=False)
        self._reference.to_csv(self._market_log, index=False)

    async def run(self, stop: asyncio.Event) -> None:
        tls = tls_context(self.cafile or None) if self.url.startswith("https:") else None
        connector = aiohttp.TCPConnector(ssl=tls) if tls is not None else None
        async with aiohttp.ClientSession(connector=connector) as self.session:
            await self.bootstrap()
            self.streaming_since = time.monotonic()
            while not stop.is_set():
                await self.tick()
                await self.advance_story()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick_seconds)

    async def bootstrap(self) -> None:
        """Train, register and promote the first model."""
        result = await asyncio.to_thread(
            fit_and_log, self._reference, tracking_uri=self.tracking_uri, run_name="btc-v1"
        )
        record = await self.call(
            "POST",
            f"/api/models/{MODEL}/versions",
            {
                "model_uri": result["model_uri"],
                "metrics": result["metrics"],
                "params": {k: str(v) for k, v in result["params"].items()},
                "tags": {"source": "mlwarden demo"},
            },
        )
        self.first_version = record["version"]
        self.progress.mark(f"model {MODEL} {self.first_version} trained and registered")
        await self.call("POST", f"/api/models/{MODEL}/promote", {"version": self.first_version})
        self.progress.mark(f"{self.first_version} in production, serving through the gateway")
        # A sender with a typo in a feature name: the whole batch is refused, nothing stored.
        bad = {"records": [{"id": "typo", "features": {"ret_1hour": 0.1}, "prediction": 0.0}]}
        async with self.session.post(
            f"{self.url}/api/models/{MODEL}/predictions", json=bad
        ) as resp:
            answer = await resp.json(content_type=None)
        self.progress.mark(
            f"a malformed batch was refused ({resp.status}: {answer['error']['code']})"
        )

    async def tick(self) -> None:
        """Stream one batch: predictions through the gateway, then the realised labels."""
        records, labels, rows = [], [], []
        for _ in range(self.steps_per_tick):
            features = self.market.features()
            rid = uuid.uuid4().hex
            label = self.market.step()
            records.append({"id": rid, "key": rid, "features": features})
            labels.append({"id": rid, "label": label})
            rows.append([features[f] for f in FEATURES] + [label])
        await self.call("POST", f"/api/models/{MODEL}/predict", {"records": records})
        await self.call("POST", f"/api/models/{MODEL}/labels", {"labels": labels})
        with self._market_log.open("a", newline="") as fh:
            csv.writer(fh).writerows(rows)
        self.progress.predictions += len(records)

    async def advance_story(self) -> None:
        p = self.progress
        streamed = time.monotonic() - self.streaming_since
        if p.regime == "calm" and streamed >= self.shift_after:
            self.market.switch("volatile")
            p.regime = "volatile"
            p.mark("market regime shift: calm -> volatile")
        if p.regime != "volatile":
            return
        model = await self.call("GET", f"/api/models/{MODEL}")
        versions = (await self.call("GET", f"/api/models/{MODEL}/versions"))["versions"]
        drift = await self.latest_drift()
        if drift and drift.get("drift_detected"):
            p.mark(f"drift detected ({drift.get('recommendation')})")
        jobs = (await self.call("GET", "/api/jobs"))["jobs"]
        if jobs:
            p.mark("retraining triggered")
        if any(j.get("state") == "succeeded" for j in jobs):
            p.mark("training job succeeded")
        # A version is "training" until its job ends; the candidate is the first after.
        new = [
            v for v in versions if v["version"] != self.first_version and v["status"] != "training"
        ]
        if new and self.candidate is None:
            self.candidate = new[-1]["version"]
            p.mark(f"candidate {self.candidate} registered in validation")
            # The model's configured strategy (canary) takes it from here; promotion
            # from validation runs the validation gates first.
            await self.call("POST", f"/api/models/{MODEL}/promote", {"version": self.candidate})
        if self.candidate:
            await self.follow_candidate(model, versions)

    async def latest_drift(self) -> dict[str, Any] | None:
        history = await self.call("GET", f"/api/models/{MODEL}/drift-history?days=1")
        reports = history.get("reports") or history.get("history") or []
        return reports[-1] if reports else None

    async def follow_candidate(self, model: dict[str, Any], versions: list[dict]) -> None:
        p = self.progress
        deployment = await self.call("GET", f"/api/models/{MODEL}/deployment")
        rollout = deployment.get("rollout") or {}
        if rollout.get("candidate") != self.candidate:
            return
        p.mark(f"{rollout['strategy']} rollout of {self.candidate} started")
        state = rollout.get("state")
        if state == "promoted":
            p.mark(f"{self.candidate} promoted to production")
        elif state in ("rolled_back", "failed"):
            p.mark(f"{self.candidate} rolled back ({rollout.get('reason')})")
        if state not in ("promoted", "rolled_back", "failed", "completed"):
            return
        if self.experiment is None:
            body = {
                "model_a": f"{MODEL}@{self.first_version}",
                "model_b": f"{MODEL}@{self.candidate}",
                "name": f"{self.first_version} vs {self.candidate}",
                "traffic_split": 0.5,
                "duration_hours": 0.05,
            }
            started = await self.call("POST", "/api/experiments", body)
            self.experiment = started["id"]
            p.mark(f"A/B test {self.experiment} started")
        elif not self.concluded:
            record = await self.call("POST", f"/api/experiments/{self.experiment}/evaluate")
            result = record.get("result") or record
            recommendation = result.get("recommendation")
            if recommendation not in (None, "CONTINUE"):
                self.concluded = True
                p.mark(f"A/B test concluded: {recommendation}, winner {result.get('winner')}")

    def status_line(self) -> str:
        p = self.progress
        elapsed = time.monotonic() - p.started
        regime, predictions, last = p.status()
        return f"[demo t={elapsed:5.0f}s] regime={regime:8s} predictions={predictions:6d} | {last}"
