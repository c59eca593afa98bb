"""The ``mlwarden`` command: --version, token, plugins."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from mlwarden import __version__
from mlwarden.cli import main
from mlwarden.daemon.core.config_loader import load_config

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlwarden", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,  # tests.fake_plugins is importable from the checkout's root
    )


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mlwarden {__version__}"


def test_token_prints_a_token_its_hash_and_a_config_snippet(tmp_path, capsys):
    assert main(["token"]) == 0
    out = capsys.readouterr().out
    token = re.search(r"^token:\s+(\S+)$", out, re.M).group(1)
    digest = re.search(r"^sha256:\s+([0-9a-f]{64})$", out, re.M).group(1)
    assert hashlib.sha256(token.encode()).hexdigest() == digest
    assert len(token) >= 40
    snippet = out[out.index("[[auth.tokens]]") :]
    path = tmp_path / "tokens.toml"
    path.write_text(snippet)
    config = load_config(path, env={})
    assert config.auth.tokens[0].sha256 == digest
    assert main(["token"]) == 0
    assert token not in capsys.readouterr().out  # a fresh token each time


def test_plugins_lists_builtins_with_kind_version_origin():
    result = run("plugins")
    assert result.returncode == 0, result.stderr
    rows = [line.split(None, 4) for line in result.stdout.splitlines()]
    assert rows[0] == ["NAME", "KIND", "VERSION", "PLUGIN", "ORIGIN"]
    assert ["log", "notifier", __version__, "mlwarden.plugins.notifiers.log", "builtin"] in rows


def test_plugins_json_and_config_modules(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[daemon]\nplugins = ["tests.fake_plugins.collector"]\n')
    assert main(["plugins", "--json", "--config", str(path)]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listed["collector"] == {
        "name": "collector",
        "kind": "notifier",
        "plugin": "tests.fake_plugins.collector",
        "version": "",
        "origin": "config",
    }


def test_plugins_fails_naming_a_broken_plugin(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[daemon]\nplugins = ["tests.fake_plugins.broken_import"]\n')
    assert main(["plugins", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert 'Error importing plugin "tests.fake_plugins.broken_import"' in err


def test_run_refuses_to_start_naming_a_broken_plugin(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        f'[daemon]\nbase_path = "{tmp_path / "state"}"\n'
        'plugins = ["tests.fake_plugins.broken_import"]\n'
    )
    result = run("run", "--config", str(path))
    assert result.returncode == 2
    assert 'Error importing plugin "tests.fake_plugins.broken_import"' in result.stderr


def test_unknown_command_is_a_usage_error():
    result = run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
