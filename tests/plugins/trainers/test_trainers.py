"""The command and python trainers: environment contract, output parsing, options."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mlwarden.errors import TrainingFailed
from mlwarden.plugins.trainers.command import CommandTrainer
from mlwarden.plugins.trainers.process import read_training_output
from mlwarden.plugins.trainers.python import PythonTrainer
from mlwarden.types import TrainingJob

REPO = Path(__file__).resolve().parents[3]

ECHO_ENV = """
import json, os
keys = ["MLFLOW_TRACKING_URI", "MLWARDEN_MODEL", "MLWARDEN_JOB_ID", "MLWARDEN_ATTEMPT",
        "MLWARDEN_REASON", "MLFLOW_EXPERIMENT_NAME", "EXTRA"]
print("hello from the trainer")
with open(os.environ["MLWARDEN_OUTPUT"], "w") as fh:
    json.dump({"model_uri": "m-1", "metrics": {"mse": 0.5},
               "params": {k: os.environ.get(k) for k in keys}}, fh)
"""


def job(tmp_path: Path, **kw) -> TrainingJob:
    return TrainingJob(
        id="job123",
        model="btc",
        reason="test",
        tracking_uri="sqlite:///x.db",
        output_path=str(tmp_path / "out.json"),
        log_path=str(tmp_path / "train.log"),
        timeout_seconds=kw.pop("timeout_seconds", 60.0),
        options={"kill_grace_seconds": 1.0, "experiment": "mlwarden"},
        attempt=2,
    )


async def test_command_trainer_environment_output_and_log(tmp_path):
    trainer = CommandTrainer(command=[sys.executable, "-c", ECHO_ENV], env={"EXTRA": "yes"})
    result = await trainer.train(job(tmp_path))
    assert result.model_uri == "m-1" and result.metrics == {"mse": 0.5}
    assert result.params == {
        "MLFLOW_TRACKING_URI": "sqlite:///x.db",
        "MLWARDEN_MODEL": "btc",
        "MLWARDEN_JOB_ID": "job123",
        "MLWARDEN_ATTEMPT": "2",
        "MLWARDEN_REASON": "test",
        "MLFLOW_EXPERIMENT_NAME": "mlwarden",
        "EXTRA": "yes",
    }
    assert "hello from the trainer" in (tmp_path / "train.log").read_text()


async def test_python_trainer_writes_the_returned_dict(tmp_path):
    trainer = PythonTrainer(
        function="tests.fake_trainers.light:report",
        kwargs={"model_uri": "m-2", "mse": 0.25},
        pythonpath=[str(REPO)],
    )
    result = await trainer.train(job(tmp_path))
    assert result.model_uri == "m-2" and result.metrics == {"mse": 0.25}


async def test_nonzero_exit_and_signal_are_failures(tmp_path):
    with pytest.raises(TrainingFailed, match="exited with code 4"):
        await CommandTrainer(command=[sys.executable, "-c", "raise SystemExit(4)"]).train(
            job(tmp_path)
        )
    kill_self = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    with pytest.raises(TrainingFailed, match="killed by signal 9"):
        await CommandTrainer(command=[sys.executable, "-c", kill_self]).train(job(tmp_path))
    with pytest.raises(TrainingFailed, match="cannot start trainer command"):
        await CommandTrainer(command=["/nonexistent/trainer"]).train(job(tmp_path))


def test_training_errors_live_in_errors_and_stay_importable_from_process():
    from mlwarden import errors
    from mlwarden.plugins.trainers import process

    assert process.TrainingFailed is errors.TrainingFailed
    assert process.TrainingTimedOut is errors.TrainingTimedOut
    assert {"TrainingFailed", "TrainingTimedOut"} <= set(process.__all__)
    assert issubclass(errors.TrainingTimedOut, errors.TrainingFailed)
    assert issubclass(errors.TrainingFailed, errors.MlwardenError)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (None, "wrote no output file"),
        ("{nope", "not valid JSON"),
        ("[1]", "expected a JSON object"),
        ('{"metrics": {}}', "'model_uri' must be a non-empty string"),
        ('{"model_uri": "m-1", "metrics": {"mse": NaN}}', "metric 'mse' must be a finite number"),
        ('{"model_uri": "m-1", "metrics": {"ok": true}}', "metric 'ok' must be a finite number"),
        ('{"model_uri": "m-1", "metrics": []}', "'metrics' must be an object"),
        ('{"model_uri": "m-1", "data_points": -1}', "'data_points' must be an integer >= 0"),
        ('{"model_uri": "m-1", "run_id": 5}', "'run_id' must be a string"),
    ],
)
def test_bad_output_files_name_the_problem(tmp_path, text, needle):
    path = tmp_path / "out.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(TrainingFailed, match=needle.replace("(", r"\(").replace("[", r"\[")):
        read_training_output(str(path))


@pytest.mark.parametrize(
    ("cls", "options", "needle"),
    [
        (CommandTrainer, {"command": "python train.py"}, "non-empty array"),
        (CommandTrainer, {"command": []}, "non-empty array"),
        (CommandTrainer, {"command": ["python", 3]}, "only strings"),
        (CommandTrainer, {"command": ["x"], "env": {"A": 1}}, "map strings to strings"),
        (CommandTrainer, {"command": ["x"], "cwd": "/nonexistent/dir"}, "not a directory"),
        (PythonTrainer, {"function": "train"}, "package.module:function"),
        (PythonTrainer, {"function": "a.b:c", "kwargs": {"x": object()}}, "JSON-serialisable"),
    ],
)
def test_bad_options_are_refused(cls, options, needle):
    with pytest.raises(ValueError, match=needle):
        cls(**options)


def test_output_is_parsed_with_optional_fields(tmp_path):
    path = tmp_path / "out.json"
    path.write_text(json.dumps({"model_uri": "m-1", "run_id": "r", "data_points": 10}))
    result = read_training_output(str(path))
    assert result.run_id == "r" and result.params == {"data_points": 10} and result.metrics == {}
