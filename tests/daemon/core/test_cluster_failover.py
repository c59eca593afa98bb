"""Three real ``mlwarden run`` daemons on one PostgreSQL: work spreads, moves on kill -9."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import sqlalchemy as sa

from mlwarden.daemon.core.store import Store
from mlwarden.daemon.monitoring.drift import reports_table
from tests.helpers import wait_until

TTL = 2.0
INTERVAL = 1.0
MODELS = ("m1", "m2", "m3")


def cluster_config(url: str, reference) -> str:
    models = "".join(
        f'[[models]]\nname = "{name}"\nreference = "{reference}"\nfeatures = ["x1"]\n'
        for name in MODELS
    )
    return (
        f'[daemon]\ndatabase_url = "{url}"\n'
        f"[cluster]\nlease_ttl_seconds = {TTL}\nheartbeat_seconds = 0.5\n"
        f"[monitoring]\ninterval_seconds = {INTERVAL}\nmin_window_rows = 10\n" + models
    )


def owners(daemon) -> dict[str, str]:
    status, view = daemon.call("GET", "/api/system/cluster")
    assert status == 200, view
    leases = view["leases"]
    return {x["key"]: x["owner"] for x in leases if x["kind"] == "model" and not x["expired"]}


async def reports(url: str) -> dict[str, list[float]]:
    store = Store(url)
    await store.open()
    try:
        async with store.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(reports_table.c.model, reports_table.c.ts).order_by(
                        reports_table.c.ts
                    )
                )
            ).all()
    finally:
        await store.close()
    out: dict[str, list[float]] = {m: [] for m in MODELS}
    for model, ts in rows:
        out[model].append(ts)
    return out


async def test_three_daemons_spread_the_checks_and_take_over_a_killed_one(
    daemon_factory, postgres_url, tmp_path
):
    reference = tmp_path / "reference.csv"
    pd.DataFrame({"x1": np.random.default_rng(1).normal(size=2000)}).to_csv(reference, index=False)
    text = cluster_config(postgres_url, reference)
    daemons = {}
    for name in ("a", "b", "c"):
        daemon = daemon_factory(text, name=name, env={"MLWARDEN_INSTANCE": name})
        daemons[name] = daemon.start()
    a = daemons["a"]
    status, view = a.call("GET", "/api/system/cluster")
    assert status == 200 and {m["instance"] for m in view["members"]} == {"a", "b", "c"}
    assert all(m["alive"] for m in view["members"])
    # Spread: each live daemon ends up with one model (ceil(3 / 3)).
    spread = wait_until(
        lambda: (o := owners(a)) and len(o) == 3 and len(set(o.values())) == 3 and o,
        30,
        f"models spread over the three daemons: {owners(a)}",
    )
    singletons = {x["kind"]: x["owner"] for x in view["leases"] if x["key"] == ""}
    assert {"scheduler", "training-jobs", "alerts", "outbox", "rollouts"} <= set(singletons)
    for daemon in daemons.values():
        _, text_metrics = daemon.call("GET", "/metrics")
        assert 'mlwarden_leases_held{kind="model"} 1.0' in text_metrics
        # The gauge follows the member rows at the daemon's next heartbeat.
        wait_until(
            lambda d=daemon: "mlwarden_cluster_members 3.0" in d.call("GET", "/metrics")[1],
            30,
            "every daemon counting three members",
        )

    # kill -9 the owner of m1: another daemon checks m1 within TTL + one interval.
    victim = daemons[spread["m1"]]
    survivor = next(d for n, d in daemons.items() if n != spread["m1"])
    before = await reports(postgres_url)
    killed_at = time.monotonic()
    victim.kill()
    new_owner = wait_until(
        lambda: (o := owners(survivor)).get("m1") not in (None, spread["m1"]) and o["m1"],
        TTL + INTERVAL + 10,
        "m1 taken over",
    )
    taken_after = time.monotonic() - killed_at
    assert new_owner != spread["m1"]
    last = before["m1"][-1] if before["m1"] else 0.0

    async def checked_again() -> bool:
        return any(ts > last for ts in (await reports(postgres_url))["m1"])

    deadline = time.monotonic() + TTL + INTERVAL + 10
    while not await checked_again():
        assert time.monotonic() < deadline, "m1 was not checked again after the kill"
        time.sleep(0.1)
    checked_after = time.monotonic() - killed_at
    print(f"failover: lease taken after {taken_after:.2f}s, m1 checked after {checked_after:.2f}s")
    # The bound: the lease lapses at most TTL after the victim's last renewal, the next
    # check follows within one interval; 1.5 s of slack for a loaded test machine.
    assert checked_after <= TTL + INTERVAL + 1.5, checked_after

    # No check ran twice: consecutive reports of a model are about one interval apart,
    # never two daemons checking the same model in the same interval.
    time.sleep(2 * INTERVAL)
    for model, stamps in (await reports(postgres_url)).items():
        gaps = np.diff(stamps)
        assert len(stamps) >= 3, (model, stamps)
        assert gaps.min() > INTERVAL * 0.5, (model, gaps.min())
    # The survivors now hold every model between them, with a larger token for m1.
    final = owners(survivor)
    assert set(final) == set(MODELS) and spread["m1"] not in final.values()
