"""The core context: hooks isolated and timed out (plain functions too), spawn."""

from __future__ import annotations

import asyncio
import threading

from mlwarden import hookimpl
from mlwarden.types import Event


class BlockingListener:
    """A plain-function ``mlwarden_event`` that blocks until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.heard: list[str] = []

    @hookimpl
    def mlwarden_event(self, event: Event) -> None:
        self.entered.set()
        # Bounded, so that a daemon that runs it on its loop fails the test instead of
        # hanging it.
        self.release.wait(timeout=5.0)
        self.heard.append(event.kind)


class Spawner:
    """A plain-function ``mlwarden_startup`` that spawns a background task."""

    def __init__(self) -> None:
        self.ran = asyncio.Event()

    @hookimpl
    def mlwarden_startup(self, warden) -> None:
        async def job() -> None:
            self.ran.set()

        warden.spawn(job(), name="spawned-from-a-thread")


async def test_a_blocking_sync_hook_is_timed_out_counted_and_the_daemon_stays_live(
    make_warden, make_client
):
    warden = await make_warden("[daemon]\nplugin_timeout_seconds = 0.5\n")
    client = await make_client(warden)
    listener = BlockingListener()
    warden.pm.register(listener, name="blocking")
    try:
        emitting = asyncio.ensure_future(warden.emit(Event(kind="boom", model="m")))
        while not listener.entered.is_set():
            await asyncio.sleep(0.01)
        # The hook is blocked in its thread; the loop answers meanwhile.
        for _ in range(5):
            resp = await client.get("/healthz")
            assert resp.status == 200
            assert not listener.release.is_set() and listener.heard == []
        # emit returns at the plugin timeout, the hook still blocked, and counts it.
        await asyncio.wait_for(emitting, 3.0)
        assert listener.heard == []
        counter = warden.metrics.plugin_errors.labels("blocking", "mlwarden_event")
        assert counter._value.get() == 1
        health = await (await client.get("/api/system/health")).json()
        assert health["last_errors"][-1] == {
            "ts": health["last_errors"][-1]["ts"],
            "where": "plugin blocking (mlwarden_event)",
            "message": "timed out",
        }
    finally:
        listener.release.set()
    # Once released, the abandoned call ends on its thread; the next one is on time.
    while warden.hook_threads.running:
        await asyncio.sleep(0.01)
    assert listener.heard == ["boom"]
    await warden.emit(Event(kind="quiet", model="m"))
    assert listener.heard == ["boom", "quiet"]
    assert warden.metrics.plugin_errors.labels("blocking", "mlwarden_event")._value.get() == 1
    warden.pm.unregister(listener)


async def test_sync_hooks_that_hang_use_a_bounded_number_of_threads(make_warden):
    warden = await make_warden("[daemon]\nplugin_timeout_seconds = 0.2\n")
    warden.hook_threads.limit = 2
    warden.hook_threads._slots = None
    listener = BlockingListener()
    warden.pm.register(listener, name="blocking")
    try:
        for i in range(4):
            await warden.emit(Event(kind=f"e{i}", model="m"))
        assert warden.hook_threads.running == 2  # the later two never got a thread
        counter = warden.metrics.plugin_errors.labels("blocking", "mlwarden_event")
        assert counter._value.get() == 4
    finally:
        listener.release.set()
    while warden.hook_threads.running:
        await asyncio.sleep(0.01)
    assert sorted(listener.heard) == ["e0", "e1"]
    warden.pm.unregister(listener)


async def test_a_sync_startup_hook_may_spawn_a_task_from_its_thread(make_config):
    from mlwarden.daemon.warden import Warden

    warden = Warden(make_config())
    spawner = Spawner()
    warden.pm.register(spawner, name="spawner")
    async with warden:
        await asyncio.wait_for(spawner.ran.wait(), 5.0)
    assert warden.metrics.plugin_errors.labels("spawner", "mlwarden_startup")._value.get() == 0
