"""What the performance estimators are fitted on and run on, built from the daemon's data.

Blocking functions (the estimation service calls them in a thread):

- ``reference_data``: the model's labelled reference file as an
  :class:`~mlwarden.types.EstimationData`: the numeric features of the reference
  layout, the prediction, the labels and, for a classifier, its scores
  (``probability`` for a binary model, ``probabilities.<class>`` columns for a
  multiclass one; the names come from ``models.probability_column`` and
  ``models.probabilities_prefix``);
- ``window_data``: a window's rows: a regressor's from the window profile's bounded
  sample (numeric features and prediction), a classifier's from its stored
  predictions and their scores (ingest's ``scored_predictions``);
- ``realized_from_outcomes``: the realized metrics of a window's labelled outcomes.

A missing piece raises :class:`EstimationUnavailable`, whose message names it (the
label column, the probability columns, the scores on the wire).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...stats.estimation import classification_scores, regression_scores
from ...stats.metrics import default_positive
from ...types import EstimationData, Outcomes
from ..core.config import ModelConfig
from ..ingest.interfaces import ScoredPredictions
from ..profiles.layout import Layout
from ..profiles.probabilities import PlaceError, check_matrix, check_probability
from ..profiles.profile import Profile
from ..profiles.reference import load_frame, upload_frame

__all__ = [
    "EstimationUnavailable",
    "check_reference",
    "estimation_features",
    "realized_from_outcomes",
    "reference_data",
    "reference_source",
    "window_data",
]


class EstimationUnavailable(ValueError):
    """Estimation cannot run for a model: the message names what is missing."""


def estimation_features(layout: Layout) -> tuple[str, ...]:
    """The features an estimator sees: the numeric ones (the profile sample's columns)."""
    return tuple(n for n in layout.numeric if n != layout.prediction)


def reference_source(mc: ModelConfig, uploaded: bool) -> str:
    """How the messages name the reference in force: uploaded, or ``models.reference``."""
    return "the uploaded reference" if uploaded else f"the reference {mc.reference!r}"


def check_reference(mc: ModelConfig, source: str, has_labels: bool, has_predictions: bool) -> None:
    """EstimationUnavailable when the reference lacks labels or predictions.

    Asked first of the reference profile the daemon holds (its target and its layout's
    prediction), so that a reference without them is not read again from its file
    (tens of MB for a wide reference, at every model's first check), then of the file.
    """
    where = f"model {mc.name!r}: performance estimation"
    if not has_labels:
        raise EstimationUnavailable(
            f"{where} needs labels: {source} has no label column {mc.label_column!r} "
            "(models.label_column)"
        )
    if not has_predictions:
        raise EstimationUnavailable(
            f"{where} needs the model's predictions: {source} has no column "
            f"{mc.prediction_column!r} (models.prediction_column)"
        )


def reference_data(
    mc: ModelConfig,
    layout: Layout,
    tracking_uri: str,
    upload: tuple[bytes, str] | None = None,
) -> EstimationData:
    """The labelled reference of ``mc`` for fitting an estimator (blocking).

    ``upload``: the body and media type of the uploaded reference in force, read
    instead of ``models.reference``.
    """
    where = f"model {mc.name!r}: performance estimation"
    if upload is not None:
        frame = upload_frame(*upload)
    elif not mc.reference:
        raise EstimationUnavailable(f"{where} needs a reference (models.reference)")
    else:
        frame = load_frame(mc.reference, tracking_uri)
    source = reference_source(mc, upload is not None)
    columns = frame.columns
    check_reference(mc, source, mc.label_column in columns, mc.prediction_column in columns)
    labelled = frame[mc.label_column].notna().to_numpy()
    rows = np.flatnonzero(labelled)  # each kept row's place in the file, for the messages
    frame = frame[labelled]
    names = estimation_features(layout)
    features = np.column_stack(
        [frame[n].to_numpy(dtype=np.float64, na_value=np.nan) for n in names]
    ) if names else np.zeros((len(frame), 0))  # fmt: skip
    if mc.task == "regression":
        return EstimationData(
            "regression",
            features,
            names,
            prediction=frame[mc.prediction_column].to_numpy(dtype=np.float64, na_value=np.nan),
            labels=frame[mc.label_column].to_numpy(dtype=np.float64, na_value=np.nan),
        )
    labels = frame[mc.label_column].astype(str).to_numpy(dtype=object)
    prediction = frame[mc.prediction_column].astype(str).to_numpy(dtype=object)
    prefix = mc.probabilities_prefix
    multi = [c for c in frame.columns if isinstance(c, str) and c.startswith(prefix)]
    if multi:
        classes = tuple(c[len(prefix) :] for c in multi)
        scores = np.column_stack([_scores_column(frame, c, mc) for c in multi])
        check_matrix(scores, classes, rows, _reference_error(mc, source), f"{prefix}*", prefix)
    elif mc.probability_column in frame.columns:
        classes = binary_classes(mc, set(labels.tolist()) | set(prediction.tolist()))
        positive = _scores_column(frame, mc.probability_column, mc)
        check_probability(positive, rows, mc.probability_column, _reference_error(mc, source))
        scores = np.c_[1.0 - positive, positive]
    else:
        raise EstimationUnavailable(
            f"{where} needs the classifier's probabilities: {source} has neither a "
            f"{mc.probability_column!r} column (binary) nor {prefix}<class> columns "
            "(multiclass) (models.probability_column, models.probabilities_prefix)"
        )
    return EstimationData(
        "classification",
        features,
        names,
        prediction=prediction,
        probabilities=scores,
        classes=classes,
        labels=labels,
    )


def _scores_column(frame: Any, name: str, mc: ModelConfig) -> np.ndarray:
    """A score column of the reference as float64; EstimationUnavailable if not numbers."""
    import pandas as pd

    column = frame[name]
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise EstimationUnavailable(
            f"model {mc.name!r}: the reference's column {name!r}: expected probabilities "
            f"(numbers in [0, 1]), got {column.dtype}"
        )
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _reference_error(mc: ModelConfig, source: str) -> PlaceError:
    """The error naming a bad score of the reference: its row in the file and its column."""

    def error(reason: str, rows: Any, i: int, column: str, expected: str) -> Exception:
        return EstimationUnavailable(
            f"model {mc.name!r}: {source}, row {int(rows[i])} "
            f"(0-based, first data row 0), column {column!r}: {expected}"
        )

    return error


def binary_classes(mc: ModelConfig, seen: set[str]) -> tuple[str, str]:
    """(negative, positive) class of a binary classifier from the classes ``seen``."""
    positive = default_positive(seen, mc.positive_label)
    others = sorted(seen - {positive}) if positive is not None else []
    if positive is None or len(others) != 1:
        raise EstimationUnavailable(
            f"model {mc.name!r}: a {mc.probability_column!r} column needs a binary label "
            f"with a positive class (models.positive_label); classes seen: {sorted(seen)}"
        )
    return others[0], positive


def window_data(
    mc: ModelConfig,
    reference: EstimationData,
    layout: Layout,
    profile: Profile | None,
    scored: ScoredPredictions | None,
) -> EstimationData:
    """The window's rows for ``estimate`` (blocking); see the module docstring."""
    names = reference.feature_names
    if mc.task == "regression":
        assert profile is not None
        sample = np.asarray(profile.sample, dtype=np.float64)
        index = {n: j for j, n in enumerate(layout.numeric)}
        features = sample[:, [index[n] for n in names]] if names else sample[:, :0]
        prediction = sample[:, index[layout.prediction]]
        keep = np.isfinite(prediction)
        return EstimationData("regression", features[keep], names, prediction=prediction[keep])
    assert scored is not None
    where = f"model {mc.name!r}: performance estimation"
    if scored.scores is None:
        raise EstimationUnavailable(
            f"{where} needs the classifier's probabilities: the window's "
            f"{scored.unscored} prediction(s) carry no 'probability' (binary) or "
            "'probabilities' (multiclass) field"
        )
    classes = reference.classes
    if not scored.classes:  # binary: P(positive)
        if len(classes) != 2:
            raise EstimationUnavailable(
                f"{where}: the predictions carry 'probability' (binary) but the reference "
                f"has {len(classes)} classes"
            )
        positive = scored.scores[:, 0]
        probabilities = np.c_[1.0 - positive, positive]
    else:
        if set(scored.classes) != set(classes):
            raise EstimationUnavailable(
                f"{where}: the predictions' classes {sorted(scored.classes)} differ from "
                f"the reference's {sorted(classes)}"
            )
        order = [scored.classes.index(c) for c in classes]
        probabilities = scored.scores[:, order]
    predicted: np.ndarray | None = None  # None: derived from the probabilities
    if not any(p is None for p in scored.prediction.tolist()):
        predicted = scored.prediction.astype(str).astype(object)
    return EstimationData(
        "classification",
        np.zeros((len(probabilities), 0)),
        (),
        prediction=predicted,
        probabilities=probabilities,
        classes=classes,
    )


def realized_from_outcomes(
    task: str, outcomes: Outcomes, classes: tuple[str, ...]
) -> dict[str, float]:
    """The realized metrics of a window's labelled outcomes.

    ROC AUC is computed from the scores the predictions carried (``outcomes.scores``),
    over the outcomes that have them in ``classes``' terms (a binary model's P(positive
    class), ``classes[1]``; a multiclass model's probabilities of exactly ``classes``);
    without any such outcome it is left out.
    """
    if task == "regression":
        return regression_scores(outcomes.prediction, outcomes.label)
    index = {c: i for i, c in enumerate(classes)}
    labels = np.asarray(outcomes.label).astype(str)
    predicted = np.asarray(outcomes.prediction).astype(str)
    keep = np.array([p in index and y in index for p, y in zip(predicted, labels, strict=True)])
    if not keep.any():
        return {}
    y = np.array([index[v] for v in labels[keep]], dtype=np.intp)
    p = np.array([index[v] for v in predicted[keep]], dtype=np.intp)
    scores = _score_matrix(outcomes.scores, classes)
    out = classification_scores(np.zeros((len(y), len(classes))), p, y)
    out.pop("roc_auc")
    if scores is not None:
        scored = np.isfinite(scores[keep]).all(axis=1)
        if scored.any():
            ranked = classification_scores(scores[keep][scored], p[scored], y[scored])
            if np.isfinite(ranked["roc_auc"]):
                out["roc_auc"] = ranked["roc_auc"]
    return out


def _score_matrix(scores: np.ndarray | None, classes: tuple[str, ...]) -> np.ndarray | None:
    """Rows x ``classes`` probabilities of the outcomes' scores (NaN rows: none or others)."""
    if scores is None or not len(classes):
        return None
    out = np.full((len(scores), len(classes)), np.nan)
    wanted = set(classes)
    for k, item in enumerate(scores.tolist()):
        if isinstance(item, int | float) and len(classes) == 2:
            out[k] = (1.0 - item, item)
        elif isinstance(item, dict) and set(item) == wanted:
            out[k] = [item[c] for c in classes]
    return out
