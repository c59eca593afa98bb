"""`mlwarden keys rotate|status` with a ring in the daemon's environment: step by step."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from mlwarden.daemon.api.auth import mint_token
from mlwarden.daemon.core.keys import new_key

REPO = Path(__file__).resolve().parents[3]


def test_rotating_a_ring_held_in_the_environment(daemon_factory, tmp_path):
    token, digest = mint_token()
    first = f"k1:{base64.b64encode(new_key()).decode()}"
    config = (
        f'[[auth.tokens]]\nname = "ops"\nsha256 = "{digest}"\nrole = "admin"\n'
        '[encryption]\nenabled = true\n[[models]]\nname = "m"\nfeatures = ["x"]\n'
    )
    # MLWARDEN_KEY_FILE (set by a daemon in this process for its children) would win.
    env = {"PYTHONPATH": str(REPO / "src"), "MLWARDEN_KEY_FILE": ""}
    daemon = daemon_factory(config, env={**env, "MLWARDEN_ENCRYPTION_KEYS": first})
    daemon.start()
    records = [{"id": f"r{i}", "features": {"x": float(i)}, "prediction": 0.5} for i in range(20)]
    status, body = daemon.call(
        "POST", "/api/models/m/predictions", {"records": records}, token=token
    )
    assert status < 300, body
    # The command runs without the ring: it asks the daemon.
    cli_env = {k: v for k, v in os.environ.items() if k != "MLWARDEN_ENCRYPTION_KEYS"}
    cli_env.update(env)

    def keys(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "mlwarden", "keys", *args, "--config",
                   str(daemon.config_path), "--url", daemon.url, "--token", token]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, env=cli_env, timeout=300)

    def next_step() -> str:
        out = keys("status")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["next_step"]

    assert next_step().startswith("nothing to do: the active key k1")
    # 1. rotate: a new entry and the exact steps; nothing changed yet (exit 3).
    out = keys("rotate")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "the environment variable MLWARDEN_ENCRYPTION_KEYS of the daemon" in out.stdout
    entry = re.search(r"^\s+(k\d{8}-1:[A-Za-z0-9+/=]{44})$", out.stdout, re.M)
    assert entry, out.stdout
    new_id = entry.group(1).split(":")[0]
    # The operator appends it and restarts the daemon.
    daemon.stop()
    daemon.env["MLWARDEN_ENCRYPTION_KEYS"] = f"{first},{entry.group(1)}"
    daemon.start()
    assert next_step().startswith("run `mlwarden keys rotate`: it re-wraps the")
    # 2. rotate again: the daemon re-wraps everything, then says what to remove.
    out = keys("rotate")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "re-wrapping data keys" in out.stdout
    assert "next: key(s) k1 wrap nothing: remove them from the environment variable" in out.stdout
    # 3. The operator removes k1 and restarts: done, nothing lost.
    daemon.stop()
    daemon.env["MLWARDEN_ENCRYPTION_KEYS"] = entry.group(1)
    daemon.start()
    assert next_step() == f"nothing to do: the active key {new_id} wraps every stored object"
    status, body = daemon.call("GET", "/api/system/keys", token=token)
    assert status == 200 and list(body["keys"]) == [new_id] and body["keys"][new_id] > 0
    # A ring that lacks a key still in use: the status says to put it back.
    daemon.stop()
    daemon.env["MLWARDEN_ENCRYPTION_KEYS"] = first
    assert daemon.start(wait=False).proc.wait(timeout=120) != 0  # refused at start
    assert f"key {new_id!r} is not in the key ring" in daemon.log_path.read_text()


def test_the_steps_name_a_systemd_credential_and_keys_the_ring_lacks(make_config):
    from mlwarden.daemon.keys.guide import new_entry_steps, next_step

    config = make_config()
    status = {"enabled": True, "source": "credential:mlwarden-keys", "active": "k2",
              "keys": {"k1": 0, "k2": 7}, "unknown_keys": {}, "rotation": None}  # fmt: skip
    assert next_step(status, config) == (
        "key(s) k1 wrap nothing: remove them from the file that the unit's "
        "LoadCredential=mlwarden-keys:... names (e.g. /etc/mlwarden/keys, one entry per "
        "line), then restart the daemon, systemd copies credentials at start "
        "(systemctl restart mlwarden)"
    )
    steps = new_entry_steps({**status, "keys": {"k2": 7}}, config, "k3")
    assert "LoadCredential=mlwarden-keys" in steps[0] and steps[2].strip().startswith("k3:")
    lacking = {**status, "keys": {"k2": 7}, "unknown_keys": {"k1": 4}}
    assert next_step(lacking, config).startswith("stored objects use key(s) k1, which the ring")
    running = {**status, "rotation": {"state": "running", "done": 3, "total": 9}}
    assert next_step(running, config).startswith("a rotation is running (3/9)")
