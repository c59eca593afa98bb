"""The outbox across a change of holder, on a real PostgreSQL and a real HTTP receiver.

A delivery pass pins the ``outbox`` lease (``leases.pinned``): while one of its sends is
under way, no other daemon can take the outbox over, even when the sending daemon
pauses past its lease's TTL, so the new holder never sends that row a second time.
The receiver holds its answer until the test lets it go, which keeps the send in flight.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from mlwarden.daemon.alerts.notifiers import Notifier
from mlwarden.daemon.alerts.outbox import Outbox
from mlwarden.daemon.alerts.service import ALERTS_SCHEMA
from mlwarden.daemon.core.cluster import CLUSTER_SCHEMA, OUTBOX_WORK, Cluster
from mlwarden.daemon.core.config import AlertsConfig, NotifierConfig
from mlwarden.daemon.core.leases import LeaseLost, holding
from mlwarden.daemon.core.metrics import Metrics
from mlwarden.daemon.core.store import Store
from mlwarden.plugins.notifiers.apprise import AppriseNotifier
from mlwarden.types import Notification, Severity
from tests.daemon.core.test_cluster import member
from tests.plugins.notifiers.test_apprise import Receiver

TTL = 0.6


class HeldReceiver(Receiver):
    """A real HTTP receiver that records each post at once and answers when released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, await request.json()))
        await self.release.wait()
        return web.json_response({"status": "success"})

    async def __aenter__(self) -> HeldReceiver:
        await self.up()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.down()


@pytest.fixture
async def store(postgres_url):
    store = Store(postgres_url)
    await store.open([CLUSTER_SCHEMA, ALERTS_SCHEMA])
    yield store
    await store.close()


def outbox(store: Store, notifier: Notifier) -> Outbox:
    return Outbox(
        store,
        time.time,
        Metrics(),
        notifiers=lambda: {"hook": notifier},
        settings=lambda: AlertsConfig(send_timeout_seconds=30.0),
    )


async def test_no_takeover_while_a_paused_holder_is_sending(store):
    async with HeldReceiver() as receiver:
        url = f"json://127.0.0.1:{receiver.port}/hook"
        notifier = Notifier(
            NotifierConfig(name="hook", plugin="apprise", urls=(url,)),
            AppriseNotifier(urls=[url]),
        )
        a = Cluster(store, member("a", ttl=TTL, heartbeat=0.2), Metrics())
        b = Cluster(store, member("b", ttl=TTL, heartbeat=0.2), Metrics())
        await a.join()
        await b.join()
        held = await a.singleton(OUTBOX_WORK)
        assert held is not None and held.token == 1
        first, second = outbox(store, notifier), outbox(store, notifier)
        async with store.begin() as conn:
            note = Notification(
                title="[FIRING] Boom", body="boom", severity=Severity.CRITICAL,
                status="firing", fingerprint="f" * 32, model="m",
            )  # fmt: skip
            await first.enqueue(conn, note, "hook", notifier.targets())

        async def deliver(box: Outbox, lease) -> int:
            with holding(lease):
                return await box.deliver()

        sending = asyncio.create_task(deliver(first, held))
        deadline = time.monotonic() + 30
        while not receiver.requests:
            assert time.monotonic() < deadline, "the send did not reach the receiver"
            await asyncio.sleep(0.05)
        # The holder's own renewals go on beside its pin.
        await asyncio.wait_for(a.heartbeat(), 5)
        # Then it pauses (no heartbeat) past its TTL, its send still in flight: the lease
        # has expired, yet another daemon cannot take it while the send is pinned.
        await asyncio.sleep(TTL + 0.4)
        assert await b.singleton(OUTBOX_WORK) is None
        assert (await b.view())["leases"][0]["expired"] is True
        receiver.release.set()
        assert await sending == 1
        # The pass is over: the row is recorded sent, and the lease moves.
        taken = await b.singleton(OUTBOX_WORK)
        assert taken is not None and taken.token == 2
        assert await deliver(second, taken) == 0
        assert len(receiver.requests) == 1
        assert [e["status"] for e in await second.entries()] == ["sent"]
        # A new row: the former holder's next pass is refused before it sends anything.
        async with store.begin() as conn:
            await first.enqueue(conn, note, "hook", notifier.targets())
        with pytest.raises(LeaseLost):
            await deliver(first, held)
        assert len(receiver.requests) == 1
