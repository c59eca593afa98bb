"""The gateways' serving stats across two daemons on one PostgreSQL store (issue 18).

Wardens A and B share the store and A's MLflow (a server in production); each serves
predictions through its own gateway (real scikit-learn and failing pyfunc models). The
rollout analysis on A must see B's calls as well as its own.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from mlwarden.daemon.rollouts.analysis import VersionSample, latency_quantile
from mlwarden.daemon.rollouts.serving_stats import RATIO
from mlwarden.daemon.rollouts.traffic import FOLLOW_SECONDS
from mlwarden.daemon.warden import Warden
from tests.daemon.rollouts.helpers import (
    MODEL_CONFIG,
    Clock,
    register_broken,
    register_models,
    send_traffic,
)
from tests.helpers import second_warden

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


@pytest.fixture
async def pair(make_config, make_client, tmp_path):
    """(A, client of A, B, client of B, clock, versions)."""
    clock = Clock()
    a = Warden(make_config(MODEL_CONFIG, **{"cluster.instance": "a"}), clock=clock)
    await a.start()
    b = second_warden(make_config, MODEL_CONFIG, a, tmp_path / "b", "b", clock)
    await b.start()
    try:
        versions = await register_models(a)
        yield a, await make_client(a), b, await make_client(b), clock, versions
    finally:
        await b.stop()
        await a.stop()


async def _sees(warden: Warden, table: dict[str, float]) -> None:
    """Wait until ``warden`` routes with ``table`` (another daemon set it)."""
    started = time.monotonic()
    while warden.rollouts.traffic_tables.get("price") != table:
        assert time.monotonic() - started < FOLLOW_SECONDS + 5, "the table never arrived"
        await asyncio.sleep(0.05)


async def _flushed(warden: Warden, versions, since: float, until: float) -> None:
    """Wait until ``warden``'s own calls are in the store (its loop writes every second)."""
    from mlwarden.daemon.rollouts.serving_stats import FLUSH_SECONDS

    gateway = warden.rollouts.gateway
    started = time.monotonic()
    for version in versions:
        want = gateway.serving("price", version).window(since, until)[0]
        while (await gateway.shared.stored("price", version, since, until)).requests < want:
            assert time.monotonic() - started < 10 * FLUSH_SECONDS, "never written"
            await asyncio.sleep(0.1)


async def test_the_analysis_merges_every_gateways_calls(pair):
    a, client_a, b, client_b, clock, (stable, good, _bad) = pair
    table = {stable: 0.5, good: 0.5}
    await a.rollouts.set_traffic("price", table, reason="test", actor="t")
    await _sees(b, table)
    since = clock.now
    for k in range(3):
        await send_traffic(client_a, 100, f"a{k}", seed=k)
        await send_traffic(client_b, 150, f"b{k}", seed=10 + k)
    clock.advance(1)
    await _flushed(b, (stable, good), since, clock.now)
    for version in (stable, good):
        own = [
            w.rollouts.gateway.serving("price", version).window(since, clock.now) for w in (a, b)
        ]
        exact = np.concatenate([latency for _, _, latency in own])
        for warden in (a, b):  # either daemon sees both gateways' calls, once
            served = await warden.rollouts.gateway.served("price", version, since, clock.now)
            assert served.requests == own[0][0] + own[1][0] > 0
            assert served.errors == 0 and served.counts is not None
            assert served.counts.sum() == len(exact)
            merged = VersionSample(latency=served.latency, latency_counts=served.counts)
            for q in (0.5, 0.95):
                expected = float(np.quantile(exact, q, method="inverted_cdf"))
                assert latency_quantile(merged, q) == pytest.approx(expected, rel=RATIO**0.5 - 1)
    # Written again (each daemon's own flush, the loops'), nothing counts twice.
    for warden in (a, b, a):
        await warden.rollouts.gateway.shared.flush()
    total = (await a.rollouts.gateway.served("price", good, since, clock.now)).requests
    assert total == sum(
        w.rollouts.gateway.serving("price", good).window(since, clock.now)[0] for w in (a, b)
    )


async def test_a_candidate_failing_at_another_daemons_gateway_is_rolled_back(pair):
    a, _client_a, b, client_b, clock, (stable, _good, _bad) = pair
    failing = await register_broken(a, "failing")
    rollout = await a.rollouts.start_rollout("price", failing, strategy="canary", actor="t")
    assert (rollout["state"], rollout["weight"]) == ("progressing", 0.1)
    await _sees(b, await a.rollouts.traffic("price"))
    clock.advance(1)
    await send_traffic(client_b, 600, "b", seed=3)  # every call through B's gateway
    calls, errors, _ = b.rollouts.gateway.serving("price", failing).window(0, clock.now)
    assert calls == errors > 20
    await _flushed(b, (failing,), 0, clock.now)
    assert a.rollouts.gateway.stats.get(("price", failing)) is None  # A served none
    # A holds the rollout: its fast path counts B's failed calls.
    [after] = await a.rollouts.tick()
    assert after["state"] == "rolled_back" and "gateway errors" in after["reason"]
    [analysis] = await a.rollouts.analyses(rollout["id"])
    assert analysis["samples"]["candidate_requests"] == calls
    assert await a.rollouts.traffic("price") == {stable: 1.0}
