"""The drift report: drift methods fitted on the reference profile, run on a window profile.

Pure and blocking (the monitor runs it in a thread); the report is built typed
(``mlwarden.types.DriftReport``). The rule, documented in docs/monitoring.md:

- each feature is checked by its methods (``models.drift_methods`` filtered by the
  kinds each method takes, or ``DEFAULT_METHODS`` per kind); the feature has drifted
  when its methods agree as ``monitoring.drift_vote`` says (``all`` by default: a test
  on the bounded sample *and* an effect size, so a significant but negligible shift
  is not called drift);
- ``drift_score`` = drifted features / checked features;
- ``drift_detected`` = ``drift_score >= drift_threshold`` (and at least one feature);
- recommendation, with t = ``drift_threshold``: RETRAIN_IMMEDIATELY when the score is
  at least 2t, or at least t while the prediction or the target has drifted too;
  RETRAIN_SOON when the score is at least t, or the prediction or the target drifted;
  NO_ACTION_NEEDED otherwise (and whenever the window holds fewer than
  ``monitoring.min_window_rows`` rows).

A method is isolated from the others: one that cannot fit or score (ValueError: too
little data, a constant feature) or that fails (any other exception, a bug in a
plugin) leaves an ``error`` naming it on the entries it could not check, and the
feature is decided by the methods that did report. Failures are logged here with
their traceback and returned as :class:`MethodFailure` for the monitor to count.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ...types import (
    RECOMMENDATIONS,
    DriftReport,
    DriftScore,
    FeatureData,
    FeatureDrift,
    MultivariateDrift,
    PredictionDrift,
    Recommendation,
    TargetDrift,
)
from ..core.config import ModelConfig, MonitoringConfig
from ..core.parallel import map_threads, workers_for
from ..profiles.layout import Layout
from ..profiles.profile import Profile
from ..profiles.reference import Reference

if TYPE_CHECKING:
    from ...plugins.drift.base import BatchScorer

__all__ = [
    "RECOMMENDATIONS",
    "Detectors",
    "FittedMethod",
    "MethodFailure",
    "evaluate",
    "fit_detectors",
    "insufficient_data",
    "recommend",
]

logger = logging.getLogger(__name__)


class FittedMethod(Protocol):
    """A drift method instance after ``fit(reference)``: it scores a window's data."""

    def score(self, current: FeatureData) -> DriftScore:
        """The method's verdict on ``current``; ValueError when it cannot score it."""
        ...


#: A fitted method and the name it was configured by.
Fitted = tuple[str, FittedMethod]

#: The ``where`` of the multivariate rows and of the target in errors and failures.
MULTIVARIATE, TARGET = "__multivariate__", "__target__"


@dataclass(frozen=True)
class MethodFailure:
    """A drift method that raised something other than ValueError (a bug, not the data)."""

    method: str
    stage: str  # "fit" or "score"
    where: str  # the feature, MULTIVARIATE or TARGET
    error: str


@dataclass
class Detectors:
    """Fitted method instances: per feature, for the multivariate rows, and the target."""

    features: dict[str, list[Fitted]] = field(default_factory=dict)
    multivariate: list[Fitted] = field(default_factory=list)
    target: list[Fitted] = field(default_factory=list)
    #: feature (or MULTIVARIATE, TARGET) -> why some of its methods are not fitted
    errors: dict[str, str] = field(default_factory=dict)
    #: the methods that failed to fit (each counted once, when the fit is made)
    failures: list[MethodFailure] = field(default_factory=list)
    #: per method name: the features it checks and its scorer of all of them at once
    #: (``DriftMethod.batch``), for the methods that have one
    batches: dict[str, tuple[list[str], BatchScorer]] = field(default_factory=dict)

    def add_error(self, where: str, error: str) -> None:
        before = self.errors.get(where)
        self.errors[where] = f"{before}; {error}" if before else error


def _joined(first: str | None, second: str | None) -> str | None:
    return f"{first}; {second}" if first and second else first or second


def _method_error(
    model: str, method: str, stage: str, where: str, exc: Exception
) -> tuple[str, MethodFailure | None]:
    """The ``error`` text naming ``method``; a MethodFailure unless it was a ValueError."""
    if isinstance(exc, ValueError):  # it cannot use this data: expected, not a failure
        return f"{method}: {exc}", None
    error = f"{method} failed to {stage}: {type(exc).__name__}: {exc}"
    logger.error(
        "drift method %s failed to %s %s of model %s",
        method,
        stage,
        where,
        model,
        exc_info=exc,
    )
    return error, MethodFailure(method, stage, where, error)


def method_names(model: ModelConfig, kind: str, catalog: dict[str, type]) -> list[str]:
    """The methods that check a feature of ``kind`` for ``model``."""
    if model.drift_methods:
        return [n for n in model.drift_methods if kind in getattr(catalog[n], "kinds", ())]
    from ...plugins.drift import DEFAULT_METHODS

    return [n for n in DEFAULT_METHODS.get(kind, ()) if n in catalog]


def _fit(name: str, cls: type, options: dict[str, Any], reference: FeatureData) -> Fitted:
    fitted: FittedMethod = cls(**options).fit(reference)
    return name, fitted


def _multivariate_columns(layout: Layout) -> tuple[str, ...]:
    """The numeric features the multivariate methods take together (not the prediction)."""
    return tuple(n for n in layout.numeric if n != layout.prediction)


def fit_detectors(model: ModelConfig, reference: Reference, catalog: dict[str, type]) -> Detectors:
    """Instantiate and fit every method on the reference profile (blocking).

    A method that cannot fit is left out of its feature's methods with an error naming
    it (``Detectors.errors``); one that fails is also in ``Detectors.failures``.
    """
    unknown = [n for n in model.drift_methods if n not in catalog]
    if unknown:
        known = ", ".join(sorted(catalog)) or "none"
        raise ValueError(
            f"model {model.name!r}: unknown drift method {unknown[0]!r} (available: {known})"
        )
    detectors = Detectors()
    profile, layout = reference.profile, reference.layout

    def fit_all(where: str, kind: str, data: FeatureData) -> list[Fitted]:
        fitted = []
        for method in method_names(model, kind, catalog):
            try:
                fitted.append(
                    _fit(method, catalog[method], model.drift_options.get(method, {}), data)
                )
            except Exception as exc:
                error, failure = _method_error(model.name, method, "fit", where, exc)
                detectors.add_error(where, error)
                if failure is not None:
                    detectors.failures.append(failure)
        return fitted

    names = (*layout.numeric, *layout.categorical)
    for name, data in zip(names, profile.features_data(names), strict=True):
        detectors.features[name] = fit_all(name, data.kind, data)
    _batch(model, detectors, catalog)
    numeric = _multivariate_columns(layout)
    if len(numeric) >= 2:
        rows = profile.multivariate_data(numeric)
        detectors.multivariate = fit_all(MULTIVARIATE, "multivariate", rows)
    if reference.target is not None:
        label = reference.target.layout
        data = reference.target.feature_data((*label.numeric, *label.categorical)[0])
        detectors.target = fit_all(TARGET, data.kind, data)
    return detectors


def _batch(model: ModelConfig, detectors: Detectors, catalog: dict[str, type]) -> None:
    """The batch scorers of the fitted feature methods whose class offers one."""
    for method in dict.fromkeys(n for fitted in detectors.features.values() for n, _ in fitted):
        batch = getattr(catalog[method], "batch", None)
        if batch is None:
            continue
        where = [
            (feature, fitted)
            for feature, methods in detectors.features.items()
            for name, fitted in methods
            if name == method
        ]
        try:
            scorer = batch([m for _, m in where])
        except Exception:  # the methods still score one by one
            logger.exception("drift method %s cannot score %s in one batch", method, model.name)
            continue
        if scorer is not None:
            detectors.batches[method] = ([f for f, _ in where], scorer)


def score_batches(
    detectors: Detectors, names: tuple[str, ...], features: list[FeatureData], model: str
) -> dict[tuple[str, str], DriftScore]:
    """(feature, method) -> the score of every feature a batch scorer could score.

    A batch that fails leaves its features to the methods one by one (which then name
    the error per feature, as without batches).
    """
    by_name = dict(zip(names, features, strict=True))
    out: dict[tuple[str, str], DriftScore] = {}
    for method, (where, scorer) in detectors.batches.items():
        if not all(f in by_name for f in where):
            continue
        try:
            scores = scorer.score([by_name[f] for f in where])
        except Exception:
            logger.debug("batch of drift method %s failed for %s", method, model, exc_info=True)
            continue
        for feature, score in zip(where, scores, strict=True):
            if score is not None:
                out[feature, method] = score
    return out


def _score_all(
    model: str,
    where: str,
    fitted: list[Fitted],
    data: FeatureData,
    vote: str,
    failures: list[MethodFailure],
    scored: dict[tuple[str, str], DriftScore] | None = None,
) -> tuple[bool, dict[str, DriftScore], str | None]:
    results: dict[str, DriftScore] = {}
    error = None
    for name, method in fitted:
        if scored is not None:
            done = scored.get((where, name))
            if done is not None:
                results[name] = done
                continue
        try:
            results[name] = method.score(data)
        except Exception as exc:  # ValueError: too little data, a constant feature, ...
            text, failure = _method_error(model, name, "score", where, exc)
            error = _joined(error, text)
            if failure is not None:
                failures.append(failure)  # list.append: safe from the worker threads
    verdicts = [r.drifted for r in results.values()]
    if not verdicts:
        drifted = False
    elif vote == "any":
        drifted = any(verdicts)
    elif vote == "majority":
        drifted = sum(verdicts) * 2 > len(verdicts)
    else:
        drifted = all(verdicts)
    return drifted, results, error


def insufficient_data(report: DriftReport, monitoring: MonitoringConfig) -> DriftReport:
    """``report`` (checked data, no verdict yet) when its rows are too few for one."""
    return dataclasses.replace(
        report,
        status="insufficient_data",
        message=f"{report.rows.current} rows in the window; at least "
        f"{monitoring.min_window_rows} needed (monitoring.min_window_rows)",
    )


def evaluate(
    report: DriftReport,
    model: ModelConfig,
    monitoring: MonitoringConfig,
    reference: Reference,
    detectors: Detectors,
    current: Profile,
    target: Profile | None,
    failures: list[MethodFailure] | None = None,
) -> DriftReport:
    """``report`` (checked data, no verdict yet) with the drift verdict of ``current``.

    Per feature, prediction, target and the multivariate rows; then the score and the
    recommendation by the rule of the module docstring. The methods that failed to
    score are appended to ``failures``.
    """
    failures = [] if failures is None else failures
    name_of = model.name
    layout = reference.layout
    vote = monitoring.drift_vote
    feature_drifts: dict[str, FeatureDrift] = {}
    prediction_drift: PredictionDrift | None = None
    names = (*layout.numeric, *layout.categorical)
    features = current.features_data(names)
    batched = score_batches(detectors, names, features, name_of)
    # Big samples: each feature's methods on a worker thread (numpy releases the GIL).
    sampled = max((len(d.sample) for d in features if d.sample is not None), default=0)
    scored = map_threads(
        lambda item: _score_all(
            name_of,
            item[0],
            detectors.features.get(item[0], []),
            item[1],
            vote,
            failures,
            batched,
        ),
        zip(names, features, strict=True),
        workers=workers_for(sampled),
    )
    for name, data, (drifted, methods, error) in zip(names, features, scored, strict=True):
        error = _joined(detectors.errors.get(name), error)
        if name == layout.prediction:
            prediction_drift = PredictionDrift(
                column=name, kind=data.kind, drifted=drifted, methods=methods, error=error
            )
        else:
            feature_drifts[name] = FeatureDrift(
                kind=data.kind, drifted=drifted, methods=methods, error=error
            )
    multivariate: MultivariateDrift | None = None
    if detectors.multivariate or MULTIVARIATE in detectors.errors:
        numeric = _multivariate_columns(layout)
        rows = current.multivariate_data(numeric)
        drifted, methods, error = _score_all(
            name_of, MULTIVARIATE, detectors.multivariate, rows, vote, failures
        )
        error = _joined(detectors.errors.get(MULTIVARIATE), error)
        multivariate = MultivariateDrift(
            columns=numeric, drifted=drifted, methods=methods, error=error
        )
    target_drift: TargetDrift | None = None
    if target is not None and (detectors.target or TARGET in detectors.errors):
        label = target.layout
        data = target.feature_data((*label.numeric, *label.categorical)[0])
        drifted, methods, error = _score_all(
            name_of, TARGET, detectors.target, data, vote, failures
        )
        error = _joined(detectors.errors.get(TARGET), error)
        target_drift = TargetDrift(
            column=model.label_column,
            labels=data.count,
            drifted=drifted,
            methods=methods,
            error=error,
        )
    checked = len(feature_drifts)
    drifted_features = tuple(sorted(n for n, f in feature_drifts.items() if f.drifted))
    score = len(drifted_features) / checked if checked else 0.0
    detected = bool(drifted_features) and score >= monitoring.drift_threshold
    also = bool(prediction_drift and prediction_drift.drifted) or bool(
        target_drift and target_drift.drifted
    )
    return dataclasses.replace(
        report,
        status="ok",
        drift_detected=detected,
        drift_score=score,
        threshold=monitoring.drift_threshold,
        recommendation=recommend(score, monitoring.drift_threshold, also),
        drifted_features=drifted_features,
        feature_drifts=feature_drifts,
        multivariate_drift=multivariate,
        prediction_drift=prediction_drift,
        target_drift=target_drift,
    )


def recommend(score: float, threshold: float, prediction_or_target_drifted: bool) -> Recommendation:
    """The documented rule (module docstring) from the score and the threshold."""
    if score >= 2 * threshold or (score >= threshold and prediction_or_target_drifted):
        return "RETRAIN_IMMEDIATELY"
    if score >= threshold or prediction_or_target_drifted:
        return "RETRAIN_SOON"
    return "NO_ACTION_NEEDED"
