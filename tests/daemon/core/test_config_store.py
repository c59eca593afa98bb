"""The [store] section: its URL (and deprecated alias), validation, and redaction."""

from __future__ import annotations

import json

import pytest

from mlwarden.cli import main
from mlwarden.daemon.core.config_loader import load_config
from mlwarden.daemon.core.redaction import secrets_of
from mlwarden.errors import ConfigError

PG = "postgresql+asyncpg://warden:pg-s3cret-pw@db.internal:5432/mlwarden"


def test_store_url_from_the_file_or_the_environment(tmp_path):
    path = tmp_path / "mlwarden.toml"
    path.write_text(f'[store]\nurl = "{PG}"\npool_size = 20\nstatement_timeout_seconds = 0\n')
    config = load_config(path, env={})
    assert config.database_url == PG
    assert (config.store.pool_size, config.store.statement_timeout_seconds) == (20, 0.0)
    other = PG.replace("db.internal", "db2")
    assert load_config(path, env={"MLWARDEN_STORE_URL": other}).database_url == other
    assert load_config(env={"MLWARDEN_STORE_URL": ""}).database_url.startswith("sqlite+aiosqlite:")


def test_daemon_database_url_is_a_deprecated_alias(tmp_path, capsys):
    path = tmp_path / "mlwarden.toml"
    path.write_text(f'[daemon]\ndatabase_url = "{PG}"\n')
    assert load_config(path, env={}).database_url == PG
    assert main(["check-config", "--config", str(path)]) == 0
    assert "'daemon.database_url' is deprecated: use [store] url" in capsys.readouterr().err
    path.write_text(f'[daemon]\ndatabase_url = "{PG}"\n[store]\nurl = "{PG}x"\n')
    with pytest.raises(ConfigError, match=r"deprecated alias of 'store\.url'.*different URLs"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h/db", "needs the asyncpg driver: postgresql\\+asyncpg://"),
        ("mysql+aiomysql://u:p@h/db", "got scheme 'mysql\\+aiomysql'"),
        ("/var/lib/mlwarden.db", "got scheme '/var/lib/mlwarden.db'"),
        ("postgresql+asyncpg://u:p@h:5432/", "names no database"),
        ("sqlite+aiosqlite://relative.db", "expected sqlite\\+aiosqlite:///PATH"),
    ],
)
def test_a_bad_store_url_is_refused_naming_the_key(url, expected):
    with pytest.raises(ConfigError, match=f"key 'store.url': .*{expected}"):
        load_config(env={"MLWARDEN_STORE_URL": url})


def test_pool_and_timeouts_are_validated(tmp_path):
    path = tmp_path / "mlwarden.toml"
    path.write_text(
        "[store]\npool_size = 0\nmax_overflow = -1\npool_timeout_seconds = 0\n"
        "connect_timeout_seconds = -2\nlock_timeout_seconds = -1\n"
    )
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    text = str(error.value)
    for key in (
        "store.pool_size",
        "store.max_overflow",
        "store.pool_timeout_seconds",
        "store.connect_timeout_seconds",
        "store.lock_timeout_seconds",
    ):
        assert f"key '{key}'" in text


def test_the_store_password_is_redacted_in_check_config_and_logs(tmp_path, capsys):
    path = tmp_path / "mlwarden.toml"
    path.write_text(f'[store]\nurl = "{PG}"\n')
    assert main(["check-config", "--config", str(path)]) == 0
    captured = capsys.readouterr()
    assert "pg-s3cret-pw" not in captured.out + captured.err
    effective = json.loads(captured.out)
    assert effective["store"]["url"] == "postgresql+asyncpg://warden:***@db.internal:5432/mlwarden"
    assert "pg-s3cret-pw" in secrets_of(load_config(path, env={}))
    # A password given as a query parameter is redacted too.
    query = "postgresql+asyncpg://warden@db/mlwarden?password=qu3ry-s3cret&ssl=require"
    path.write_text(f'[daemon]\ndatabase_url = "{query}"\n')
    assert main(["check-config", "--config", str(path)]) == 0
    captured = capsys.readouterr()
    assert "qu3ry-s3cret" not in captured.out + captured.err
    assert json.loads(captured.out)["store"]["url"].endswith("?password=***&ssl=require")
    assert "qu3ry-s3cret" in secrets_of(load_config(path, env={}))


def test_a_world_readable_file_holding_the_store_password_is_warned_about(tmp_path, monkeypatch):
    from mlwarden.daemon.core.config_checks import secret_file_warnings

    monkeypatch.delenv("MLWARDEN_STORE_URL", raising=False)
    path = tmp_path / "mlwarden.toml"
    path.write_text(f'[store]\nurl = "{PG}"\n')
    path.chmod(0o644)
    assert "database credentials" in secret_file_warnings(load_config(path, env={}))[0]
    # The same URL from the environment is not in the file: nothing to warn about.
    path.write_text("")
    monkeypatch.setenv("MLWARDEN_STORE_URL", PG)
    assert secret_file_warnings(load_config(path)) == []
