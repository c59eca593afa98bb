"""Secrets stay secret: no notifier URL, token or key in any log line, error or system route."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mlwarden.daemon.api.auth import mint_token
from mlwarden.daemon.core.keys import format_keyring, new_key

ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_SECRET = "T0KEN-in-the-path-81723"
PASSWORD = "hunter2-smtp-pass-5521"


def test_a_representative_run_never_logs_a_secret(daemon_factory, tmp_path):
    token, digest = mint_token()
    ring = format_keyring({"k1": new_key()})
    key_material = ring.splitlines()[1].partition(":")[2]
    config = f"""
[daemon]
plugins = ["tests.fake_plugins.startup_event"]
log_level = "DEBUG"
[[auth.tokens]]
name = "ops"
sha256 = "{digest}"
role = "admin"
[alerts]
group_wait_seconds = 0
tick_seconds = 0.2
retry_initial_seconds = 0.2
retry_max_seconds = 0.4
[[alerts.rules]]
name = "FakeStarted"
fire_on = ["fake_plugin_started"]
severity = "critical"
[[notifiers]]
name = "hooks"
plugin = "apprise"
urls = [
  "json://127.0.0.1:9/{WEBHOOK_SECRET}",
  "json://ops:{PASSWORD}@127.0.0.1:9/hook",
]
[encryption]
enabled = true
"""
    env = {
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}",
        "MLWARDEN_ENCRYPTION_KEYS": ring.splitlines()[1],
    }
    daemon = daemon_factory(config, env=env)
    daemon.start()
    # Failures: deliveries fail (closed port) and retry; a wrong token; a bad body.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = daemon.call("GET", "/api/notifications", token=token)
        if status == 200 and any(n["attempts"] >= 2 for n in body["notifications"]):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the notifications were never retried")
    status, _ = daemon.call("GET", "/api/system/health", token="wrong-" + token[6:])
    assert status == 401
    answers = [
        daemon.call("GET", path, token=token)
        for path in ("/api/system/health", "/api/system/keys", "/api/notifications", "/api/audit")
    ]
    answers.append(daemon.call("POST", "/api/models/none/predictions", {"x": 1}, token=token))
    daemon.stop()
    check = subprocess.run(
        [sys.executable, "-m", "mlwarden", "check-config", "--config", str(daemon.config_path)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    everything = "\n".join([daemon.log(), check.stdout, check.stderr, *(repr(a) for a in answers)])
    assert "notifier hooks" in daemon.log()  # the failures were logged
    for secret in (WEBHOOK_SECRET, PASSWORD, token, key_material):
        assert secret not in everything, f"a secret leaked: {secret[:6]}..."


def test_check_config_warns_when_others_can_read_the_secrets(tmp_path):
    path = tmp_path / "mlwarden.toml"
    path.write_text('[[notifiers]]\nname = "n"\nplugin = "apprise"\nurls = ["json://h/secret"]\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    run = [sys.executable, "-m", "mlwarden", "check-config", "--config", str(path)]
    path.chmod(0o644)
    result = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0
    assert "holds notifier URLs and is readable by others (mode 0644)" in result.stderr
    path.chmod(0o640)
    result = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120)
    assert "readable by others" not in result.stderr
