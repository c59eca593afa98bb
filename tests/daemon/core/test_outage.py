"""Errors of a store out of reach: recognised, logged once per outage, 503 in the API."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mlwarden.daemon.api.http import WARDEN
from mlwarden.daemon.api.middleware import error_middleware
from mlwarden.daemon.core.outage import RETRY_AFTER_SECONDS, Outage, log_failure, unavailable
from mlwarden.daemon.core.store import Store
from tests.helpers import free_port


@pytest.fixture
async def unreachable():
    """A PostgreSQL store whose server is not there: nothing listens on its port."""
    store = Store(f"postgresql+asyncpg://mlwarden:secret@127.0.0.1:{free_port()}/mlwarden")
    from sqlalchemy.ext.asyncio import create_async_engine

    store.engine = create_async_engine(store.url, **store._engine_options())
    yield store
    await store.close()


async def test_a_refused_connection_is_the_store_unreachable(unreachable, caplog):
    caplog.set_level(logging.WARNING, "mlwarden.daemon.core.outage")
    for _ in range(3):
        with pytest.raises(OSError) as info:
            await unreachable.ping()
        assert unavailable(info.value)
    assert unreachable.outage.down
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings  # once per outage, not per failure
    assert "unreachable (ConnectionRefusedError" in warnings[0]
    assert "secret" not in warnings[0] and "mlwarden:***@" in warnings[0]
    unreachable.outage.ended()
    assert not unreachable.outage.down and "reachable again after" in caplog.records[-1].message


def test_other_errors_are_not_an_outage(caplog):
    assert not unavailable(ValueError("a bug"))
    assert not unavailable(ConnectionRefusedError(111, "MLflow, not the store"))
    outage = Outage("postgresql+asyncpg://db/x")
    log = logging.getLogger("tests.outage")
    with caplog.at_level(logging.ERROR, "tests.outage"):
        try:
            raise KeyError("k")
        except KeyError as exc:
            assert log_failure(log, outage, exc, "tick of %s failed", "m") is False
    assert not outage.down and caplog.records[-1].exc_info is not None  # with traceback


async def test_the_api_answers_503_with_retry_after(unreachable):
    class Warden:
        store = unreachable

    async def needs_the_store(request: web.Request) -> web.Response:
        await request.app[WARDEN].store.ping()
        return web.json_response({})

    async def bug(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application(middlewares=[error_middleware])
    app[WARDEN] = Warden()  # type: ignore[assignment]
    app.router.add_get("/store", needs_the_store)
    app.router.add_get("/bug", bug)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/store")
        assert response.status == 503
        assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
        error = (await response.json())["error"]
        assert error["code"] == "store_unavailable"
        assert "ConnectionRefusedError" in error["message"] and "secret" not in error["message"]
        response = await client.get("/bug")
        assert response.status == 500 and "Retry-After" not in response.headers
