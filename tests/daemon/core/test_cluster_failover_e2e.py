"""Three real ``mlwarden run`` daemons on one PostgreSQL and one ``mlflow server``.

Issue 18's second "done when", in one run:

(a) predictions sent round-robin to the three daemons (one batch retried at the next
    daemon after the first refused the connection) and labels sent through another
    daemon than their predictions: every daemon's drift report and the performance
    figures are a lone SQLite daemon's, fed the same data;
(b) kill -9 of the daemon that holds every singleton lease (rollouts, scheduler,
    training jobs, alerts, outbox), in the middle of a canary, while the alert receiver
    (a real HTTP server behind apprise's ``json://``) is down, a second before a cron
    slot: another daemon takes the work over, the canary continues from its step (each
    traffic step once, each analysed step once), every alert reaches the receiver
    exactly once when it is back, every acknowledged record is counted once, and each
    cron slot makes exactly one job.

Everything is asserted on counts, states and order; the takeover time is printed, and
measured in benchmarks/cluster.py.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from mlwarden.plugins.triggers.schedule import next_run
from tests.daemon.alerts.test_outbox_exactly_once import until
from tests.daemon.core.cluster_e2e import (
    SINGLETONS,
    call,
    canary_batch,
    cluster_config,
    drift_batch,
    drift_labels,
    leases,
    ok,
    send_batch,
    statistics,
)
from tests.daemon.monitoring.test_drift_e2e import frame
from tests.daemon.registry.test_mlflow_server_daemon import _log_model
from tests.helpers import DaemonProcess
from tests.plugins.notifiers.test_apprise import Receiver

BATCHES = 6  # drift-model batches; the kill comes after the first three


async def _start(daemons) -> None:
    for daemon in daemons:
        daemon.start(wait=False)
    await asyncio.gather(*(asyncio.to_thread(d.wait_healthy, 120) for d in daemons))


async def _at_step(daemon, rollout_id: str, step: int) -> None:
    async def at_step():
        rollout = await ok(daemon, "GET", f"/api/rollouts/{rollout_id}")
        return rollout["state"] == "progressing" and rollout["step"] == step

    await until(at_step, 60, f"the canary at step {step}")


async def _feed_step(daemons, model: str, rollout_id: str, step: int) -> None:
    """Labelled outcomes of both versions inside the step's window, through the daemons
    in turn (labels through another daemon than their predictions): the step's
    analysis passes once they are in; until then it waits (too few samples)."""
    await _at_step(daemons[0], rollout_id, step)
    for k, version in enumerate(("1.0.0", "2.0.0")):
        body = canary_batch(f"s{step}", version, 6)
        sender = daemons[k % len(daemons)]
        status, answer = await call(sender, "POST", f"/api/models/{model}/predictions", body)
        assert status == 201, answer
        labels = {
            "labels": [
                {"id": i, "label": p}
                for i, p in zip(body["columns"]["id"], body["columns"]["prediction"], strict=True)
            ]
        }
        other = daemons[(k + 1) % len(daemons)]
        joined = await ok(other, "POST", f"/api/models/{model}/labels", labels)
        assert joined["matched"] == 6, joined


async def _before_the_minute() -> None:
    """Sleep until 0.8-1.6 s before the next minute boundary (a cron slot)."""
    left = 60.0 - time.time() % 60.0
    if left < 0.8:
        left += 60.0
    await asyncio.sleep(max(0.0, left - 1.6))


async def test_three_daemons_count_like_one_and_fail_over_mid_canary(
    daemon_factory, postgres_url, mlflow_server, tmp_path: Path
):
    suffix = uuid.uuid4().hex[:8]
    drift_model, canary_model = f"d-{suffix}", f"m-{suffix}"
    experiment = f"exp-{suffix}"
    reference = tmp_path / "reference.csv"
    frame(20000, seed=1).to_csv(reference, index=False)
    receiver = Receiver()  # down until after the failover
    common = {
        "experiment": experiment,
        "reference": str(reference),
        "drift_model": drift_model,
        "receiver_port": receiver.port,
    }
    text = cluster_config(
        postgres_url=postgres_url,
        mlflow_url=mlflow_server.url,
        canary_model=canary_model,
        **common,
    )
    a, b, c = (daemon_factory(text, name=n, env={"MLWARDEN_INSTANCE": n}) for n in ("a", "b", "c"))
    lone = daemon_factory(
        cluster_config(postgres_url=None, mlflow_url=None, canary_model=None, **common),
        name="lone",
        env={"MLWARDEN_INSTANCE": "lone"},
    )
    # a alone first: it takes every singleton, so killing it moves all of them.
    await _start([a])

    async def a_holds_all():
        held = await leases(a)
        return all(held.get((kind, ""), ("",))[0] == "a" for kind in SINGLETONS) and held

    await until(a_holds_all, 30, "daemon a holding every singleton")
    await _start([b, c, lone])
    run = Run(a, b, c, lone, receiver, drift_model, canary_model, experiment, mlflow_server.url)
    try:
        await _run(run)
    finally:
        await receiver.down()
        for daemon in (b, c, lone):
            assert await asyncio.to_thread(daemon.stop) == 0, daemon.log()[-3000:]


@dataclass
class Run:
    """The daemons of one run (a, b, c on PostgreSQL; lone on SQLite) and its names."""

    a: DaemonProcess
    b: DaemonProcess
    c: DaemonProcess
    lone: DaemonProcess
    receiver: Receiver
    drift_model: str
    canary_model: str
    experiment: str
    mlflow_url: str


async def _run(run: Run) -> None:
    a, b, c, lone, receiver = run.a, run.b, run.c, run.lone, run.receiver
    drift_model, canary_model = run.drift_model, run.canary_model
    daemons = [a, b, c]
    # -- a canary of 2.0.0 against 1.0.0, started through b (a holds the rollouts) ------
    for version in ("1.0.0", "2.0.0"):
        uri = await asyncio.to_thread(_log_model, run.mlflow_url, run.experiment)
        record = await ok(
            b,
            "POST",
            f"/api/models/{canary_model}/versions",
            {"model_uri": uri, "version": version},
        )
        assert record["version"] == version, record
    await ok(c, "POST", f"/api/models/{canary_model}/promote", {"version": "1.0.0"})
    started = await ok(
        b, "POST", f"/api/models/{canary_model}/promote", {"version": "2.0.0", "strategy": "canary"}
    )
    rollout_id = started["id"]

    # -- (a) predictions round-robin, labels through another daemon ----------------------
    sent_rows, bodies, takers = 0, {}, {}
    now = time.time()
    for k in range(BATCHES // 2):
        bodies[k] = drift_batch(k, now - 30 + k)
        takers[k], refused = await send_batch(daemons, k, drift_model, bodies[k], f"batch-{k}")
        assert (takers[k], refused) == ("abc"[k], 0)
        await send_batch([lone], 0, drift_model, bodies[k], f"batch-{k}")
        sent_rows += len(bodies[k]["columns"]["id"])

    await _feed_step(daemons, canary_model, rollout_id, 0)
    await _at_step(c, rollout_id, 1)  # and it waits there for its samples

    # The alerts of the two steps are queued, and the sends to the receiver fail (the
    # rows of one destination go in order: the oldest is tried again and again).
    async def attempted():
        rows = (await ok(b, "GET", "/api/notifications?limit=1000"))["notifications"]
        steps = [r for r in rows if r["notification"]["labels"].get("alertname") == "RolloutStep"]
        return len(steps) >= 2 and any(r["attempts"] >= 2 for r in rows) and rows

    await until(attempted, 60, "failed first sends of the step alerts")

    # -- (b) kill -9 of a, a second before a cron slot, mid-canary, receiver down --------
    before = await leases(b)
    assert all(before[(kind, "")][0] == "a" for kind in SINGLETONS), before
    await _before_the_minute()
    killed_at = time.monotonic()
    slot = next_run("* * * * *", time.time())
    await asyncio.to_thread(a.kill)

    # Batch 3 goes to a (dead): refused, retried at b with the same batch id.
    for k in range(BATCHES // 2, BATCHES):
        bodies[k] = drift_batch(k, now - 30 + k)
        takers[k], refused = await send_batch(daemons, k, drift_model, bodies[k], f"batch-{k}")
        assert (takers[k], refused) == (("b", 1) if k == 3 else ("abc"[k % 3], 0))
        await send_batch([lone], 0, drift_model, bodies[k], f"batch-{k}")
        sent_rows += len(bodies[k]["columns"]["id"])

    async def taken_over():
        held = await leases(b)
        owners = {held.get((kind, ""), ("a",))[0] for kind in SINGLETONS}
        return "a" not in owners and held

    after = await until(taken_over, 60, "every singleton taken over from a")
    print(f"singletons taken over {time.monotonic() - killed_at:.2f}s after the kill")
    for kind in SINGLETONS:
        assert after[(kind, "")][1] > before[(kind, "")][1], (kind, before, after)

    # The canary goes on from step 1 at its new holder.
    await _feed_step([b, c], canary_model, rollout_id, 1)

    async def promoted():
        rollout = await ok(c, "GET", f"/api/rollouts/{rollout_id}")
        return rollout["state"] == "promoted" and rollout

    rollout = await until(promoted, 60, "the canary promoted")
    await receiver.up()

    # -- the canary: each step once, in order; each analysed step once -------------------
    history = (await ok(b, "GET", f"/api/models/{canary_model}/traffic"))["history"]
    weights = [h["weights"] for h in reversed(history)]
    assert weights == [
        {"1.0.0": 1.0},
        {"2.0.0": 0.1, "1.0.0": 0.9},
        {"2.0.0": 0.5, "1.0.0": 0.5},
        {"2.0.0": 1.0},
    ], weights
    decisive = [(x["step"], x["verdict"], x["action"]) for x in rollout["analyses"]]
    decisive = [x for x in sorted(decisive) if x[1] != "inconclusive"]
    assert decisive == [(0, "pass", "traffic"), (1, "pass", "promote")], rollout["analyses"]
    for analysis in rollout["analyses"]:  # each labelled outcome counted once
        if analysis["verdict"] == "pass":
            samples = analysis["samples"]
            assert samples["candidate_outcomes"] == samples["baseline_outcomes"] == 6, analysis

    async def announced():  # the audit entry follows the serving change that promoted
        audit = (await ok(c, "GET", "/api/audit?limit=1000"))["entries"]
        ends = Counter(e["action"] for e in audit if e["action"].startswith("rollout "))
        return "rollout promoted" in ends and ends

    ends = await until(announced, 30, "the promotion's audit entry")
    assert ends == {"rollout started": 1, "rollout promoted": 1}, ends

    # -- each cron slot made exactly one job ---------------------------------------------
    async def slot_fired():
        jobs = (await ok(c, "GET", "/api/jobs?limit=1000"))["jobs"]
        due = [j for j in jobs if _due(j) == slot]
        return len(due) == 2 and jobs

    jobs = await until(slot_fired, 60, "the jobs of the slot that fell in the failover")
    assert all(j["trigger"] == "schedule" and "missed" not in j["reason"] for j in jobs), jobs
    for model in (drift_model, canary_model):
        slots = sorted(_due(j) for j in jobs if j["model"] == model)
        assert len(slots) == len(set(slots)), slots  # no slot twice
        assert np.all(np.diff(slots) == 60.0), slots  # and none skipped
        assert slot in slots

    # Each slot fired once (a second fire would find the job active and make none); the
    # audit entry of a fire follows its job.
    async def fired():
        audit = (await ok(c, "GET", "/api/audit?limit=1000"))["entries"]
        fires = [
            (e["target"], e["detail"]["due_at"]) for e in audit if e["action"] == "trigger fired"
        ]
        return len(fires) >= len(jobs) and Counter(fires)

    fires = await until(fired, 30, "an audit entry for every fire")
    assert set(fires.values()) == {1} and len(fires) == len(jobs), fires

    # -- every alert reached the receiver exactly once ----------------------------------
    async def delivered():
        rows = (await ok(b, "GET", "/api/notifications?limit=1000"))["notifications"]
        return rows and all(r["status"] == "sent" for r in rows) and rows

    rows = await until(delivered, 60, "every notification sent")
    alerts = (await ok(c, "GET", "/api/alerts?state=all&limit=1000"))["alerts"]
    posts = receiver.at("/hook")
    fingerprints = Counter(re.search(r"Alert: (\w+)", p["message"]).group(1) for p in posts)
    assert fingerprints == Counter(a["fingerprint"] for a in alerts), (fingerprints, alerts)
    assert len(rows) == len(posts)
    rules = Counter(a["rule"] for a in alerts)
    assert rules["RolloutStep"] >= 2 and rules["Drift"] == 1, rules
    assert rules["CronFired"] == len(jobs), (rules, len(jobs))

    # -- (a) the same drift report and performance as one daemon ------------------------
    for k, body in bodies.items():
        labels = drift_labels(k, body)
        through = c if takers[k] == "b" else b  # another daemon than the taker (a is dead)
        joined = await ok(through, "POST", f"/api/models/{drift_model}/labels", labels)
        assert joined["matched"] == len(labels["labels"]), joined
        await ok(lone, "POST", f"/api/models/{drift_model}/labels", labels)
    reports = [await ok(d, "POST", f"/api/models/{drift_model}/drift-check") for d in (b, c, lone)]
    assert [r["rows"]["current"] for r in reports] == [sent_rows] * 3, sent_rows
    want = statistics(reports[2])
    for report in reports[:2]:
        assert report["drifted_features"] == reports[2]["drifted_features"] == ["x2"]
        got = statistics(report)
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key
    labelled = {v: 0 for v in ("1.0.0", "2.0.0")}
    for body in bodies.values():
        for i in range(0, len(body["columns"]["id"]), 2):
            labelled[body["columns"]["version"][i]] += 1

    async def measured(daemon):
        history = await ok(daemon, "GET", f"/api/models/{drift_model}/performance-history")
        latest = {}
        for version, entries in _by_version(history).items():
            latest[version] = entries[-1]["metrics"] if entries else {}
        done = all(latest.get(v, {}).get("samples") == n for v, n in labelled.items())
        return done and latest

    cluster_figures = await until(lambda: measured(b), 60, "the cluster's performance")
    lone_figures = await until(lambda: measured(lone), 60, "the lone daemon's performance")
    assert cluster_figures.keys() == lone_figures.keys() == labelled.keys()
    for version, figures in lone_figures.items():
        got = cluster_figures[version]
        assert got.keys() == figures.keys() and "mse" in figures, (got, figures)
        for metric, value in figures.items():
            if isinstance(value, float):
                assert np.isclose(got[metric], value, rtol=1e-9, equal_nan=True), metric
            else:
                assert got[metric] == value, metric


def _due(job: dict) -> float:
    """The cron slot a schedule job was fired for (from its reason)."""
    match = re.search(r"due at (\S+)", job["reason"])
    assert match, job
    return datetime.fromisoformat(match.group(1).rstrip(")")).timestamp()


def _by_version(history: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for entry in history["history"]:
        out.setdefault(entry["version"], []).append(entry)
    return out
