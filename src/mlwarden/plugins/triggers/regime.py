"""The ``regime`` trigger: fire when the volatility regime of a model's series changes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import numpy as np

from ...hookspecs import hookimpl
from ...stats.cusum import VolatilityCusum, returns_from
from ...types import Decision, Outcomes, Severity, TriggerContext

__all__ = ["RegimeTrigger"]

logger = logging.getLogger(__name__)

_SERIES = ("label", "prediction", "residual")
_TRANSFORMS = ("none", "log_return", "diff")


class RegimeTrigger:
    """Fire when a two-sided variance CUSUM finds a volatility change in the model's outcomes.

    On each scheduler tick (at most every ``interval_seconds``) it reads the model's
    joined outcomes of the last ``lookback_hours`` through
    ``context.outcomes.outcomes(model, since=...)``, orders them by
    prediction time, turns the chosen series into returns, runs
    :class:`mlwarden.stats.cusum.VolatilityCusum` over them (in a worker thread), and
    fires for an alarm raised at a point later than the trigger's last firing.

    Parameters
    ----------
    series:
        ``label`` (default: for a returns model the realised return), ``prediction``, or
        ``residual`` (label - prediction).
    transform:
        ``none`` (the series already holds returns), ``log_return`` (it holds prices),
        ``diff``.
    ratio, threshold, warmup, clip:
        The detector's options (see VolatilityCusum).
    lookback_hours:
        How much history is read on each evaluation.
    interval_seconds:
        Least time between two evaluations.
    cooldown_seconds:
        After firing, the trigger stays quiet this long.
    """

    name = "regime"
    test_params: ClassVar[tuple[dict[str, Any], ...]] = (
        {},
        {"series": "residual", "transform": "diff", "ratio": 3.0, "threshold": 8.0},
    )

    def __init__(
        self,
        *,
        series: str = "label",
        transform: str = "none",
        ratio: float = 2.0,
        threshold: float = 12.0,
        warmup: int = 500,
        clip: float = 25.0,
        lookback_hours: float = 168.0,
        interval_seconds: float = 300.0,
        cooldown_seconds: float = 6 * 3600.0,
    ) -> None:
        if series not in _SERIES:
            raise ValueError(f"option 'series' must be one of {', '.join(_SERIES)}, got {series!r}")
        if transform not in _TRANSFORMS:
            raise ValueError(
                f"option 'transform' must be one of {', '.join(_TRANSFORMS)}, got {transform!r}"
            )
        if lookback_hours <= 0 or interval_seconds < 0 or cooldown_seconds < 0:
            raise ValueError(
                "options 'lookback_hours' (> 0), 'interval_seconds' and 'cooldown_seconds' "
                "(>= 0) are out of range"
            )
        self.detector = VolatilityCusum(ratio=ratio, threshold=threshold, warmup=warmup, clip=clip)
        self.series = series
        self.transform = transform
        self.lookback_seconds = float(lookback_hours) * 3600.0
        self.interval_seconds = float(interval_seconds)
        self.cooldown_seconds = float(cooldown_seconds)
        self._last_evaluated: dict[str, float] = {}

    def _values(self, outcomes: Outcomes) -> tuple[np.ndarray, np.ndarray]:
        ts = np.asarray(outcomes.ts, dtype=float)
        label = np.asarray(outcomes.label, dtype=float)
        if self.series == "label":
            values = label
        elif self.series == "prediction":
            values = np.asarray(outcomes.prediction, dtype=float)
        else:
            values = label - np.asarray(outcomes.prediction, dtype=float)
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], values[order]
        series = returns_from(values, self.transform)
        return ts[len(ts) - len(series) :], series

    async def evaluate(self, context: TriggerContext) -> Decision:
        """On a tick: read the outcomes, run the detector, fire on a new alarm."""
        if context.event is not None:
            return Decision(False)
        if context.outcomes is None:
            return Decision(False, "no outcome source: no outcomes to watch")
        last = self._last_evaluated.get(context.model)
        if last is not None and context.now - last < self.interval_seconds:
            return Decision(False)
        self._last_evaluated[context.model] = context.now
        since = context.now - self.lookback_seconds
        outcomes = await context.outcomes.outcomes(context.model, since=since)
        try:
            ts, series = self._values(outcomes)
        except (TypeError, ValueError) as exc:
            return Decision(False, f"series {self.series!r} is not numeric: {exc}")
        alarms = await asyncio.to_thread(self.detector.detect, series)
        horizon = max(t for t in (context.last_fired, context.armed_at, -np.inf) if t is not None)
        fresh = [a for a in alarms if ts[a.index] > horizon]
        if not fresh:
            return Decision(False, f"no regime change in {len(series)} points")
        alarm = fresh[-1]
        return Decision(
            True,
            f"volatility regime change ({alarm.direction}, variance x{alarm.variance_ratio:.2f}) "
            f"in {self.series} since {ts[alarm.start_index]:.0f}",
            severity=Severity.WARNING,
            data={
                "direction": alarm.direction,
                "variance_ratio": alarm.variance_ratio,
                "statistic": alarm.statistic,
                "threshold": self.detector.threshold,
                "change_started_at": float(ts[alarm.start_index]),
                "detected_at": float(ts[alarm.index]),
                "points": len(series),
            },
        )


@hookimpl
def mlwarden_triggers() -> list[type]:
    return [RegimeTrigger]
