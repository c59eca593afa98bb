"""A drift check of the loop is fenced: under a lease that moved, nothing is stored."""

from __future__ import annotations

import pytest

from mlwarden.daemon.core.leases import LeaseLost, holding

from .test_drift import config, frame, send

__all__ = ["reference"]

from .test_drift import reference


async def test_a_check_under_a_lost_lease_stores_nothing(make_warden, reference, store_url):
    warden = await make_warden(config(reference), **{"store.url": store_url})
    await warden.ingest.model_state("m").ready.wait()
    await send(warden, frame(300, seed=3), "fenced")
    owned = await warden.cluster.models()
    stale = owned["m"]
    with holding(stale):
        await warden.monitor.check("m")  # the owner's check is stored
    assert len(await warden.get_drift_history("m", days=1)) == 1
    # The lease changes hands (released and taken again: a new token).
    await warden.cluster.release("model", ["m"])
    fresh = (await warden.cluster.models())["m"]
    assert fresh.token == stale.token + 1
    with holding(stale), pytest.raises(LeaseLost):
        await warden.monitor.check("m")
    assert len(await warden.get_drift_history("m", days=1)) == 1
    with holding(fresh):
        await warden.monitor.check("m")
    assert len(await warden.get_drift_history("m", days=1)) == 2
