"""mlwarden.client against a real daemon: data forms, retries, refusals, a full buffer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from aiohttp import web

from mlwarden.client import AsyncClient, Client, monitor
from mlwarden.daemon.api.routes import Route

from ..daemon.ingest.test_ingest import config, ready, write_reference

FEATURES = {"x": 0.5, "y": 0.25, "kind": "a"}


@pytest.fixture
def reference(tmp_path):
    return write_reference(tmp_path)


async def stored(warden, model: str = "m") -> int:
    return await warden.ingest.count_predictions(model)


@pytest.fixture
async def served(make_warden, make_client, reference):
    """(warden, base url) of a real warden served on a loopback port."""
    warden = await make_warden(config(reference))
    await ready(warden)
    await ready(warden, "cls")
    client = await make_client(warden)
    return warden, str(client.make_url("")).rstrip("/")


def test_importing_the_client_imports_no_daemon_and_no_ml_library():
    code = (
        "import sys, json, mlwarden.client as c\n"
        "first = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mlflow', 'scipy', 'sklearn', 'aiohttp', 'sqlalchemy') "
        "or m.startswith('mlwarden.daemon'))\n"
        "client = c.Client('http://127.0.0.1:9')\n"
        "client.close(0.1)\n"
        "after = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mlflow', 'scipy', 'sklearn') or m.startswith('mlwarden.daemon'))\n"
        "print(json.dumps([first, after]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    first, after = json.loads(out.stdout.splitlines()[-1])
    assert first == [] and after == []


async def test_every_data_form_arrives(served):
    warden, url = served
    client = Client(url, max_age_seconds=0.05)
    try:
        frame = pd.DataFrame({"x": [1.0, 2.0], "y": [0.1, 0.2], "kind": ["a", "b"]})
        client.log_predictions("m", frame, ids=["d0", "d1"], predictions=[1.0, 2.0])
        client.log_predictions("m", FEATURES, ids="one", predictions=0.5)
        client.log_predictions("m", [FEATURES, FEATURES], ids=["l0", "l1"], predictions=[1, 2])
        table = pa.table({"x": [1.0], "y": [2.0], "kind": ["c"], "prediction": [3.0]})
        client.log_predictions("m", table, ids=["t0"], version="2.0.0")
        columns = {"x": np.array([1.0, 2.0]), "y": np.array([3.0, 4.0]), "kind": ["a", "a"]}
        client.log_predictions("m", columns, predictions=np.array([1.0, 2.0]))  # ids generated
        assert await asyncio.to_thread(client.flush, 30)
        assert await stored(warden) == 8
        client.log_labels("m", ["d0", "d1", "one"], [1.5, 2.5, 0.0])
        assert await asyncio.to_thread(client.flush, 30)
        outcomes = await warden.ingest.outcomes("m")
        assert sorted(outcomes.id.tolist()) == ["d0", "d1", "one"]
        assert client.stats()["sent_rows"] == 11
    finally:
        await asyncio.to_thread(client.close)


async def test_a_classifiers_scores_arrive_in_every_form(served):
    warden, url = served
    client = Client(url, max_age_seconds=0.05)
    now = time.time()
    frame = pd.DataFrame({"x": [0.1, 0.9], "kind": ["a", "b"]})
    proba = np.array([[0.7, 0.3], [0.2, 0.8]])
    try:
        # binary: P(positive class) per row, a while ago (its own window below)
        client.log_predictions(
            "cls", frame, ids=["b0", "b1"], predictions=["down", "up"], timestamps=[now - 1800] * 2,
            probabilities=proba[:, 1],
        )  # fmt: skip
        assert await asyncio.to_thread(client.flush, 30)
        found = await warden.ingest.scored_predictions("cls", now - 3600, now - 900)
        assert found.classes == () and found.scores[:, 0].tolist() == [0.3, 0.8]
        # multiclass: predict_proba's array with classes, a DataFrame, a dict of columns,
        # a list of dicts, one record's dict, columns of the data, a nested dict per record
        forms = [
            {"probabilities": proba, "classes": ["down", "up"]},
            {"probabilities": pd.DataFrame(proba, columns=["down", "up"])},
            {"probabilities": {"down": proba[:, 0], "up": proba[:, 1]}},
            {"probabilities": [{"down": 0.7, "up": 0.3}, {"down": 0.2, "up": 0.8}]},
        ]
        for i, form in enumerate(forms):
            client.log_predictions(
                "cls", frame, ids=[f"m{i}a", f"m{i}b"], predictions=["down", "up"], **form
            )
        client.log_predictions(
            "cls", {"x": 0.5, "kind": "a"}, ids="one", predictions="up",
            probabilities=np.array([0.7, 0.3]), classes=["down", "up"],
        )  # fmt: skip
        client.log_predictions(
            "cls", {"x": 0.5, "kind": "a"}, ids="two", predictions="up",
            probabilities={"down": 0.2, "up": 0.8},
        )  # fmt: skip
        columns = frame.assign(
            **{"probabilities.down": proba[:, 0], "probabilities.up": proba[:, 1]}
        )
        client.log_predictions("cls", columns, ids=["c0", "c1"], predictions=["down", "up"])
        records = [
            {"x": 0.1, "kind": "a", "probabilities": {"down": 0.7, "up": 0.3}},
            {"x": 0.9, "kind": "b", "probabilities": {"down": 0.2, "up": 0.8}},
        ]
        client.log_predictions("cls", records, ids=["r0", "r1"], predictions=["down", "up"])
        # a call without scores goes in a batch of its own, not refused with the others
        client.log_predictions("cls", frame, ids=["n0", "n1"], predictions=["down", "up"])
        assert await asyncio.to_thread(client.flush, 30)
        stats = client.stats()
        assert stats["rejected_rows"] == 0, stats["last_error"]
        assert await stored(warden, "cls") == 2 + 4 * 2 + 2 + 2 * 2 + 2
        found = await warden.ingest.scored_predictions("cls", now - 900, now + 3600)
        assert found.unscored == 2 and found.classes == ("down", "up")
        expected = np.vstack([proba] * 4 + [proba] + [proba] * 2)
        np.testing.assert_allclose(found.scores, expected)
        # What cannot be sent is refused in the call.
        with pytest.raises(ValueError, match="classes="):
            client.log_predictions("cls", frame, predictions=["down", "up"], probabilities=proba)
        with pytest.raises(ValueError, match="3 values of 'probability' for 2 rows"):
            client.log_predictions(
                "cls", frame, predictions=["down", "up"], probabilities=[0.1] * 3
            )
        with pytest.raises(ValueError, match="2 columns for 3 classes"):
            client.log_predictions(
                "cls",
                frame,
                predictions=["down", "up"],
                probabilities=proba,
                classes=["a", "b", "c"],
            )
        # A bad score is the daemon's 400, counted as rejected.
        client.log_predictions("cls", frame, ids=["x0", "x1"], predictions=["down", "up"],
                               probabilities=[0.5, 1.5])  # fmt: skip
        assert await asyncio.to_thread(client.flush, 30)
        assert client.stats()["rejected_rows"] == 2
        assert "record 1 (id 'x1'), column 'probability'" in client.stats()["last_error"]
    finally:
        await asyncio.to_thread(client.close)


async def test_numpy_arrays_take_feature_names(make_warden, make_client, tmp_path):
    warden = await make_warden(
        '[[models]]\nname = "n"\nfeatures = ["a", "b"]\n', **{"monitoring.bucket_seconds": 60}
    )
    await ready(warden, "n")
    url = str((await make_client(warden)).make_url("")).rstrip("/")
    client = Client(url, feature_names=["a", "b"], max_age_seconds=0.05)
    try:
        client.log_predictions("n", np.ones((3, 2)), predictions=np.zeros(3))
        client.log_predictions("n", np.ones(2), predictions=[1.0])  # one row
        assert await asyncio.to_thread(client.flush, 30)
        assert await stored(warden, "n") == 4
        with pytest.raises(ValueError, match="3 columns"):
            client.log_predictions("n", np.ones((1, 3)), predictions=[1.0])
    finally:
        await asyncio.to_thread(client.close)


async def test_a_refused_batch_is_counted_not_retried(served):
    warden, url = served
    client = Client(url, max_age_seconds=0.05)
    try:
        client.log_predictions("m", {"x": 1.0, "y": 1.0}, ids="a", predictions=1.0)  # no kind
        assert await asyncio.to_thread(client.flush, 30)
        stats = client.stats()
        assert stats["rejected_rows"] == 1 and stats["retries"] == 0
        assert "missing feature" in stats["last_error"]
        assert await stored(warden) == 0
    finally:
        await asyncio.to_thread(client.close)


async def test_retries_keep_the_batch_id_and_count_once(make_warden, make_client, reference):
    """The first answer is lost after the commit, the second is a 503: one batch stored."""
    warden = await make_warden(config(reference))
    await ready(warden)
    seen: list[str] = []

    async def flaky(request: web.Request) -> web.Response:
        batch_id = request.headers["Mlwarden-Batch-Id"]
        seen.append(batch_id)
        if len(seen) == 2:
            return web.json_response({"error": "busy"}, status=503)
        from mlwarden.daemon.ingest.arrow import TableBody

        body = TableBody(await request.read())
        result = await warden.ingest.record_predictions("m", body, batch_id=batch_id)
        if len(seen) == 1:
            return web.json_response({"error": "lost"}, status=502)  # committed, answer lost
        return web.json_response(result, status=201)

    route = Route("POST", "/flaky/api/models/{name}/predictions", flaky, "operator", "test")
    http = await make_client(warden, extra_routes=[route])
    client = Client(str(http.make_url("/flaky")), max_age_seconds=0.05, max_retry_delay=0.1)
    try:
        client.log_predictions("m", [FEATURES] * 3, ids=["a", "b", "c"], predictions=[1, 2, 3])
        assert await asyncio.to_thread(client.flush, 30)
        assert len(seen) == 3 and len(set(seen)) == 1
        assert client.stats()["retries"] == 2
        assert client.stats()["sent_rows"] == 3
        assert await stored(warden) == 3
        profile = await warden.ingest.window("m", time.time() - 3600, time.time() + 3600)
        assert profile.rows == 3
    finally:
        await asyncio.to_thread(client.close)


def test_a_full_buffer_drops_or_blocks_and_counts():
    # Nothing listens on this port: every send fails, so nothing leaves the buffer.
    drop = Client("http://127.0.0.1:9", max_buffer_rows=10, batch_rows=5, on_full="drop")
    block = Client("http://127.0.0.1:9", max_buffer_rows=10, batch_rows=5, block_timeout=0.05)
    try:
        for client in (drop, block):
            accepted = [client.log_predictions("m", FEATURES, predictions=1.0) for _ in range(15)]
            assert accepted == [True] * 10 + [False] * 5
            stats = client.stats()
            assert stats["dropped_rows"] == 5 and stats["buffered_rows"] == 10
    finally:
        for client in (drop, block):
            assert client.close(timeout=0.2) is False
            assert client.stats()["unsent_rows"] == 10


def test_a_closed_client_refuses_calls():
    client = Client("http://127.0.0.1:9")
    client.close(0.1)
    with pytest.raises(RuntimeError, match="closed"):
        client.log_predictions("m", FEATURES)
    with pytest.raises(ValueError, match="on_full"):
        Client("http://127.0.0.1:9", on_full="later")  # type: ignore[arg-type]


async def test_async_client(served):
    warden, url = served
    async with AsyncClient(url, max_age_seconds=0.05) as client:
        for i in range(5):
            assert await client.log_predictions("m", FEATURES, ids=f"a{i}", predictions=i)
        await client.log_predictions(
            "cls", {"x": 0.5, "kind": "a"}, ids="s", predictions="1", probabilities=0.75
        )
        await client.log_labels("m", ["a0", "a1"], [0.0, 1.0])
        assert await client.flush(30)
    assert await stored(warden) == 5
    assert len((await warden.ingest.outcomes("m")).id) == 2
    found = await warden.ingest.scored_predictions("cls", time.time() - 60, time.time() + 60)
    assert found.scores.tolist() == [[0.75]]


async def test_predictions_and_labels_mixing_numbers_and_strings_arrive(served):
    """One buffer, class 1 (an int) from some calls and "up" from others: sent as one
    batch of strings, which the daemon reads as it reads any class (str(value))."""
    warden, url = served
    client = Client(url, max_age_seconds=60, batch_rows=1000)  # one batch per model
    frame = pd.DataFrame({"x": [0.1, 0.9], "kind": ["a", "b"]})
    try:
        client.log_predictions("cls", frame, ids=["i0", "i1"], predictions=[0, 1])
        client.log_predictions("cls", frame, ids=["s0", "s1"], predictions=["down", "up"])
        client.log_predictions("cls", {"x": 0.5, "kind": "a"}, ids="one", predictions=1)
        rows = [
            {"x": 0.2, "kind": "a", "prediction": 1},
            {"x": 0.3, "kind": "b", "prediction": "up"},
        ]
        client.log_predictions("cls", rows, ids=["r0", "r1"])  # mixed within one call too
        assert await asyncio.to_thread(client.flush, 30)
        assert await stored(warden, "cls") == 7
        client.log_labels("cls", ["i0", "i1", "s0"], [0, 1, "down"])
        assert await asyncio.to_thread(client.flush, 30)
        stats = client.stats()
        assert stats["sent_rows"] == 10 and stats["rejected_rows"] == 0, stats
        outcomes = await warden.ingest.outcomes("cls")
        by_id = dict(
            zip(
                outcomes.id.tolist(),
                zip(outcomes.prediction.tolist(), outcomes.label.tolist(), strict=True),
                strict=True,
            )
        )
        assert by_id == {"i0": ("0", "0"), "i1": ("1", "1"), "s0": ("down", "down")}
    finally:
        await asyncio.to_thread(client.close)


async def test_monitor_wraps_a_callable_and_a_model(served):
    warden, url = served
    client = Client(url, max_age_seconds=0.05)

    class Model:  # what an MLflow pyfunc model offers: predict(DataFrame)
        threshold = 0.5

        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            return (frame["x"] > self.threshold).astype(int).to_numpy()

    try:
        model = monitor(Model(), client, "cls")
        frame = pd.DataFrame({"x": [0.1, 0.9], "kind": ["a", "b"]})
        assert model.predict(frame, ids=["p0", "p1"]).tolist() == [0, 1]
        assert model.threshold == 0.5  # the model's own attributes
        fn = monitor(lambda frame: np.full(len(frame), 2.0), client, "m")
        fn(pd.DataFrame({"x": [1.0], "y": [1.0], "kind": ["a"]}))
        assert await asyncio.to_thread(client.flush, 30)
        assert await stored(warden, "cls") == 2 and await stored(warden, "m") == 1
        outcomes_cls = await warden.ingest.count_predictions("cls")
        assert outcomes_cls == 2

        class Classifier(Model):  # a scikit-learn classifier: predict_proba and classes_
            classes_ = np.array([0, 1])

            def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
                p = frame["x"].to_numpy()
                return np.column_stack([1 - p, p])

        scored = monitor(Classifier(), client, "cls", scores=True)
        scored.predict(frame, ids=["q0", "q1"])
        assert await asyncio.to_thread(client.flush, 30)
        found = await warden.ingest.scored_predictions("cls", time.time() - 60, time.time() + 60)
        assert found.classes == ("0", "1")
        np.testing.assert_allclose(found.scores, [[0.9, 0.1], [0.1, 0.9]])
        with pytest.raises(TypeError, match="predict_proba"):
            monitor(Model(), client, "cls", scores=True)
    finally:
        await asyncio.to_thread(client.close)


class _Doubler:  # an MLflow pyfunc PythonModel (defined at module level: cloudpickled)
    def predict(self, context, model_input, params=None):
        return (model_input["x"] * 2.0 + model_input["y"]).to_numpy()


async def test_monitor_wraps_a_real_mlflow_pyfunc_model(served, tmp_path):
    """A pyfunc model logged into a temporary MLflow store, loaded back and wrapped:
    its predictions are the model's, and every call arrives at a real daemon."""
    import mlflow
    import mlflow.pyfunc

    warden, url = served
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("pyfunc", str((tmp_path / "artifacts").as_uri()))
        python_model = type("Doubler", (_Doubler, mlflow.pyfunc.PythonModel), {})()
        with mlflow.start_run(experiment_id=experiment):
            info = await asyncio.to_thread(
                mlflow.pyfunc.log_model, name="model", python_model=python_model
            )
        loaded = await asyncio.to_thread(mlflow.pyfunc.load_model, info.model_uri)
    finally:
        mlflow.set_tracking_uri(before)
    client = Client(url, max_age_seconds=0.05)
    try:
        model = monitor(loaded, client, "m", version="7")
        frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.5, 0.25, 0.0], "kind": ["a", "b", "a"]})
        assert model.predict(frame, ids=["f0", "f1", "f2"]).tolist() == [2.5, 4.25, 6.0]
        assert model.predict(frame.iloc[:1]).tolist() == [2.5]  # ids generated
        assert model.metadata.model_uuid == loaded.metadata.model_uuid  # the pyfunc's own
        assert await asyncio.to_thread(client.flush, 30)
        assert await stored(warden) == 4 and model.log_errors == 0
        client.log_labels("m", ["f0", "f2"], [2.0, 6.5])
        assert await asyncio.to_thread(client.flush, 30)
        outcomes = await warden.ingest.outcomes("m")
        got = sorted(zip(outcomes.id.tolist(), outcomes.prediction.tolist(), strict=True))
        assert got == [("f0", 2.5), ("f2", 6.0)]
    finally:
        await asyncio.to_thread(client.close)


def test_a_daemon_killed_mid_stream_loses_nothing_the_buffer_accepted(daemon_factory, tmp_path):
    """kill -9 and restart while a sender logs: every accepted row is stored once."""
    import sqlite3
    import threading

    from ..helpers import http

    daemon = daemon_factory('[[models]]\nname = "s"\nfeatures = ["a", "b"]\n')
    daemon.start()
    client = Client(daemon.url, batch_rows=200, max_age_seconds=0.05, max_retry_delay=0.2)
    accepted = 0
    stop = threading.Event()

    def stream() -> None:
        nonlocal accepted
        i = 0
        while not stop.is_set():
            rows = [{"a": float(i + k), "b": 1.0} for k in range(10)]
            ids = [f"s{i + k}" for k in range(10)]
            if client.log_predictions("s", rows, ids=ids, predictions=[1.0] * 10):
                accepted += 10
            i += 10
            time.sleep(0.002)

    sender = threading.Thread(target=stream)
    sender.start()
    try:
        time.sleep(1.5)
        daemon.kill()  # in the middle of the stream: batches in flight, answers lost
        time.sleep(1.0)
        daemon.start()
        time.sleep(1.5)
    finally:
        stop.set()
        sender.join()
    assert client.close(timeout=60), client.stats()
    stats = client.stats()
    assert stats["dropped_rows"] == 0 and stats["rejected_rows"] == 0, stats
    assert stats["retries"] > 0, stats  # the kill was noticed
    assert stats["sent_rows"] == accepted > 0
    status, _ = http("GET", daemon.url + "/healthz")
    assert status == 200
    daemon.stop()
    db = sqlite3.connect(daemon.base_path / "mlwarden.db")
    (rows,) = db.execute("SELECT SUM(rows) FROM prediction_batches WHERE model = 's'").fetchone()
    (ids,) = db.execute("SELECT COUNT(*) FROM prediction_ids WHERE model = 's'").fetchone()
    db.close()
    assert rows == ids == accepted


async def test_the_example_serving_app(served):
    """examples/serving_app.py serves predictions and labels that reach the daemon."""
    import importlib.util
    from pathlib import Path

    from aiohttp.test_utils import TestClient, TestServer

    warden, url = served
    path = Path(__file__).parents[2] / "examples" / "serving_app.py"
    spec = importlib.util.spec_from_file_location("serving_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    client = Client(url, max_age_seconds=0.05)
    app = module.make_app(module.load_model(None), client, "m")
    async with TestClient(TestServer(app)) as http:
        for i in range(3):
            features = {"x": float(i), "y": 1.0, "kind": "a"}
            resp = await http.post("/predict", json={"id": f"e{i}", "features": features})
            assert resp.status == 200
            assert (await resp.json())["prediction"] == i + 1.0
        resp = await http.post("/label", json={"id": "e1", "label": 2.0})
        assert resp.status == 200
        assert await asyncio.to_thread(client.flush, 30)
    assert await stored(warden) == 3
    assert (await warden.ingest.outcomes("m")).id.tolist() == ["e1"]
