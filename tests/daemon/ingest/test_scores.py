"""A classifier's scores on the wire: parse_scores, the one place that validates them."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.daemon.ingest.scores import Scores, parse_scores
from mlwarden.daemon.ingest.validate import BatchRejected

IDS = ["a", "b", "c"]


def test_binary_probability_from_records_and_columns():
    scores = parse_scores([0.1, 1, 0.0], None, IDS, "classification")
    assert scores.binary and scores.values.shape == (3, 1)
    again = parse_scores(np.array([0.1, 1.0, 0.0]), None, IDS, "classification", columnar=True)
    assert np.array_equal(scores.values, again.values)
    assert Scores.from_json(scores.to_json()).values.tolist() == scores.values.tolist()


def test_multiclass_records_and_columns_agree():
    rows = [{"x": 0.2, "y": 0.8}, {"x": 0.5, "y": 0.5}, {"x": 1, "y": 0}]
    scores = parse_scores(None, rows, IDS, "classification")
    columns = parse_scores(None, {"x": [0.2, 0.5, 1], "y": [0.8, 0.5, 0]}, IDS, "classification")
    assert scores.classes == columns.classes == ("x", "y")
    assert np.array_equal(scores.values, columns.values)
    back = Scores.from_json(scores.to_json())
    assert back.classes == ("x", "y") and np.array_equal(back.values, scores.values)


@pytest.mark.parametrize(
    ("probability", "probabilities", "task", "message"),
    [
        ([0.1, -0.1, 0.2], None, "classification", r"record 1 \(id 'b'\).*\[0, 1\], got -0.1"),
        ([0.1, None, 0.2], None, "classification", r"record 1 .*'probability': missing"),
        ([0.1, True, 0.2], None, "classification", r"record 1 .*expected a number"),
        ([0.1, 0.2], None, "classification", "expected an array of 3"),
        ([0.1, 0.2, 0.3], None, "regression", "only a classification model"),
        ([0.1, 0.2, 0.3], [{}] * 3, "classification", "not both"),
        (None, [{"x": 0.5, "y": 0.5}, {"x": 0.5}, {"x": 1, "y": 0}], "classification",
         r"record 1 .*the classes of the batch's first record"),
        (None, [{"x": 0.5, "y": 0.5}, {"x": 0.5, "y": "0.5"}, {"x": 1, "y": 0}],
         "classification", r"record 1 .*'probabilities.y'"),
        (None, [{"x": 0.5, "y": 0.5}, {"x": 0.6, "y": 0.5}, {"x": 1, "y": 0}],
         "classification", r"record 1 .*sum to 1 \(within 1e-06\), got 1.1"),
        (None, {"x": [0.5, 0.5, 1.0], "y": [0.5, 0.5]}, "classification",
         "columns.probabilities.y"),
        (None, [{"x": 1.0}] * 3, "classification", "at least 2 classes"),
    ],
)  # fmt: skip
def test_bad_scores_are_refused_naming_record_and_field(probability, probabilities, task, message):
    with pytest.raises(BatchRejected, match=message):
        parse_scores(probability, probabilities, IDS, task)


def test_a_sum_within_the_tolerance_is_accepted():
    parse_scores(None, [{"x": 0.3, "y": 0.7 + 5e-7}] * 3, IDS, "classification")
    with pytest.raises(BatchRejected):
        parse_scores(None, [{"x": 0.3, "y": 0.7 + 5e-6}] * 3, IDS, "classification")
