"""Configuration: defaults, environment overrides, errors naming file and key, check-config."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlwarden.cli import main
from mlwarden.daemon.core.config_loader import ENV_OVERRIDES, load_config
from mlwarden.errors import ConfigError

# DESIGN section 4: variable -> (config key, default, a value to set, its parsed form).
ENV_TABLE = [
    ("MLOPS_BASE_PATH", "daemon.base_path", "./mlwarden-data", "/srv/warden", "/srv/warden"),
    ("MAX_CONCURRENT_TRAINING_JOBS", "training.max_concurrent_jobs", 3, "5", 5),
    ("TRAINING_JOB_TIMEOUT_HOURS", "training.job_timeout_hours", 6.0, "1.5", 1.5),
    ("MIN_TRAINING_DATA_POINTS", "training.min_training_data_points", 1000, "250", 250),
    ("DRIFT_THRESHOLD", "monitoring.drift_threshold", 0.1, "0.2", 0.2),
    ("PERFORMANCE_THRESHOLD", "monitoring.performance_threshold", 0.15, "0.3", 0.3),
    ("MONITORING_WINDOW_HOURS", "monitoring.window_hours", 24.0, "6", 6.0),
    ("AB_TEST_MIN_DURATION_HOURS", "ab_testing.min_duration_hours", 24.0, "48", 48.0),
    ("AB_TEST_CONFIDENCE_LEVEL", "ab_testing.confidence_level", 0.95, "0.99", 0.99),
    ("AB_TEST_SIGNIFICANCE_THRESHOLD", "ab_testing.significance_threshold", 0.05, "0.01", 0.01),
]


def get(config, dotted: str):
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mlwarden.toml"
    path.write_text(text)
    return path


def test_env_table_matches_design():
    ours = {
        "MLFLOW_TRACKING_URI",
        "MLWARDEN_INSTANCE",
        "MLWARDEN_STORE_URL",
    }  # beyond the design's table
    assert set(ENV_OVERRIDES) == {row[0] for row in ENV_TABLE} | ours
    for var, dotted, *_ in ENV_TABLE:
        assert ENV_OVERRIDES[var] == tuple(dotted.split("."))


@pytest.mark.parametrize(("var", "dotted", "default", "text", "value"), ENV_TABLE)
def test_env_var_default_and_override(var, dotted, default, text, value):
    assert get(load_config(env={}), dotted) == default
    assert get(load_config(env={var: text}), dotted) == value


def test_env_var_beats_the_file(tmp_path):
    path = write(tmp_path, "[monitoring]\ndrift_threshold = 0.3\n")
    assert load_config(path, env={}).monitoring.drift_threshold == 0.3
    assert load_config(path, env={"DRIFT_THRESHOLD": "0.05"}).monitoring.drift_threshold == 0.05


def test_empty_env_var_is_ignored():
    assert load_config(env={"DRIFT_THRESHOLD": ""}).monitoring.drift_threshold == 0.1


def test_embedded_defaults_put_everything_under_the_base_path(tmp_path):
    config = load_config(env={"MLOPS_BASE_PATH": str(tmp_path)})
    assert config.source == "<defaults>"
    assert config.daemon.listen == "127.0.0.1:9741"
    assert config.base_path == tmp_path
    assert config.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path}/mlwarden.db"
    assert config.artifact_location == f"{tmp_path}/mlartifacts"
    relative = load_config(env={})
    assert relative.base_path == (Path.cwd() / "mlwarden-data").resolve()


def test_tracking_uri_env_var():
    uri = "postgresql://warden:pw@db.internal/mlflow"
    assert load_config(env={"MLFLOW_TRACKING_URI": uri}).tracking_uri == uri


def test_config_is_frozen():
    config = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.monitoring.drift_threshold = 0.5  # type: ignore[misc]


def test_env_var_of_wrong_type_names_variable_and_key():
    with pytest.raises(ConfigError) as err:
        load_config(env={"MAX_CONCURRENT_TRAINING_JOBS": "three"})
    message = str(err.value)
    assert "MAX_CONCURRENT_TRAINING_JOBS" in message
    assert "training.max_concurrent_jobs" in message
    assert "expected an integer" in message


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('[monitoring]\ndrift_threshold = "high"\n', "monitoring.drift_threshold", "a number"),
        ("[training]\nmax_concurrent_jobs = 2.5\n", "training.max_concurrent_jobs", "an integer"),
        ('[daemon]\nplugins = "mycompany.plugins"\n', "daemon.plugins", "an array"),
        ('[daemon]\nlog_level = "LOUD"\n', "daemon.log_level", "one of"),
        ("[ab_testing]\nsequential = 1\n", "ab_testing.sequential", "true or false"),
        ("daemon = 3\n", "daemon", "a table"),
        (
            '[[auth.tokens]]\nname = "x"\nsha256 = "' + "a" * 64 + '"\nrole = "root"\n',
            "auth.tokens[0].role",
            "one of",
        ),
        ('[[models]]\nname = "m"\ntask = "ranking"\n', "models[0].task", "one of"),
        ("[monitoring]\ndrift_threshold = 1.5\n", "monitoring.drift_threshold", "(0, 1)"),
        ('[daemon]\nlisten = "nowhere"\n', "daemon.listen", "HOST:PORT"),
        ('[[auth.tokens]]\nname = "x"\nsha256 = "abc"\n', "auth.tokens[0].sha256", "64"),
    ],
)
def test_wrong_value_names_file_key_and_expectation(tmp_path, text, key, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert message.startswith(f"{path}: key '{key}'"), message
    assert expected in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[daemon]\nlisten_address = "127.0.0.1:1"\n', "daemon.listen_address"),
        ("[monitor]\ninterval_seconds = 5\n", "monitor"),
        ('[[models]]\nname = "m"\nfeaturez = ["a"]\n', "models[0].featurez"),
    ],
)
def test_unknown_key_names_file_and_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert message.startswith(f"{path}: key '{key}': unknown key (expected one of: "), message


def test_missing_required_key(tmp_path):
    path = write(tmp_path, '[[auth.tokens]]\nname = "ci"\n')
    with pytest.raises(ConfigError, match=r"key 'auth.tokens\[0\].sha256': required"):
        load_config(path, env={})


def test_every_problem_is_reported(tmp_path):
    path = write(tmp_path, '[daemon]\nbogus = 1\nlog_level = 3\n[training]\nmax_retries = "x"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert len(err.value.problems) == 3
    assert all(line.startswith(f"{path}: key '") for line in str(err.value).splitlines())


def test_bad_toml_names_file_and_line(tmp_path):
    path = write(tmp_path, "[daemon]\nlisten = \n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value).startswith(f"{path}: not valid TOML: ")
    assert "line 2" in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_check_config_prints_redacted_configuration(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://warden:s3cret@db/mlflow")
    path = write(
        tmp_path,
        '[daemon]\nbase_path = "' + str(tmp_path / "state") + '"\n'
        '[[auth.tokens]]\nname = "grafana"\nsha256 = "' + "ab" * 32 + '"\nrole = "viewer"\n'
        '[[notifiers]]\nname = "oncall"\nplugin = "log"\n'
        'urls = ["mailto://user:pw@example.com"]\n',
    )
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    effective = json.loads(out)
    assert effective["auth"]["tokens"] == [{"name": "grafana", "sha256": "***", "role": "viewer"}]
    assert effective["notifiers"][0]["urls"] == ["***"]
    assert effective["mlflow"]["tracking_uri"] == "postgresql://warden:***@db/mlflow"
    assert effective["daemon"]["base_path"] == str(tmp_path / "state")
    assert "ab" * 32 not in out and "s3cret" not in out and "user:pw" not in out


def test_check_config_command_exits_1_naming_file_and_key(tmp_path):
    path = write(tmp_path, '[monitoring]\ndrift_threshold = "high"\n[daemon]\nport = 1\n')
    result = subprocess.run(
        [sys.executable, "-m", "mlwarden", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{path}: key 'monitoring.drift_threshold': expected a number" in result.stderr
    assert f"{path}: key 'daemon.port': unknown key" in result.stderr


def test_check_config_holds_the_configuration_against_the_installed_plugins(tmp_path, capsys):
    """Unknown plugin names and options a plugin refuses are found before the start."""
    path = write(
        tmp_path,
        '[deployment]\ndefault_strategy = "canary"\n'
        '[deployment.strategies.canary]\nsteps = "x"\n'
        '[[models]]\nname = "m"\ndrift_methods = ["ks", "kss"]\ntriggers = ["nada"]\n'
        'strategy = "zzz"\n[models.drift_options.ks]\nthreshold = 2\n'
        '[[notifiers]]\nname = "n"\nplugin = "pager"\n',
    )
    assert main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    unknown = "key 'models[0].drift_methods[1]': unknown drift_method 'kss' (available: "
    assert f"{path}: {unknown}" in err
    assert "key 'models[0].drift_methods[0]': drift_method 'ks' refuses its options" in err
    assert "key 'models[0].triggers[0]': unknown trigger 'nada'" in err
    assert "key 'models[0].strategy': unknown strategy 'zzz'" in err
    assert "key 'deployment.strategies.canary': strategy 'canary' refuses its options: " in err
    assert "key 'notifiers[0].plugin': unknown notifier 'pager'" in err
    assert "key 'deployment.default_strategy'" not in err  # canary is installed


def test_check_config_without_file_prints_defaults(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_BASE_PATH", str(tmp_path))
    assert main(["check-config"]) == 0
    effective = json.loads(capsys.readouterr().out)
    assert effective["source"] == "<defaults>"
    assert effective["daemon"]["base_path"] == str(tmp_path)
    assert effective["mlflow"]["tracking_uri"] == f"sqlite:///{tmp_path}/mlflow.db"


def test_run_refuses_a_bad_file_naming_file_and_key(tmp_path):
    path = write(tmp_path, "[daemon]\nlisten_addr = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "mlwarden", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{path}: key 'daemon.listen_addr': unknown key" in result.stderr
