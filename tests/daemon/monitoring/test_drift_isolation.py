"""A drift method that fails (a bug, not the data) is isolated from the others.

tests/fake_plugins/broken_drift.py provides ``broken``, which raises ZeroDivisionError
when it fits or RuntimeError when it scores. The check still answers with every other
method's result, the failing method's entries carry an ``error`` naming it, and the
failure is counted in ``mlwarden_plugin_errors_total`` and logged.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from .test_drift import FEATURES, frame, send

BROKEN = "tests.fake_plugins.broken_drift"
CHECKED = (*FEATURES, "kind", "prediction")  # every column a method checks one by one


def config(reference, fail_in: str, interval: float = 3600) -> str:
    return (
        f'[daemon]\nplugins = ["{BROKEN}"]\n'
        f"[monitoring]\nbucket_seconds = 60\ninterval_seconds = {interval}\n"
        "min_window_rows = 200\ndrift_threshold = 0.2\n"
        f'[[models]]\nname = "m"\nreference = "{reference}"\n'
        'drift_methods = ["ks", "psi", "chi2", "broken"]\n'
        "[models.drift_options.ks]\nthreshold = 0.001\n"
        "[models.drift_options.chi2]\nthreshold = 0.001\n"
        f'[models.drift_options.broken]\nfail_in = "{fail_in}"\n'
    )


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "reference.csv"
    frame(20000, seed=1).to_csv(path, index=False)
    return path


def errors(warden, stage: str) -> float:
    labels = {"plugin": "broken", "hook": f"drift_method.{stage}"}
    return warden.metrics.registry.get_sample_value("mlwarden_plugin_errors_total", labels) or 0


def assert_isolated(report: dict, message: str) -> None:
    """The other methods decided (x2 and kind drifted), broken's entries say why not."""
    assert report["status"] == "ok"
    assert report["drifted_features"] == ["kind", "x2"]
    assert report["drift_detected"] is True
    for name in FEATURES:
        entry = report["feature_drifts"][name]
        assert set(entry["methods"]) == {"ks", "psi"}, name
        assert entry["error"] == message.format(name=name)
    assert set(report["feature_drifts"]["kind"]["methods"]) == {"chi2"}
    assert report["feature_drifts"]["kind"]["error"] == message.format(name="kind")
    assert report["prediction_drift"]["error"] == message.format(name="prediction")
    multivariate = report["multivariate_drift"]
    assert multivariate["methods"] == {} and multivariate["drifted"] is False
    assert multivariate["error"].startswith(message.format(name="")[:20])


SCORE_ERROR = "broken failed to score: RuntimeError: broken cannot score {name}"
FIT_ERROR = "broken failed to fit: ZeroDivisionError: broken cannot fit {name}"


async def test_a_method_failing_to_score_is_isolated_counted_and_logged(
    make_warden, make_client, reference, caplog
):
    warden = await make_warden(config(reference, "score"))
    await warden.ingest.model_state("m").ready.wait()
    client = await make_client(warden)
    await send(warden, frame(3000, seed=3, shift=1.0, kinds=(0.2, 0.3, 0.5)), "s")
    with caplog.at_level(logging.ERROR, logger="mlwarden.daemon.monitoring.report"):
        resp = await client.post("/api/models/m/drift-check")
        assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert_isolated(report, SCORE_ERROR)
    # Once per column, and once for the multivariate rows; fitting went well.
    assert errors(warden, "score") == len(CHECKED) + 1
    assert errors(warden, "fit") == 0
    logged = [r for r in caplog.records if "drift method broken failed to score" in r.message]
    assert len(logged) == len(CHECKED) + 1
    assert logged[0].exc_info is not None and "of model m" in logged[0].message
    assert warden.last_errors[-1]["where"] == "drift method broken (m)"
    # Counted again at every check: it fails every time.
    assert (await client.post("/api/models/m/drift-check")).status == 200
    assert errors(warden, "score") == 2 * (len(CHECKED) + 1)


async def test_a_method_failing_to_fit_is_isolated_and_counted_once(
    make_warden, make_client, reference
):
    warden = await make_warden(config(reference, "fit"))
    await warden.ingest.model_state("m").ready.wait()
    client = await make_client(warden)
    await send(warden, frame(3000, seed=3, shift=1.0, kinds=(0.2, 0.3, 0.5)), "f")
    for _ in range(2):
        resp = await client.post("/api/models/m/drift-check")
        assert resp.status == 200, await resp.text()
        assert_isolated(await resp.json(), FIT_ERROR)
    # Fitted once (the fit is kept), so counted once per column, for the multivariate
    # rows and for the label (target drift); never scored.
    assert errors(warden, "fit") == len(CHECKED) + 2
    assert errors(warden, "score") == 0
    # The DataFrame path (Warden.monitor_model_drift) says the same.
    report = await warden.monitor_model_drift(
        "m", frame(3000, seed=4, shift=1.0, kinds=(0.2, 0.3, 0.5))
    )
    assert_isolated(report, FIT_ERROR)


@pytest.mark.parametrize("fail_in", ["fit", "score"])
async def test_the_periodic_check_goes_on_with_the_other_methods(make_warden, reference, fail_in):
    warden = await make_warden(config(reference, fail_in, interval=0.2))
    await warden.ingest.model_state("m").ready.wait()
    await send(warden, frame(3000, seed=3, shift=1.0, kinds=(0.2, 0.3, 0.5)), "p")
    # A check may run before the batch is in (the interval is 0.2 s): it stores
    # insufficient_data, and the checks after it see the batch.
    for _ in range(300):
        history = await warden.get_drift_history("m", days=1)
        checked = [r for r in history if r["status"] != "insufficient_data"]
        if len(checked) >= 2:
            break
        await asyncio.sleep(0.1)
    assert len(checked) >= 2, history
    for report in checked:
        assert report["source"] == "window"
        assert_isolated(report, FIT_ERROR if fail_in == "fit" else SCORE_ERROR)
    assert not any(e["where"] == "drift check m" for e in warden.last_errors)
    assert errors(warden, fail_in) >= len(CHECKED) + 1
