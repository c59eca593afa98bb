"""The daemon on a shared ``mlflow server`` (PostgreSQL backend, proxied artifacts).

One real server for the session (tests/mlflow_server.py); every test uses its own
model names and experiment, so they keep apart on it.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pytest

from mlwarden.daemon.core.keys import new_key, write_key_file
from mlwarden.daemon.warden import Warden
from mlwarden.errors import Conflict
from tests.daemon.rollouts.helpers import DEPLOYMENT_CONFIG, _saved_linear
from tests.mlflow_server import ServerProxy

FEATURES = '["x1", "x2", "x3"]'


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _config(model: str, extra: str = "") -> str:
    return DEPLOYMENT_CONFIG + f'[[models]]\nname = "{model}"\nfeatures = {FEATURES}\n' + extra


def _log_model(warden: Warden, seed: int) -> str:
    """A run holding a fitted scikit-learn model under ``model/``; its ``runs:/`` URI."""
    local = _saved_linear(np.array([1.0, -2.0, 0.5]), seed)
    client = warden.tracking.client
    run = client.create_run(warden.tracking.experiment_id)
    client.log_artifacts(run.info.run_id, local, "model")
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/model"


def _mlflow_view(warden: Warden, model: str) -> tuple[dict[str, int], dict[int, str]]:
    """(alias -> MLflow version, MLflow version -> status tag) as the server has them."""
    client = warden.tracking.client
    aliases = {k: int(v) for k, v in client.get_registered_model(model).aliases.items()}
    statuses = {
        int(v.version): v.tags.get("mlwarden.status")
        for v in client.search_model_versions(f"name = '{model}'")
    }
    return aliases, statuses


@pytest.fixture
def on_server(mlflow_server, make_config, tmp_path: Path):
    """``make(text, **overrides)``: a Config whose MLflow is the shared server."""

    def make(text: str, **overrides):
        return make_config(
            text,
            **{
                "mlflow.tracking_uri": mlflow_server.url,
                "mlflow.experiment": _name("exp"),
                **overrides,
            },
        )

    return make


async def test_registry_promotion_rollback_and_serving_through_the_server(
    mlflow_server, on_server, make_client, base_path: Path
):
    model = _name("price")
    warden = Warden(on_server(_config(model)))
    await warden.start()
    try:
        tracking = warden.tracking
        assert tracking.remote
        experiment = tracking.client.get_experiment(tracking.experiment_id)
        # The server's default location: its artifact proxy, not the daemon's disk.
        assert experiment.artifact_location.startswith("mlflow-artifacts:")
        assert not (base_path / "mlartifacts").exists()
        client = await make_client(warden)
        uris = [await asyncio.to_thread(_log_model, warden, seed) for seed in (1, 2)]
        versions = []
        for uri in uris:
            resp = await client.post(f"/api/models/{model}/versions", json={"model_uri": uri})
            body = await resp.json()
            assert resp.status == 201, body
            versions.append(body)
        assert [v["version"] for v in versions] == ["1.0.0", "1.0.1"]
        assert [v["framework"] for v in versions] == ["sklearn", "sklearn"]
        # The model's files went through the proxy to the server's artifact store.
        stored = list(mlflow_server.artifacts.rglob("MLmodel"))
        assert any(uris[0].split("/")[1] in str(p) for p in stored)

        resp = await client.post(f"/api/models/{model}/promote", json={"version": "1.0.0"})
        assert resp.status == 200, await resp.json()
        # The gateway loads the production version from the server and answers with it.
        resp = await client.post(
            f"/api/models/{model}/predict", json={"features": {"x1": 1.0, "x2": 0.0, "x3": 2.0}}
        )
        body = await resp.json()
        assert resp.status == 200, body
        assert body["predictions"][0]["version"] == "1.0.0"
        assert body["predictions"][0]["prediction"] == pytest.approx(2.0, abs=0.2)

        resp = await client.post(f"/api/models/{model}/promote", json={"version": "1.0.1"})
        assert resp.status == 200, await resp.json()
        resp = await client.post(f"/api/models/{model}/rollback", json={})
        assert resp.status == 200, await resp.json()
        aliases, statuses = _mlflow_view(warden, model)
        assert aliases == {"champion": versions[0]["mlflow_version"]}
        assert statuses == {
            versions[0]["mlflow_version"]: "production",
            versions[1]["mlflow_version"]: "deprecated",
        }
        await warden.registry.set_alias(model, "stable", "1.0.1")
        aliases, _ = _mlflow_view(warden, model)
        assert aliases["stable"] == versions[1]["mlflow_version"]
        assert not warden.registry.mirror_failing
    finally:
        await warden.stop()
    # A restart reconciles with the server and finds nothing to repair.
    again = Warden(warden.config)
    await again.start()
    try:
        assert not again.registry.mirror_failing
        assert (await again.registry.production(model))["version"] == "1.0.0"
    finally:
        await again.stop()


async def test_an_answer_lost_and_retried_by_mlflow_still_makes_one_version(
    mlflow_server, on_server
):
    """The server creates the version, the answer is lost (503), MLflow's client retries
    the POST and the server creates a second one: the registration keeps one."""
    create = "/api/2.0/mlflow/model-versions/create"
    proxy = await ServerProxy(mlflow_server.url, lose_answer=create).start()
    model = _name("lossy")
    warden = Warden(on_server(_config(model), **{"mlflow.tracking_uri": proxy.url}))
    await warden.start()
    try:
        uri = await asyncio.to_thread(_log_model, warden, 9)
        record = await warden.registry.register(model, model_uri=uri)
        assert [s for p, s in proxy.seen if p == create] == [503, 200]
        # (In a thread: the proxy answers on this event loop.)
        versions = await asyncio.to_thread(
            warden.tracking.client.search_model_versions, f"name = '{model}'"
        )
        assert [int(v.version) for v in versions] == [record["mlflow_version"]] == [2]
        assert versions[0].tags["mlwarden.version"] == "1.0.0"
    finally:
        await warden.stop()
        await proxy.close()


async def test_encrypted_artifacts_go_sealed_through_the_proxy(
    mlflow_server, on_server, make_client, tmp_path: Path
):
    key_file = tmp_path / "keys"
    write_key_file(key_file, {"k1": new_key()})
    model = _name("sealed")
    config = on_server(_config(model, f'[encryption]\nenabled = true\nkey_file = "{key_file}"\n'))
    warden = Warden(config)
    await warden.start()
    try:
        tracking = warden.tracking
        experiment = tracking.client.get_experiment(tracking.experiment_id)
        assert experiment.artifact_location.startswith("mlwarden-encrypted-proxied:/")
        uri = await asyncio.to_thread(_log_model, warden, 3)
        run_id = uri.split("/")[1]
        record = await warden.registry.register(model, model_uri=uri)
        assert record["framework"] == "sklearn"  # its MLmodel was read back, decrypted
        # On the server's side only envelopes: no file of the run holds its plaintext.
        files = [p for p in mlflow_server.artifacts.rglob("*") if p.is_file() and run_id in str(p)]
        assert files and all(b"flavors" not in p.read_bytes() for p in files)
        assert all(p.read_bytes()[:4] == files[0].read_bytes()[:4] for p in files)
        client = await make_client(warden)
        resp = await client.post(f"/api/models/{model}/promote", json={"version": "1.0.0"})
        assert resp.status == 200, await resp.json()
        resp = await client.post(
            f"/api/models/{model}/predict", json={"features": {"x1": 1.0, "x2": 0.0, "x3": 2.0}}
        )
        assert resp.status == 200, await resp.json()
    finally:
        await warden.stop()


async def test_encryption_with_a_non_proxied_server_location_is_refused(on_server, tmp_path):
    from mlwarden.errors import ConfigError

    key_file = tmp_path / "keys"
    write_key_file(key_file, {"k1": new_key()})
    config = on_server(
        f'[encryption]\nenabled = true\nkey_file = "{key_file}"\n',
        **{"mlflow.artifact_location": "s3://bucket/mlwarden"},
    )
    with pytest.raises(ConfigError, match="expected an 'mlflow-artifacts:/…' location"):
        async with Warden(config):
            pass


# -- two daemons, one store, one server: races ------------------------------------------


@pytest.fixture
async def pair(mlflow_server, make_config, postgres_url, tmp_path: Path):
    """Two Wardens on one PostgreSQL store and one MLflow server."""
    model = _name("race")
    experiment = _name("exp")
    wardens = []
    for name in ("a", "b"):
        base = tmp_path / f"daemon-{name}"
        base.mkdir()
        config = make_config(
            _config(model),
            **{
                "daemon.base_path": str(base),
                "store.url": postgres_url,
                "cluster.instance": f"daemon-{name}",
                "mlflow.tracking_uri": mlflow_server.url,
                "mlflow.experiment": experiment,
            },
        )
        warden = Warden(config)
        await warden.start()
        wardens.append(warden)
    yield model, wardens
    for warden in wardens:
        await warden.stop()


async def _race(*calls) -> list:
    """Run the calls at once; each one's result, or the exception it raised."""
    return list(await asyncio.gather(*calls, return_exceptions=True))


def _outcome(results: list) -> tuple[list, list[Exception]]:
    """(the results, the exceptions) of a race."""
    return (
        [r for r in results if not isinstance(r, BaseException)],
        [r for r in results if isinstance(r, BaseException)],
    )


async def _serving_state(warden: Warden, model: str) -> dict:
    """What serves, from each of the four places (registry, aliases, table, MLflow)."""
    import sqlalchemy as sa

    from mlwarden.daemon.rollouts.traffic import serving_table, traffic_table

    versions = await warden.registry.versions(model)
    async with warden.store.connect() as conn:
        table = {
            r.version: r.weight
            for r in await conn.execute(
                sa.select(traffic_table).where(traffic_table.c.model == model)
            )
        }
        pending = (await conn.execute(sa.select(serving_table))).all()
    aliases, statuses = await asyncio.to_thread(_mlflow_view, warden, model)
    return {
        "statuses": {v["version"]: v["status"] for v in versions},
        "champion": next((v["version"] for v in versions if "champion" in v["aliases"]), None),
        "mlflow_champion": aliases.get("champion"),
        "mlflow_statuses": statuses,
        "table": table,
        "pending": len(pending),
        "by_mlflow": {v["mlflow_version"]: v["version"] for v in versions},
    }


async def test_two_daemons_racing_register_alias_promote_and_roll_back_agree(pair):
    """In-process calls, as the API makes them (two API requests at once also race
    on the audit log's next row id, which is the audit chain's part of issue 18)."""
    model, (a, b) = pair
    uris = [await asyncio.to_thread(_log_model, a, seed) for seed in (4, 5, 6, 7)]

    # Both register the same run's model at once: one version, both get it.
    first, second = await _race(
        a.register_model(model, model_uri=uris[0]), b.register_model(model, model_uri=uris[0])
    )
    assert first == second and first["version"] == "1.0.0"
    mlflow_versions = a.tracking.client.search_model_versions(f"name = '{model}'")
    assert len(mlflow_versions) == 1
    assert len(await a.registry.history(model)) == 1
    # Asked again later, it is a new registration, as on one daemon.
    again = await b.register_model(model, model_uri=uris[1])
    assert again["version"] == "1.0.1"
    # Two different models at once: numbered one after the other, never both 1.0.2.
    both = await _race(
        a.register_model(model, model_uri=uris[2]), b.register_model(model, model_uri=uris[3])
    )
    assert sorted(r["version"] for r in both) == ["1.0.2", "1.0.3"]
    assert len(a.tracking.client.search_model_versions(f"name = '{model}'")) == 4

    # The same alias from both: set once, the same everywhere.
    await _race(
        a.registry.set_alias(model, "stable", "1.0.0"),
        b.registry.set_alias(model, "stable", "1.0.0"),
    )
    aliases, _ = await asyncio.to_thread(_mlflow_view, a, model)
    assert aliases["stable"] == first["mlflow_version"]
    assert (await b.registry.get(model, "1.0.0"))["aliases"] == ["stable"]

    # Both promote 1.0.0: one does, the other hears it already is (409), nothing twice.
    done, lost = _outcome(await _race(a.promote(model, "1.0.0"), b.promote(model, "1.0.0")))
    assert len(done) == 1 and len(lost) == 1, lost
    assert isinstance(lost[0], Conflict) and "already in production" in str(lost[0])
    # Then both promote the candidate 1.0.1.
    done, lost = _outcome(await _race(a.promote(model, "1.0.1"), b.promote(model, "1.0.1")))
    assert len(done) == 1 and isinstance(lost[0], Conflict), lost
    assert done[0]["previous_version"] == "1.0.0"
    state = await _serving_state(a, model)
    assert state["statuses"] == {
        "1.0.0": "deprecated", "1.0.1": "production", "1.0.2": "validation",
        "1.0.3": "validation",
    }  # fmt: skip
    assert state["champion"] == "1.0.1"
    assert state["by_mlflow"][state["mlflow_champion"]] == "1.0.1"
    assert state["table"] == {"1.0.1": 1.0} and state["pending"] == 0
    assert {state["by_mlflow"][k]: v for k, v in state["mlflow_statuses"].items()} == (
        state["statuses"]
    )
    into_production = [
        h for h in await a.registry.history(model, "1.0.1") if h["to_status"] == "production"
    ]
    assert len(into_production) == 1
    # Both route by the same table (the one that lost re-read it under the lock).
    for warden in (a, b):
        assert warden.rollouts.traffic_tables.get(model) == {"1.0.1": 1.0}

    # Both roll back: one does, the other is told production moved meanwhile.
    done, lost = _outcome(await _race(a.rollback(model), b.rollback(model)))
    assert len(done) == 1 and len(lost) == 1, lost
    assert isinstance(lost[0], Conflict)
    assert "production moved from 1.0.1 to 1.0.0" in str(lost[0])
    state = await _serving_state(b, model)
    assert (state["statuses"]["1.0.0"], state["statuses"]["1.0.1"]) == (
        "production", "deprecated",
    )  # fmt: skip
    assert state["champion"] == "1.0.0"
    assert state["by_mlflow"][state["mlflow_champion"]] == "1.0.0"
    assert state["table"] == {"1.0.0": 1.0} and state["pending"] == 0

    # Both start a canary of 1.0.1: one rollout; the other hears there is one (409).
    done, lost = _outcome(
        await _race(
            a.promote(model, "1.0.1", strategy="canary"),
            b.promote(model, "1.0.1", strategy="canary"),
        )
    )
    assert len(done) == 1 and isinstance(lost[0], Conflict), lost
    assert "already has an active rollout of version 1.0.1" in str(lost[0])
    driver, other = (a, b) if model in a.rollouts.active else (b, a)
    assert model not in other.rollouts.active
    history = await a.rollouts.history(model)
    assert [r["state"] for r in history].count("progressing") == 1
    # The daemon that does not drive it may not roll it back or promote around it.
    with pytest.raises(Conflict, match="that another daemon drives"):
        await other.rollback(model)
    with pytest.raises(Conflict, match=r"has a running rollout of version 1\.0\.1"):
        await other.promote(model, "1.0.3")
    await driver.rollback(model)
    state = await _serving_state(other, model)
    assert state["statuses"]["1.0.0"] == "production" and state["champion"] == "1.0.0"
    assert state["table"] == {"1.0.0": 1.0} and state["pending"] == 0
    for warden in (a, b):
        assert not warden.registry.mirror_failing


async def test_a_starting_daemon_finishes_only_changes_nobody_is_applying(pair):
    """``Serving.recover`` (at start) lists the unfinished serving changes; one that a
    live daemon is applying (it holds the model's lock) is finished by that daemon and
    not applied again; one a dead daemon left is finished."""
    import json

    import sqlalchemy as sa

    from mlwarden.daemon.rollouts.serving import serving_change
    from mlwarden.daemon.rollouts.traffic import serving_table

    model, (a, b) = pair
    uri = await asyncio.to_thread(_log_model, a, 10)
    version = (await a.register_model(model, model_uri=uri))["version"]
    change = serving_change(model, actor="a", reason="test", weights={version: 1.0})

    async def record() -> None:
        async with a.store.begin() as conn:
            await conn.execute(
                serving_table.insert().values(
                    id=change["id"], model=model, created_at=0.0, change=json.dumps(change)
                )
            )

    await record()
    async with a.registry.exclusive(model):  # a is applying it
        recovering = asyncio.create_task(b.rollouts.serving.recover())
        await asyncio.sleep(1.0)
        assert not recovering.done()  # b waits for the model's lock
        async with a.store.begin() as conn:  # a finishes: its record goes
            await conn.execute(serving_table.delete().where(serving_table.c.id == change["id"]))
    assert await recovering == 0
    assert (await _serving_state(b, model))["table"] == {}

    await record()  # left by a daemon that died: nobody holds the lock
    assert await b.rollouts.serving.recover() == 1
    state = await _serving_state(b, model)
    assert state["table"] == {version: 1.0} and state["pending"] == 0
    async with b.store.connect() as conn:
        assert (await conn.execute(sa.select(serving_table))).first() is None
