"""Performance estimation in the daemon: scores on the wire, estimates, events, failures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlwarden import hookimpl
from mlwarden.plugins.triggers.performance import PerformanceTrigger
from mlwarden.types import TriggerContext


def frame(n: int, seed: int, shift: str = "none", labels: bool = True) -> pd.DataFrame:
    """The binary scenario of tests/plugins/estimators/scenarios.py, as the daemon sees it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    if shift == "harmful":
        x[:, 0] *= 0.25
    elif shift == "harmless":
        x[:, 1] += 1.5
    truth = 1 / (1 + np.exp(-3 * x[:, 0]))
    score = 1 / (1 + np.exp(-1.5 * x[:, 0] - 0.3))
    data = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "probability": score})
    data["prediction"] = np.where(score >= 0.5, "1", "0")
    if labels:
        data["label"] = np.where(rng.uniform(size=n) < truth, "1", "0")
    return data


def body(data: pd.DataFrame, prefix: str, scores: bool = True) -> dict:
    columns = {
        "id": [f"{prefix}{i}" for i in range(len(data))],
        "features": {"x0": data["x0"].tolist(), "x1": data["x1"].tolist()},
        "prediction": data["prediction"].tolist(),
    }
    if scores:
        columns["probability"] = data["probability"].tolist()
    return {"columns": columns}


class EventLog:
    def __init__(self):
        self.events = []

    @hookimpl
    def mlwarden_event(self, event):
        self.events.append(event)


@pytest.fixture
def references(tmp_path):
    full = tmp_path / "reference.csv"
    frame(10000, seed=1).to_csv(full, index=False)
    unlabelled = tmp_path / "unlabelled.csv"
    frame(2000, seed=2, labels=False).to_csv(unlabelled, index=False)
    noscores = tmp_path / "noscores.csv"
    frame(2000, seed=3).drop(columns="probability").to_csv(noscores, index=False)
    return full, unlabelled, noscores


def config(full, unlabelled, noscores, extra: str = "") -> str:
    model = 'task = "classification"\nfeatures = ["x0", "x1"]\npositive_label = "1"\n'
    return (
        '[daemon]\nplugins = ["tests.fake_plugins.broken_estimator"]\n'
        "[monitoring]\ninterval_seconds = 3600\nmin_window_rows = 200\n"
        "estimation_timeout_seconds = 3\n"
        f'[[models]]\nname = "harmful"\nreference = "{full}"\n{model}'
        f'[[models]]\nname = "harmless"\nreference = "{full}"\n{model}'
        f'[[models]]\nname = "nolabels"\nreference = "{unlabelled}"\n{model}'
        f'[[models]]\nname = "noscores"\nreference = "{noscores}"\n{model}'
        f'[[models]]\nname = "raising"\nreference = "{full}"\n{model}estimator = "raising"\n'
        f'[[models]]\nname = "hanging"\nreference = "{full}"\n{model}estimator = "hanging"\n'
        + extra
    )


@pytest.fixture
async def warden(make_warden, references):
    w = await make_warden(config(*references))
    for name in ("harmful", "harmless", "nolabels", "noscores", "raising", "hanging"):
        await w.ingest.model_state(name).ready.wait()
    log = EventLog()
    w.pm.register(log, name="test-event-log")
    w.event_log = log
    return w


def sample(warden, name, labels):
    return warden.metrics.registry.get_sample_value(name, labels)


async def test_harmful_shift_is_estimated_and_triggers_the_harmless_does_not(warden):
    shifted = frame(2000, seed=10, shift="harmful")
    await warden.ingest.record_predictions("harmful", body(shifted, "h"))
    await warden.ingest.record_predictions(
        "harmless", body(frame(2000, seed=11, shift="harmless"), "s")
    )
    for name in ("harmful", "harmless"):
        report = await warden.check_drift(name)
        assert report["status"] == "ok"
    [harmful] = await warden.estimation.history("harmful", days=1)
    [harmless] = await warden.estimation.history("harmless", days=1)
    assert harmful["estimator"] == "cbpe" and harmful["rows"] == 2000
    assert harmful["labelled_rows"] == 0
    accuracy = harmful["metrics"]["accuracy"]
    assert accuracy["realized"] is None
    assert accuracy["lower"] <= accuracy["value"] <= accuracy["upper"]
    assert accuracy["value"] < 0.7 < harmless["metrics"]["accuracy"]["value"]
    # Exported with its band.
    labels = {"model": "harmful", "version": "all", "metric": "accuracy"}
    assert sample(warden, "mlwarden_estimated_metric", labels) == pytest.approx(accuracy["value"])
    assert sample(warden, "mlwarden_estimated_metric_lower", labels) == pytest.approx(
        accuracy["lower"]
    )
    # The harmful shift raised the event, the harmless did not; the trigger acts on it
    # only when told to use estimates.
    events = [e for e in warden.event_log.events if e.kind.startswith("performance_estimate")]
    assert [(e.kind, e.model) for e in events] == [("performance_estimate_degraded", "harmful")]
    context = TriggerContext(model="harmful", now=0.0, event=events[0])
    assert PerformanceTrigger(use_estimates=True).evaluate(context).fire
    assert not PerformanceTrigger().evaluate(context).fire
    # The built-in alert rule turns the event into an alert.
    alerts = await warden.alerts.alerts(model="harmful")
    [alert] = [a for a in alerts if a["rule"] == "ModelPerformanceEstimateDegraded"]
    assert alert["labels"]["metric"] == "accuracy", alert
    assert "estimated accuracy of harmful" in alert["summary"], alert
    assert "before the labels arrive" in alert["summary"], alert

    # The labels arrive: the realized value is stored beside the estimate.
    await warden.ingest.record_labels(
        "harmful",
        {"labels": [{"id": f"h{i}", "label": y} for i, y in enumerate(shifted["label"])]},
    )
    await warden.check_drift("harmful")
    first, second = await warden.estimation.history("harmful", days=1)
    for entry in (first, second):
        metric = entry["metrics"]["accuracy"]
        assert metric["realized"] == pytest.approx(
            np.mean(shifted["label"] == shifted["prediction"])
        )
        assert metric["error"] == pytest.approx(metric["value"] - metric["realized"])
        assert abs(metric["error"]) < 0.05
        # The scores came through the join: ROC AUC is compared too.
        roc = entry["metrics"]["roc_auc"]
        assert roc["realized"] == pytest.approx(
            roc_auc_score(shifted["label"] == "1", shifted["probability"])
        )
        assert roc["error"] == pytest.approx(roc["value"] - roc["realized"])
    assert first["labelled_rows"] == 2000
    error = sample(warden, "mlwarden_estimation_error", labels)
    assert error == pytest.approx(second["metrics"]["accuracy"]["error"])


async def test_what_is_missing_is_named_and_drift_checks_go_on(warden, make_client):
    client = await make_client(warden)
    await warden.ingest.record_predictions("nolabels", body(frame(500, seed=20), "a"))
    await warden.ingest.record_predictions("noscores", body(frame(500, seed=21), "b", False))
    for name, missing in (("nolabels", "label column 'label'"), ("noscores", "probabilities")):
        assert (await warden.check_drift(name))["status"] == "ok"
        response = await client.post(f"/api/models/{name}/performance-estimate")
        assert response.status == 409
        message = (await response.json())["error"]["message"]
        assert missing in message, message
    # A classifier whose reference has scores but whose predictions carry none.
    await warden.ingest.record_predictions("harmless", body(frame(500, seed=22), "c", False))
    response = await client.post("/api/models/harmless/performance-estimate")
    assert response.status == 409
    assert "carry no 'probability'" in (await response.json())["error"]["message"]
    response = await client.get("/api/models/nolabels/performance-estimates")
    assert response.status == 200
    assert "label column" in (await response.json())["status"]


async def test_a_reference_without_labels_is_not_read_again(warden, references):
    """Its profile has no target: estimation is off without reading the file (memory)."""
    references[1].unlink()  # the profile was built from it at the start
    await warden.ingest.record_predictions("nolabels", body(frame(500, seed=23), "d"))
    assert (await warden.check_drift("nolabels"))["status"] == "ok"
    status = warden.estimation.status("nolabels")
    assert "no label column 'label'" in status, status


async def test_an_estimator_that_raises_or_hangs_is_isolated_and_counted(warden):
    from tests.fake_plugins.broken_estimator import RELEASE

    try:
        for name in ("raising", "hanging"):
            await warden.ingest.record_predictions(name, body(frame(500, seed=30), name))
            report = await warden.check_drift(name)
            assert report["status"] == "ok"  # the drift check went on
        assert (
            sample(
                warden,
                "mlwarden_plugin_errors_total",
                {"plugin": "raising", "hook": "performance_estimator.estimate"},
            )
            == 1
        )
        assert (
            sample(
                warden,
                "mlwarden_plugin_errors_total",
                {"plugin": "hanging", "hook": "performance_estimator.estimate"},
            )
            == 1
        )
        assert "boom in estimate" in warden.estimation.status("raising")
        assert "longer than 3 s" in warden.estimation.status("hanging")
        assert await warden.estimation.history("raising", days=1) == []
    finally:
        RELEASE.set()


async def test_scores_are_validated_on_the_wire(warden):
    from mlwarden.errors import InvalidInput

    data = frame(3, seed=40)
    bad = body(data, "v")
    bad["columns"]["probability"][1] = 1.5
    with pytest.raises(InvalidInput, match=r"record 1 \(id 'v1'\), field 'probability'.*\[0, 1\]"):
        await warden.ingest.record_predictions("harmless", bad)
    records = {"records": [
        {"id": "r0", "features": {"x0": 0.1, "x1": 0.2}, "prediction": "1",
         "probabilities": {"0": 0.3, "1": 0.6}},
    ]}  # fmt: skip
    with pytest.raises(InvalidInput, match=r"sum to 1 \(within 1e-06\), got 0.9"):
        await warden.ingest.record_predictions("harmless", records)
    records["records"][0]["probabilities"] = {"0": 0.4, "1": 0.6}
    await warden.ingest.record_predictions("harmless", records)
    records["records"].append({"id": "r1", "features": {"x0": 0.1, "x1": 0.2}, "prediction": "1"})
    records["records"][0]["id"] = "r2"
    with pytest.raises(InvalidInput, match=r"record 1 \(id 'r1'\), field 'probabilities': missing"):
        await warden.ingest.record_predictions("harmless", records)


def regression_frame(n: int, seed: int, shift: str = "none") -> pd.DataFrame:
    """The regression scenario: noise grows with |x0|; the harmful shift spreads x0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    if shift == "harmful":
        x[:, 0] *= 1.5
    elif shift == "harmless":
        x[:, 1] += 1.5
    prediction = 2 * x[:, 0] + x[:, 1]
    label = prediction + rng.normal(0.0, 0.2 + np.abs(x[:, 0]))
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "prediction": prediction, "label": label})


async def test_dle_estimates_the_mae_of_a_regressor_from_the_window_sample(make_warden, tmp_path):
    reference = tmp_path / "regression.csv"
    regression_frame(10000, seed=1).to_csv(reference, index=False)
    model = f'reference = "{reference}"\nfeatures = ["x0", "x1"]\nperformance_metric = "mae"\n'
    warden = await make_warden(
        "[monitoring]\ninterval_seconds = 3600\nmin_window_rows = 200\n"
        f'[[models]]\nname = "harmful"\n{model}[[models]]\nname = "harmless"\n{model}'
    )
    log = EventLog()
    warden.pm.register(log, name="test-event-log")
    for name, shift in (("harmful", "harmful"), ("harmless", "harmless")):
        await warden.ingest.model_state(name).ready.wait()
        data = regression_frame(3000, seed=5, shift=shift)
        columns = {
            "id": [f"{name}{i}" for i in range(len(data))],
            "features": {"x0": data["x0"].tolist(), "x1": data["x1"].tolist()},
            "prediction": data["prediction"].tolist(),
        }
        await warden.ingest.record_predictions(name, {"columns": columns})
        await warden.check_drift(name)
        [estimate] = await warden.estimation.history(name, days=1)
        assert estimate["estimator"] == "dle"
        mae = estimate["metrics"]["mae"]
        realized = float(np.mean(np.abs(data["label"] - data["prediction"])))
        assert abs(mae["value"] - realized) < 0.1 * realized, (name, mae, realized)
    kinds = [(e.kind, e.model) for e in log.events if e.kind.startswith("performance_estimate")]
    assert kinds == [("performance_estimate_degraded", "harmful")]
    assert warden.estimation.status("harmless") == "ready"


def multiclass_frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Three classes, softmax scores of a linear model; ``shift`` moves x0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    x[:, 0] += shift
    logits = np.column_stack([-2 * x[:, 0], np.zeros(n), 2 * x[:, 0] + x[:, 1]])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(3, p=p) for p in proba])
    data = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1]})
    for j, c in enumerate(("down", "flat", "up")):
        data[f"probabilities.{c}"] = proba[:, j]
    data["prediction"] = np.array(["down", "flat", "up"])[proba.argmax(axis=1)]
    data["label"] = np.array(["down", "flat", "up"])[truth]
    return data


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
async def test_scores_sent_as_json_or_arrow_give_the_same_estimate(
    make_warden, make_client, tmp_path, kind
):
    import pyarrow as pa

    from mlwarden.daemon.ingest.arrow import ARROW_STREAM

    if kind == "binary":
        reference, window = frame(10000, seed=1), frame(1000, seed=10, shift="harmful")
    else:
        reference, window = multiclass_frame(10000, seed=1), multiclass_frame(1000, 10, 0.5)
    path = tmp_path / "reference.parquet"
    reference.to_parquet(path)
    model = f'reference = "{path}"\ntask = "classification"\nfeatures = ["x0", "x1"]\n'
    model += 'positive_label = "1"\n' if kind == "binary" else ""
    warden = await make_warden(
        "[monitoring]\ninterval_seconds = 3600\nmin_window_rows = 200\n"
        f'[[models]]\nname = "json"\n{model}[[models]]\nname = "arrow"\n{model}'
    )
    client = await make_client(warden)
    ids = [f"w{i}" for i in range(len(window))]
    columns = {
        "id": ids,
        "features": {"x0": window["x0"].tolist(), "x1": window["x1"].tolist()},
        "prediction": window["prediction"].tolist(),
    }
    scores = [c for c in window.columns if c.startswith("probabilit")]
    if kind == "binary":
        columns["probability"] = window["probability"].tolist()
    else:
        columns["probabilities"] = {c.split(".")[1]: window[c].tolist() for c in scores}
    table = pa.Table.from_pandas(
        window[["x0", "x1", "prediction", *scores]].assign(id=ids), preserve_index=False
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    for name in ("json", "arrow"):
        await warden.ingest.model_state(name).ready.wait()
    response = await client.post("/api/models/json/predictions", json={"columns": columns})
    assert response.status == 201, await response.text()
    response = await client.post(
        "/api/models/arrow/predictions",
        data=sink.getvalue().to_pybytes(),
        headers={"Content-Type": ARROW_STREAM},
    )
    assert response.status == 201, await response.text()
    estimates = {}
    for name in ("json", "arrow"):
        response = await client.post(f"/api/models/{name}/performance-estimate")
        assert response.status == 200, await response.text()
        estimates[name] = (await response.json())["metrics"]
    assert estimates["json"] == estimates["arrow"]
    assert estimates["json"]["accuracy"]["value"] > 0.4


@pytest.mark.parametrize(
    ("column", "row", "value", "message"),
    [
        ("probability", 7, 1.5, r"row 7 \(0-based, first data row 0\), column 'probability'"),
        ("probability", 3, np.nan, r"row 3 .*column 'probability'.*got nan"),
        ("probabilities.up", 5, 0.9, r"row 5 .*column 'probabilities.\*'.*sum to 1"),
        ("probabilities.up", 2, "high", r"column 'probabilities.up': expected probabilities"),
    ],
)
async def test_the_references_scores_are_validated(
    make_warden, make_client, tmp_path, column, row, value, message
):
    """Bad scores in the reference: a clear 409 naming the row and column; drift goes on."""
    import re

    data = frame(400, seed=1)
    if column.startswith("probabilities."):
        data["probabilities.up"] = data.pop("probability")
        data["probabilities.down"] = 1 - data["probabilities.up"]
        data["prediction"] = np.where(data["prediction"] == "1", "up", "down")
        data["label"] = np.where(data["label"] == "1", "up", "down")
    data[column] = data[column].astype(object if isinstance(value, str) else float)
    data.loc[row, column] = value
    path = tmp_path / "reference.csv"
    data.to_csv(path, index=False)
    warden = await make_warden(
        "[monitoring]\ninterval_seconds = 3600\nmin_window_rows = 50\n"
        f'[[models]]\nname = "m"\nreference = "{path}"\ntask = "classification"\n'
        'features = ["x0", "x1"]\npositive_label = "1"\n'
    )
    client = await make_client(warden)
    await warden.ingest.model_state("m").ready.wait()
    window = frame(100, seed=2)
    await warden.ingest.record_predictions("m", body(window, "w"))
    assert (await warden.check_drift("m"))["status"] == "ok"
    response = await client.post("/api/models/m/performance-estimate")
    assert response.status == 409
    error = (await response.json())["error"]["message"]
    assert re.search(message, error), error
