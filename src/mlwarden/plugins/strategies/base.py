"""The base class of the built-in deployment strategies: common options and handling.

The contract a strategy implements (``RolloutView``, ``Analysis``, ``Step``, ...) is
in :mod:`mlwarden.types.rollouts`; this base adds what the built-ins share: the
validated ``interval_seconds``, ``failure_budget`` and :class:`~mlwarden.types.Thresholds`
options, the default ``due`` and ``windows``, and :meth:`Strategy.judge`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar

from ...types.rollouts import Analysis, RolloutView, Step, Thresholds, check_option

__all__ = ["Strategy"]


class Strategy:
    """Base of every deployment strategy: validated common options and the protocol.

    Subclasses set ``name`` and implement :meth:`first` and :meth:`decide`. Options are
    keyword-only; a bad value raises ``ValueError`` naming the option. Common options:
    ``interval_seconds`` (analysis interval per step), ``failure_budget`` (failed
    analyses tolerated before rolling back) and the :class:`Thresholds` fields.
    """

    name: ClassVar[str] = ""
    #: Parameter sets the conformance tests instantiate the class with.
    test_params: ClassVar[tuple[dict[str, Any], ...]] = ({},)

    def __init__(
        self,
        *,
        interval_seconds: float = 300.0,
        failure_budget: int = 0,
        **thresholds: Any,
    ) -> None:
        check_option(
            isinstance(interval_seconds, int | float) and interval_seconds > 0,
            "interval_seconds",
            "a positive number",
            interval_seconds,
        )
        check_option(
            isinstance(failure_budget, int) and failure_budget >= 0,
            "failure_budget",
            "an integer >= 0",
            failure_budget,
        )
        known = set(Thresholds.__dataclass_fields__)
        unknown = sorted(set(thresholds) - known)
        if unknown:
            raise ValueError(
                f"strategy {self.name!r}: unknown option(s) {', '.join(unknown)} "
                f"(known: interval_seconds, failure_budget, {', '.join(sorted(known))}"
                f"{self._extra_options()})"
            )
        self.interval_seconds = float(interval_seconds)
        self.failure_budget = failure_budget
        self.thresholds = Thresholds(**thresholds)

    def _extra_options(self) -> str:
        return ""

    def options(self) -> dict[str, Any]:
        """The options in force, as stored with each rollout."""
        return {
            "interval_seconds": self.interval_seconds,
            "failure_budget": self.failure_budget,
            **asdict(self.thresholds),
        }

    # -- the protocol ---------------------------------------------------------------

    def first(self, view: RolloutView) -> Step:
        """The first step of a rollout that has just started."""
        raise NotImplementedError

    def due(self, view: RolloutView) -> bool:
        """Whether the step in force has run long enough to be analysed."""
        return view.elapsed >= self.interval_seconds

    def windows(self, view: RolloutView) -> tuple[tuple[float, float], tuple[float, float]]:
        """The (since, until) windows of the candidate and of the baseline to compare.

        By default both are the step's own interval, so the comparison is made over
        the same time; blue-green overrides it after its switch.
        """
        window = (view.step_started_at, view.now)
        return window, window

    def decide(self, view: RolloutView, analysis: Analysis) -> Step:
        """The next step given the analysis of the interval that just elapsed."""
        raise NotImplementedError

    def judge(self, view: RolloutView, analysis: Analysis, on_pass: Step) -> Step:
        """Common handling: inconclusive waits, a failure retries within the budget."""
        if analysis.verdict == "inconclusive":
            return Step("wait", reason=analysis.reason or "too few samples; waiting")
        if analysis.verdict == "fail":
            failed = ", ".join(c.metric for c in analysis.failed_checks) or analysis.reason
            if view.failures + 1 > self.failure_budget:
                return Step(
                    "rollback",
                    reason=f"analysis failed ({failed}); failure budget "
                    f"{self.failure_budget} exhausted",
                )
            return Step(
                "retry",
                reason=f"analysis failed ({failed}); {view.failures + 1} of "
                f"{self.failure_budget} failures allowed",
            )
        return on_pass
