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
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

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

__all__ = [
    "RECOMMENDATIONS",
    "Detectors",
    "FittedMethod",
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


@dataclass
class Detectors:
    """Fitted method instances: per feature, for the multivariate rows, and the target."""

    features: dict[str, list[Fitted]] = field(default_factory=dict)
    multivariate: list[Fitted] = field(default_factory=list)
    target: list[Fitted] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # feature -> why it is not checked


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
    """Instantiate and fit every method on the reference profile (blocking)."""
    unknown = [n for n in model.drift_methods if n not in catalog]
    if unknown:
        known = ", ".join(sorted(catalog)) or "none"
        raise ValueError(
            f"model {model.name!r}: unknown drift method {unknown[0]!r} (available: {known})"
        )
    detectors = Detectors()
    profile, layout = reference.profile, reference.layout
    names = (*layout.numeric, *layout.categorical)
    for name, data in zip(names, profile.features_data(names), strict=True):
        fitted = []
        for method in method_names(model, data.kind, catalog):
            try:
                fitted.append(
                    _fit(method, catalog[method], model.drift_options.get(method, {}), data)
                )
            except ValueError as exc:
                detectors.errors[name] = f"{method}: {exc}"
        detectors.features[name] = fitted
    numeric = _multivariate_columns(layout)
    if len(numeric) >= 2:
        rows = profile.multivariate_data(numeric)
        for method in method_names(model, "multivariate", catalog):
            try:
                detectors.multivariate.append(
                    _fit(method, catalog[method], model.drift_options.get(method, {}), rows)
                )
            except ValueError as exc:
                detectors.errors["__multivariate__"] = f"{method}: {exc}"
    if reference.target is not None:
        label = reference.target.layout
        data = reference.target.feature_data((*label.numeric, *label.categorical)[0])
        for method in method_names(model, data.kind, catalog):
            try:
                detectors.target.append(
                    _fit(method, catalog[method], model.drift_options.get(method, {}), data)
                )
            except ValueError as exc:
                detectors.errors["__target__"] = f"{method}: {exc}"
    return detectors


def _score_all(
    fitted: list[Fitted], data: FeatureData, vote: str
) -> tuple[bool, dict[str, DriftScore], str | None]:
    results: dict[str, DriftScore] = {}
    error = None
    for name, method in fitted:
        try:
            results[name] = method.score(data)
        except ValueError as exc:  # too little data, a constant feature, ...
            error = f"{name}: {exc}"
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
) -> DriftReport:
    """``report`` (checked data, no verdict yet) with the drift verdict of ``current``.

    Per feature, prediction, target and the multivariate rows; then the score and the
    recommendation by the rule of the module docstring.
    """
    layout = reference.layout
    vote = monitoring.drift_vote
    feature_drifts: dict[str, FeatureDrift] = {}
    prediction_drift: PredictionDrift | None = None
    names = (*layout.numeric, *layout.categorical)
    features = current.features_data(names)
    # Big samples: each feature's methods on a worker thread (numpy releases the GIL).
    sampled = max((len(d.sample) for d in features if d.sample is not None), default=0)
    scored = map_threads(
        lambda item: _score_all(detectors.features.get(item[0], []), item[1], vote),
        zip(names, features, strict=True),
        workers=workers_for(sampled),
    )
    for name, data, (drifted, methods, error) in zip(names, features, scored, strict=True):
        error = error or detectors.errors.get(name)
        if name == layout.prediction:
            prediction_drift = PredictionDrift(
                column=name, kind=data.kind, drifted=drifted, methods=methods, error=error
            )
        else:
            feature_drifts[name] = FeatureDrift(
                kind=data.kind, drifted=drifted, methods=methods, error=error
            )
    multivariate: MultivariateDrift | None = None
    if detectors.multivariate:
        numeric = _multivariate_columns(layout)
        rows = current.multivariate_data(numeric)
        drifted, methods, error = _score_all(detectors.multivariate, rows, vote)
        multivariate = MultivariateDrift(
            columns=numeric, drifted=drifted, methods=methods, error=error
        )
    target_drift: TargetDrift | None = None
    if target is not None and detectors.target:
        label = target.layout
        data = target.feature_data((*label.numeric, *label.categorical)[0])
        drifted, methods, error = _score_all(detectors.target, data, vote)
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
