"""Config checks of performance estimation: what a model asking for an estimator lacks."""

from __future__ import annotations

import pandas as pd
import pytest

from mlwarden.daemon.core.config_loader import load_config
from mlwarden.errors import ConfigError


def write(tmp_path, reference: pd.DataFrame, model: str, suffix: str = ".csv"):
    path = tmp_path / f"reference{suffix}"
    if suffix == ".csv":
        reference.to_csv(path, index=False)
    else:
        reference.to_parquet(path)
    config = tmp_path / "mlwarden.toml"
    config.write_text(f'[[models]]\nname = "m"\nreference = "{path}"\n{model}')
    return config


FULL = pd.DataFrame({"x": [0.1, 0.2], "prediction": ["1", "0"], "label": ["1", "1"],
                     "probability": [0.7, 0.2]})  # fmt: skip


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_complete_reference_passes(tmp_path, suffix):
    config = write(tmp_path, FULL, 'task = "classification"\nestimator = "cbpe"\n', suffix)
    assert load_config(config, env={}).models[0].estimator == "cbpe"


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("label", "has no label column 'label'"),
        ("probability", "has no probabilities: a 'probability' column"),
        ("prediction", "has no prediction column 'prediction'"),
    ],
)
def test_what_the_reference_lacks_is_named(tmp_path, drop, message):
    config = write(
        tmp_path, FULL.drop(columns=drop), 'task = "classification"\nestimator = "cbpe"\n'
    )
    with pytest.raises(ConfigError, match=rf"models\[0\]\.estimator'.*{message}"):
        load_config(config, env={})


def test_estimation_without_a_reference_is_refused(tmp_path):
    config = tmp_path / "mlwarden.toml"
    config.write_text('[[models]]\nname = "m"\nestimator = "dle"\n')
    with pytest.raises(ConfigError, match="needs a reference with labels"):
        load_config(config, env={})


def test_the_default_estimator_needs_nothing_and_none_turns_it_off(tmp_path):
    unlabelled = FULL.drop(columns=["label", "probability"])
    for model in ("", 'estimator = "none"\n'):
        load_config(write(tmp_path, unlabelled, 'task = "classification"\n' + model), env={})
