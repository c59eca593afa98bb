"""A classifier's scores go through the label join: outcomes keep them (realized ROC AUC)."""

from __future__ import annotations

import io
import time

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sklearn.metrics import roc_auc_score

from mlwarden.daemon.ingest import predictions, tables
from mlwarden.daemon.ingest.arrow import TableBody
from mlwarden.daemon.ingest.tables import INGEST_SCHEMA
from mlwarden.daemon.monitoring.estimation_data import realized_from_outcomes
from mlwarden.daemon.warden import Warden
from mlwarden.types import Outcomes

pytestmark = pytest.mark.both_backends

NOW = time.time()

CONFIG = (
    '[[models]]\nname = "bin"\ntask = "classification"\nfeatures = ["x"]\n'
    '[[models]]\nname = "multi"\ntask = "classification"\nfeatures = ["x"]\n'
)


def arrow(columns: dict) -> TableBody:
    sink = io.BytesIO()
    table = pa.table(columns)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return TableBody(sink.getvalue())


async def started(make_config, **overrides) -> Warden:
    warden = Warden(make_config(CONFIG, **overrides), clock=lambda: NOW)
    await warden.start()
    for name in ("bin", "multi"):
        await warden.ingest.model_state(name).ready.wait()
    return warden


async def test_outcomes_keep_the_scores_of_json_and_arrow_predictions(make_config):
    warden = await started(make_config)
    try:
        ingest = warden.ingest
        await ingest.record_predictions(
            "bin",
            {"records": [
                {"id": "a", "features": {"x": 0.1}, "prediction": "1", "probability": 0.8},
                {"id": "b", "features": {"x": 0.2}, "prediction": "0", "probability": 0.3},
            ]},
        )  # fmt: skip
        await ingest.record_predictions(
            "bin", {"records": [{"id": "c", "features": {"x": 0.3}, "prediction": "0"}]}
        )
        await ingest.record_predictions(
            "multi",
            {"columns": {"id": ["m1", "m2"], "features": {"x": [0.0, 1.0]},
                         "prediction": ["up", "down"],
                         "probabilities": {"down": [0.1, 0.7], "up": [0.9, 0.3]}}},
        )  # fmt: skip
        await ingest.record_predictions(
            "multi",
            arrow({"id": ["m3"], "x": [2.0], "prediction": ["up"],
                   "probabilities.down": [0.25], "probabilities.up": [0.75]}),
        )  # fmt: skip
        labels = [{"id": i, "label": y} for i, y in (("a", "1"), ("b", "1"), ("c", "0"))]
        assert (await ingest.record_labels("bin", {"labels": labels}))["matched"] == 3
        labels = [{"id": i, "label": "up"} for i in ("m1", "m2", "m3")]
        assert (await ingest.record_labels("multi", {"labels": labels}))["matched"] == 3

        out = await ingest.outcomes("bin")
        assert dict(zip(out.id, out.scores, strict=True)) == {"a": 0.8, "b": 0.3, "c": None}
        out = await ingest.outcomes("multi")
        assert dict(zip(out.id, out.scores, strict=True)) == {
            "m1": {"down": 0.1, "up": 0.9},
            "m2": {"down": 0.7, "up": 0.3},
            "m3": {"down": 0.25, "up": 0.75},
        }
        # A corrected label keeps the prediction's scores.
        await ingest.record_labels("bin", {"labels": [{"id": "a", "label": "0"}]})
        out = await ingest.outcomes("bin")
        assert out.scores[list(out.id).index("a")] == 0.8
    finally:
        await warden.stop()


async def test_a_store_before_the_scores_step_gets_the_score_columns(make_config):
    warden = await started(make_config)
    try:
        await warden.ingest.record_predictions(
            "bin",
            {"records": [{"id": "old", "features": {"x": 0.1}, "prediction": "1",
                          "probability": 0.9}]},
        )  # fmt: skip
        await warden.ingest.record_labels("bin", {"labels": [{"id": "old", "label": "1"}]})
        async with warden.store.begin() as conn:  # as the release before wrote it
            for column in ("probability", "probabilities"):
                await conn.execute(sa.text(f"ALTER TABLE outcomes DROP COLUMN {column}"))
            before = INGEST_SCHEMA.steps.index(tables._outcome_scores)  # steps done
            await conn.execute(
                sa.text("UPDATE schema_version SET version = :v WHERE component = 'ingest'"),
                {"v": before},
            )
    finally:
        await warden.stop()
    warden = await started(make_config)
    try:
        assert (await warden.store.schema_versions())["ingest"] == len(INGEST_SCHEMA.steps)
        out = await warden.ingest.outcomes("bin")
        assert list(out.id) == ["old"] and out.scores.tolist() == [None]
        await warden.ingest.record_predictions(
            "bin",
            {"records": [{"id": "new", "features": {"x": 0.1}, "prediction": "1",
                          "probability": 0.6}]},
        )  # fmt: skip
        await warden.ingest.record_labels("bin", {"labels": [{"id": "new", "label": "0"}]})
        out = await warden.ingest.outcomes("bin")
        assert dict(zip(out.id, out.scores, strict=True)) == {"old": None, "new": 0.6}
    finally:
        await warden.stop()


def outcomes(labels, predictions, scores) -> Outcomes:
    n = len(labels)
    items = np.empty(n, dtype=object)
    items[:] = scores
    return Outcomes(
        id=np.array([str(i) for i in range(n)], dtype=object),
        version=np.array(["1"] * n, dtype=object),
        ts=np.arange(n, dtype=np.float64),
        prediction=np.array(predictions, dtype=object),
        label=np.array(labels, dtype=object),
        latency=np.full(n, np.nan),
        error=np.zeros(n, dtype=bool),
        scores=items,
    )


def test_realized_roc_auc_is_sklearns_binary_and_multiclass():
    rng = np.random.default_rng(3)
    n = 400
    truth = rng.uniform(size=n)
    labels = np.where(rng.uniform(size=n) < truth, "yes", "no").tolist()
    scores = np.clip(truth + rng.normal(scale=0.2, size=n), 0, 1)
    predictions = np.where(scores >= 0.5, "yes", "no").tolist()
    realized = realized_from_outcomes(
        "classification", outcomes(labels, predictions, scores.tolist()), ("no", "yes")
    )
    assert realized["roc_auc"] == pytest.approx(roc_auc_score(np.array(labels) == "yes", scores))
    assert realized["accuracy"] == pytest.approx(np.mean(np.array(labels) == np.array(predictions)))
    # Outcomes without scores count in the confusion metrics, not in ROC AUC.
    partly = scores.tolist()[:300] + [None] * 100
    realized = realized_from_outcomes(
        "classification", outcomes(labels, predictions, partly), ("no", "yes")
    )
    assert realized["roc_auc"] == pytest.approx(
        roc_auc_score(np.array(labels[:300]) == "yes", scores[:300])
    )
    none = realized_from_outcomes(
        "classification", outcomes(labels, predictions, [None] * n), ("no", "yes")
    )
    assert "roc_auc" not in none and "accuracy" in none

    classes = ("a", "b", "c")
    matrix = rng.dirichlet([1, 1, 1], size=n)
    truth = np.array([rng.choice(3, p=row) for row in matrix])
    labels = [classes[k] for k in truth]
    predictions = [classes[k] for k in matrix.argmax(axis=1)]
    rows = [
        {c: float(row[j]) for j, c in enumerate(("c", "a", "b"))} for row in matrix[:, [2, 0, 1]]
    ]
    realized = realized_from_outcomes(
        "classification", outcomes(labels, predictions, rows), classes
    )
    assert realized["roc_auc"] == pytest.approx(
        roc_auc_score(truth, matrix, multi_class="ovr", average="macro")
    )


async def test_labels_over_many_stored_batches_join_in_bounded_reads(make_config):
    """The join reads the stored batches a few at a time (predictions._BATCHES_PER_READ)."""
    warden = await started(make_config)
    try:
        batches = 3 * predictions._BATCHES_PER_READ + 1
        for b in range(batches):
            ids = [f"b{b}-{i}" for i in range(5)]
            await warden.ingest.record_predictions(
                "bin",
                {"columns": {"id": ids, "features": {"x": [float(b)] * 5},
                             "prediction": ["1"] * 5, "probability": [b / batches] * 5}},
            )  # fmt: skip
        labels = [{"id": f"b{b}-{i}", "label": "1"} for b in range(batches) for i in range(5)]
        labels.append({"id": "nowhere", "label": "0"})
        result = await warden.ingest.record_labels("bin", {"labels": labels})
        assert (result["matched"], result["unmatched"]) == (5 * batches, 1)
        out = await warden.ingest.outcomes("bin")
        got = dict(zip(out.id, out.scores, strict=True))
        assert got == {
            f"b{b}-{i}": pytest.approx(b / batches) for b in range(batches) for i in range(5)
        }
    finally:
        await warden.stop()
