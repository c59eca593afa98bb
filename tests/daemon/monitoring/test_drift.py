"""The monitor: drift reports on known shifts, the rule, quality, history, metrics, events."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlwarden import hookimpl
from mlwarden.daemon.monitoring.report import recommend
from mlwarden.errors import Conflict, InvalidInput
from mlwarden.types import DriftScore

from .test_report import INSUFFICIENT_KEYS, TOP_KEYS, ordered

FEATURES = ("x1", "x2", "x3", "x4")


def frame(n: int, seed: int, shift: float = 0.0, kinds=(0.5, 0.3, 0.2), label_shift=0.0):
    rng = np.random.default_rng(seed)
    data = {name: rng.normal(size=n) for name in FEATURES}
    data["x2"] = data["x2"] + shift
    data["kind"] = rng.choice(["a", "b", "c"], n, p=list(kinds))
    data["prediction"] = rng.normal(size=n)
    data["label"] = rng.normal(size=n) + label_shift
    return pd.DataFrame(data)


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "reference.csv"
    frame(20000, seed=1).to_csv(path, index=False)
    return path


def config(reference) -> str:
    return (
        "[monitoring]\nbucket_seconds = 60\ninterval_seconds = 3600\nmin_window_rows = 200\n"
        "drift_threshold = 0.2\n"
        f'[[models]]\nname = "m"\nreference = "{reference}"\n'
        'drift_methods = ["ks", "psi", "chi2"]\n'
        "[models.drift_options.ks]\nthreshold = 0.001\n"
        "[models.drift_options.chi2]\nthreshold = 0.001\n"
        '[[models]]\nname = "bare"\nfeatures = ["x1"]\n'
    )


async def send(warden, data: pd.DataFrame, prefix: str) -> None:
    ingest = warden.ingest
    columns = {
        "id": [f"{prefix}{i}" for i in range(len(data))],
        "features": {name: data[name].tolist() for name in (*FEATURES, "kind")},
        "prediction": data["prediction"].tolist(),
    }
    await ingest.record_predictions("m", {"columns": columns})


class EventLog:
    def __init__(self):
        self.events = []

    @hookimpl
    def mlwarden_event(self, event):
        self.events.append(event)


@pytest.fixture
async def watched(make_warden, reference):
    warden = await make_warden(config(reference))
    await warden.ingest.model_state("m").ready.wait()
    log = EventLog()
    warden.pm.register(log, name="test-event-log")
    return warden, log


def sample(warden, name, labels):
    return warden.metrics.registry.get_sample_value(name, labels)


async def test_known_shift_is_found_and_only_it(watched):
    warden, log = watched
    await send(warden, frame(3000, seed=2), "ok")
    report = await warden.check_drift("m")
    assert report["status"] == "ok"
    assert report["drifted_features"] == []
    assert report["recommendation"] == "NO_ACTION_NEEDED"
    assert set(report["feature_drifts"]) == {*FEATURES, "kind"}
    assert report["rows"] == {"current": 3000, "reference": 20000}
    assert report["prediction_drift"]["drifted"] is False
    assert log.events == []

    await send(warden, frame(6000, seed=3, shift=1.0, kinds=(0.2, 0.3, 0.5)), "shifted")
    report = await warden.check_drift("m")
    assert report["drifted_features"] == ["kind", "x2"]
    assert report["drift_score"] == pytest.approx(2 / 5)
    assert report["drift_detected"] is True
    assert report["recommendation"] == "RETRAIN_IMMEDIATELY"  # 0.4 >= 2 x 0.2
    x2 = report["feature_drifts"]["x2"]
    assert set(x2["methods"]) == {"ks", "psi"} and x2["kind"] == "numeric"
    assert set(report["feature_drifts"]["kind"]["methods"]) == {"chi2"}
    assert report["window"]["hours"] == 24.0
    # Signals.
    assert sample(warden, "mlwarden_drift_detected", {"model": "m"}) == 1
    assert sample(warden, "mlwarden_drift_score", {"model": "m"}) == pytest.approx(0.4)
    assert sample(warden, "mlwarden_retrain_recommendation", {"model": "m"}) == 2
    ks = sample(
        warden, "mlwarden_feature_drift_score", {"model": "m", "feature": "x2", "method": "ks"}
    )
    assert ks == pytest.approx(x2["methods"]["ks"]["statistic"])
    assert sample(warden, "mlwarden_drift_check_duration_seconds_count", {"model": "m"}) == 2
    [event] = log.events
    assert event.kind == "drift_detected" and event.model == "m"
    assert event.data["drifted_features"] == ["kind", "x2"]
    assert event.data["threshold"] == 0.2 and event.data["recommendation"] == "RETRAIN_IMMEDIATELY"
    # A DataFrame like the reference resolves it, through the same code path.
    report = await warden.monitor_model_drift("m", frame(3000, seed=9))
    assert report["source"] == "dataframe" and report["drifted_features"] == []
    assert [e.kind for e in log.events] == ["drift_detected", "drift_resolved"]
    history = await warden.get_drift_history("m", days=1)
    assert [r["recommendation"] for r in history] == [
        "NO_ACTION_NEEDED",
        "RETRAIN_IMMEDIATELY",
        "NO_ACTION_NEEDED",
    ]


async def test_dataframe_and_ingest_paths_build_the_same_profile(watched):
    warden, _ = watched
    data = frame(1000, seed=4)
    await send(warden, data, "p")
    ingest = warden.ingest
    state = ingest.model_state("m")
    now = warden.clock()
    window = await ingest.ledger.window(state, now - 3600, now)
    from mlwarden.daemon.monitoring.drift import _profile_frame

    direct = _profile_frame(data, state.layout, 5000)
    np.testing.assert_array_equal(window.hist, direct.hist)
    np.testing.assert_array_equal(window.cat_counts, direct.cat_counts)
    np.testing.assert_allclose(window.mean, direct.mean, rtol=1e-12)


async def test_bad_dataframe_and_missing_reference(watched):
    warden, _ = watched
    with pytest.raises(InvalidInput, match="missing column 'x3'"):
        await warden.monitor_model_drift("m", frame(10, seed=1).drop(columns=["x3"]))
    with pytest.raises(InvalidInput, match="DataFrame"):
        await warden.monitor_model_drift("m", [1, 2, 3])
    with pytest.raises(Conflict, match="no reference"):
        await warden.check_drift("bare")


async def test_a_dataframe_without_predictions_is_checked_for_multivariate_drift(
    make_warden, reference
):
    # The prediction column, NaN when the DataFrame has none, took every sampled row
    # out of the multivariate check although that check does not read it.
    text = config(reference).replace('drift_methods = ["ks", "psi", "chi2"]\n', "")
    warden = await make_warden(text)  # the default methods: mmd on the numeric features
    await warden.ingest.model_state("m").ready.wait()
    recent = frame(1000, seed=9).drop(columns=["prediction"])
    report = await warden.monitor_model_drift("m", recent)
    multivariate = report["multivariate_drift"]
    assert multivariate["columns"] == list(FEATURES)
    assert "error" not in multivariate and set(multivariate["methods"]) == {"mmd"}
    assert multivariate["methods"]["mmd"]["details"]["rows"][1] > 0
    assert report["prediction_drift"] is None


async def test_small_window_is_insufficient_data(watched):
    warden, log = watched
    await send(warden, frame(50, seed=5, shift=3.0), "few")
    report = await warden.check_drift("m")
    assert report["status"] == "insufficient_data"
    assert "min_window_rows" in report["message"]
    assert report["recommendation"] == "NO_ACTION_NEEDED" and not report["drift_detected"]
    assert log.events == []


async def test_data_quality_section(watched):
    warden, _ = watched
    data = frame(1000, seed=6)
    data.loc[:99, "x1"] = np.nan  # 10% missing
    data.loc[:199, "x3"] = 50.0  # 20% outside the reference range
    data.loc[:79, "kind"] = "new"  # 8% unseen
    await send(warden, data, "q")
    ingest = warden.ingest
    with pytest.raises(InvalidInput):
        await ingest.record_predictions("m", {"records": []})
    report = await warden.check_drift("m")
    quality = report["data_quality"]
    issues = {(i["feature"], i["check"]): i["value"] for i in quality["issues"]}
    assert issues == {
        ("x1", "missing"): pytest.approx(0.1),
        ("x3", "out_of_range"): pytest.approx(0.2),
        ("kind", "unseen_categories"): pytest.approx(0.08),
    }
    assert quality["passed"] is False
    assert quality["schema_violations"] == {"empty_batch": 1}
    assert quality["features"]["x1"]["nan_rate"] == pytest.approx(0.1)


async def test_target_drift_from_joined_labels(watched):
    warden, _ = watched
    data = frame(1000, seed=7, label_shift=2.0)
    await send(warden, data, "t")
    labels = [{"id": f"t{i}", "label": float(v)} for i, v in enumerate(data["label"])]
    await warden.ingest.record_labels("m", {"labels": labels})
    report = await warden.check_drift("m")
    assert report["drifted_features"] == []
    assert report["target_drift"]["drifted"] is True
    assert report["target_drift"]["labels"] == 1000
    assert report["recommendation"] == "RETRAIN_SOON"


async def test_history_api(watched, make_client):
    warden, _ = watched
    client = await make_client(warden)
    await send(warden, frame(500, seed=8), "h")
    resp = await client.post("/api/models/m/drift-check")
    assert resp.status == 200
    checked = await resp.json()
    assert checked["feature_drifts"]["x1"]["methods"]["ks"]["threshold"] == 0.001
    resp = await client.get("/api/models/m/drift-history?days=1")
    body = await resp.json()
    assert [r["id"] for r in body["reports"]] == [checked["id"]]
    assert body["reports"][0]["feature_drifts"] == checked["feature_drifts"]
    for bad in ("days=-1", "days=abc"):
        resp = await client.get(f"/api/models/m/drift-history?{bad}")
        assert resp.status == 400
    assert (await client.get("/api/models/zz/drift-history")).status == 404
    assert (await client.post("/api/models/zz/drift-check")).status == 404
    assert (await client.post("/api/models/bare/drift-check")).status == 409


@pytest.mark.parametrize("rows", [50, 6000])
async def test_a_check_answers_the_typed_report_as_stored(watched, rows):
    warden, _ = watched
    await send(warden, frame(rows, seed=3, shift=1.0), "r")
    report = await warden.check_drift("m")
    assert list(report) == (INSUFFICIENT_KEYS if rows < 200 else TOP_KEYS)
    assert report["status"] == ("insufficient_data" if rows < 200 else "ok")
    assert report["drifted_features"] == ([] if rows < 200 else ["x2"])
    [stored] = await warden.get_drift_history("m", days=1)
    assert ordered(stored) == ordered(report)


class NaNStatistic:
    """A fitted method whose statistic and p-value are NaN (as a third-party one may be)."""

    def score(self, current):
        return DriftScore("nan", math.nan, 0.1, False, p_value=math.nan)


async def test_a_nan_statistic_is_null_in_the_report_and_nan_in_the_metric(watched):
    # The metrics were set from the report as JSON gives it back, where NaN is null:
    # Gauge.set(None) raised after the report was stored, and no event went out.
    warden, _ = watched
    await send(warden, frame(500, seed=2), "n")
    await warden.check_drift("m")  # fits the methods
    _, detectors = warden.monitor._detectors["m"]
    detectors.features["x1"].append(("nan", NaNStatistic()))
    report = await warden.check_drift("m")
    assert report["feature_drifts"]["x1"]["methods"]["nan"] == {
        "statistic": None,
        "p_value": None,
        "threshold": 0.1,
        "drifted": False,
    }
    labels = {"model": "m", "feature": "x1", "method": "nan"}
    assert math.isnan(sample(warden, "mlwarden_feature_drift_score", labels))
    assert math.isnan(sample(warden, "mlwarden_feature_drift_p_value", labels))
    assert sample(warden, "mlwarden_drift_check_duration_seconds_count", {"model": "m"}) == 2


@pytest.mark.parametrize(
    ("score", "other", "expected"),
    [
        (0.0, False, "NO_ACTION_NEEDED"),
        (0.09, False, "NO_ACTION_NEEDED"),
        (0.1, False, "RETRAIN_SOON"),
        (0.0, True, "RETRAIN_SOON"),
        (0.1, True, "RETRAIN_IMMEDIATELY"),
        (0.19, False, "RETRAIN_SOON"),
        (0.2, False, "RETRAIN_IMMEDIATELY"),
    ],
)
def test_recommendation_rule(score, other, expected):
    assert recommend(score, 0.1, other) == expected


async def test_monitor_loop_checks_every_interval(make_warden, reference):
    import asyncio

    text = config(reference).replace("interval_seconds = 3600", "interval_seconds = 0.2")
    # Off: fitting the estimator on the 20000 reference rows holds the loop's first round
    # for many seconds on a loaded machine (it has tests of its own).
    text = text.replace('drift_methods = ["ks"', 'estimator = "none"\ndrift_methods = ["ks"')
    warden = await make_warden(text)
    await warden.ingest.model_state("m").ready.wait()
    await send(warden, frame(300, seed=11), "loop")
    for _ in range(200):
        history = await warden.get_drift_history("m", days=1)
        if len(history) >= 2:
            break
        await asyncio.sleep(0.1)
    assert len(history) >= 2 and history[-1]["source"] == "window"
    assert history[-1]["rows"]["current"] == 300
    # "bare" has no reference: the loop skips it instead of failing.
    assert not any("bare" in e["where"] for e in warden.last_errors)


def test_report_is_made_plain_in_one_pass_as_json_gives_it_back():
    import json

    from mlwarden.daemon.monitoring.report_json import plain as _plain

    report = {
        "a": np.float64(1.5),
        "b": [np.int64(3), (1, 2.0, float("nan"))],
        "c": np.bool_(True),
        "d": {2: "two", None: 3, 2.5: np.array([1.0, np.inf])},
        "e": float("-inf"),
        "f": np.float32(0.25),
    }
    plain = _plain(report)
    assert plain == {
        "a": 1.5,
        "b": [3, [1, 2.0, None]],
        "c": True,
        "d": {"2": "two", "null": 3, "2.5": [1.0, None]},
        "e": None,
        "f": 0.25,
    }
    assert json.loads(json.dumps(plain, allow_nan=False)) == plain
    with pytest.raises(TypeError):
        _plain({"x": object()})


def test_report_text_is_what_plain_and_json_give():
    import dataclasses
    import enum
    import json

    from mlwarden.daemon.monitoring.report_json import as_json as _as_json
    from mlwarden.daemon.monitoring.report_json import plain as _plain

    class Level(enum.IntEnum):
        HIGH = 2

    grid = np.arange(12.0).reshape(3, 4)
    grid[1, 1] = np.nan
    report = {
        "a": np.float64(1.5),
        "b": [np.int64(3), (1, 2.0, float("nan"))],
        "c": np.bool_(True),
        "d": {"x": np.array([1.0, np.inf]), "y": grid[:, ::2], "z": np.float32(0.1)},
        "e": float("-inf"),
        "f": Level.HIGH,
        "g": 2**63 - 1,
    }
    plain, text = _as_json(report)
    assert plain == _plain(report) and json.loads(text) == plain
    assert plain["d"]["z"] == float(np.float32(0.1)) != 0.1  # widened, not re-rounded
    odd = {**report, "k": {2: "two", None: 3, 2.5: 1.0}, "big": 2**70}  # orjson refuses these
    plain, text = _as_json(odd)
    assert plain == _plain(odd) and text == json.dumps(plain, allow_nan=False)

    @dataclasses.dataclass
    class Opaque:
        x: int

    for bad in (object(), Opaque(1)):
        with pytest.raises(TypeError):
            _as_json({"x": bad})
