"""Key rotation under load: every object re-wrapped, the old key removable, nothing lost."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlwarden.daemon.core.keys import load_keyring, new_key, write_key_file
from mlwarden.daemon.warden import Warden
from tests.daemon.core.test_encryption import _config, _reference
from tests.daemon.rollouts.helpers import _log_linear, register_models, send_traffic

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.both_backends
async def test_rotation_under_load_rewraps_everything_and_retires_the_old_key(
    make_config, make_client, tmp_path
):
    key_file = tmp_path / "keys"
    write_key_file(key_file, {"k1": new_key()})
    text = _config(key_file).replace("REFERENCE", str(_reference(tmp_path)))
    warden = Warden(make_config(text))
    await warden.start()
    sent = 0
    try:
        await register_models(warden)
        client = await make_client(warden)
        for n in range(3):
            sent += len(await send_traffic(client, 40, f"before{n}", seed=n))
        before = await warden.at_rest.status()
        assert set(before["keys"]) == {"k1"} and before["keys"]["k1"] > 0
        # A new active key, then the rotation while predictions flow and a retrain
        # registers a version.
        ring = load_keyring(str(key_file))
        write_key_file(key_file, {**ring.keys, "k2": new_key()})
        stop = asyncio.Event()

        async def traffic() -> int:
            n = 0
            while not stop.is_set():
                n += len(await send_traffic(client, 20, f"during{n}", seed=100 + n))
            return n

        flow = asyncio.create_task(traffic())
        progress = await warden.at_rest.rotate()
        assert progress["active"] == "k2"
        uri = await asyncio.to_thread(_log_linear, warden, [1.0, -2.0, 0.5], 9)
        retrained = await warden.registry.register("price", model_uri=uri)
        for _ in range(600):
            state = (await warden.at_rest.status())["rotation"]
            if state["state"] != "running":
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        stop.set()
        sent += await flow
        assert state["state"] == "done", state
        assert state["rewrapped"] > 0 and state["remaining_by_key"] == {}
        status = await warden.at_rest.status()
        assert status["keys"]["k1"] == 0 and status["keys"]["k2"] > 0
        # The old key is removable: the daemon accepts a ring without it.
        write_key_file(key_file, {"k2": load_keyring(str(key_file)).keys["k2"]})
        await warden.at_rest.retire()
        assert warden.sealer.keyring is not None and warden.sealer.keyring.ids == ["k2"]
    finally:
        await warden.stop()
    # A restart with k2 alone: everything opens, nothing was lost.
    warden = Warden(make_config(text))
    await warden.start()
    try:
        outcomes = await warden.ingest.outcomes("price")
        assert len(outcomes) == sent
        assert (await warden.registry.get("price", retrained["version"]))["version"]
        client = await make_client(warden)
        await warden.rollouts.set_traffic(
            "price", {retrained["version"]: 1.0}, reason="test", actor="test"
        )
        served = await send_traffic(client, 10, "after", seed=7)
        assert {p["version"] for p in served} == {retrained["version"]}
    finally:
        await warden.stop()


def test_cli_keys_new_rotate_status_without_a_daemon(make_config, tmp_path, base_path):
    key_file = tmp_path / "ring"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    run = [sys.executable, "-m", "mlwarden"]
    out = subprocess.run(
        [*run, "keys", "new", "--key-file", str(key_file)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert (key_file.stat().st_mode & 0o777) == 0o600
    first = load_keyring(str(key_file)).active
    config = tmp_path / "c.toml"
    config.write_text(
        f'[daemon]\nbase_path = "{base_path}"\nlisten = "127.0.0.1:1"\n'
        f'[encryption]\nenabled = true\nkey_file = "{key_file}"\n'
    )

    async def seed() -> None:
        from mlwarden.daemon.core.config_loader import load_config
        from mlwarden.types import Notification

        w = Warden(load_config(config, env={}))
        await w.start()
        async with w.store.begin() as conn:  # three sealed outbox rows under the first key
            note = Notification(title="t", body="b", fingerprint="f")
            await w.alerts.outbox.enqueue(conn, note, "gone", ["a", "b", "c"])
        # ... and the store's id key (daemon/ingest/ids.py), sealed like any row
        assert (await w.at_rest.status())["keys"] == {first: 4}
        await w.stop()

    asyncio.run(seed())
    out = subprocess.run(
        [*run, "keys", "rotate", "--config", str(config)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "re-wrapping here" in out.stdout and f"retired key(s) {first}" in out.stdout
    ring = load_keyring(str(key_file))
    assert ring.ids != [first] and len(ring.ids) == 1
    out = subprocess.run(
        [*run, "keys", "status", "--config", str(config)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["active"] == ring.active and status["keys"] == {ring.active: 4}


def test_cli_keys_rotate_against_a_running_daemon(daemon_factory, tmp_path):
    from mlwarden.daemon.api.auth import mint_token

    token, digest = mint_token()
    key_file = tmp_path / "ring"
    write_key_file(key_file, {"k1": new_key()})
    config = (
        f'[[auth.tokens]]\nname = "ops"\nsha256 = "{digest}"\nrole = "admin"\n'
        f'[encryption]\nenabled = true\nkey_file = "{key_file}"\n'
    )
    env = {"PYTHONPATH": str(REPO / "src")}
    daemon = daemon_factory(config, env=env)
    daemon.start()
    run = [sys.executable, "-m", "mlwarden", "keys"]
    args = ["--config", str(daemon.config_path), "--url", daemon.url, "--token", token]
    out = subprocess.run(
        [*run, "rotate", *args], capture_output=True, text=True, env={**os.environ, **env}
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "re-wrapping data keys" in out.stdout and "retired key(s) k1" in out.stdout
    status, body = daemon.call("GET", "/api/system/keys", token=token)
    assert status == 200 and body["rotation"]["state"] == "done"
    assert list(body["keys"]) == load_keyring(str(key_file)).ids != ["k1"]
    status, _ = daemon.call("GET", "/api/system/health", token=token)
    assert status == 200  # the daemon served on throughout
    daemon.stop()
