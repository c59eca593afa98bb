"""Numerics with no daemon in them (pure numpy/scipy; imports nothing else of mlwarden).

For A/B tests between model versions (re-exported here):

- ``hypothesis``: Welch's t-test, the two-proportion z-test, Mann-Whitney U, each with
  the interval of the difference and the relative lift;
- ``sequential``: the always-valid mSPRT p-value and normal-mixture confidence sequence;
- ``design``: sample-ratio mismatch, Holm's correction, power and sample size, CUPED;
- ``decision``: per-request metrics, guardrails, gates and the recommendation.

For monitoring and plugins (imported from their modules):

- ``kolmogorov``: the two-sample Kolmogorov-Smirnov statistic and p-value, as scipy
  computes them, faster (the ``ks`` drift method);
- ``cusum``: the variance CUSUM that detects a volatility regime change (the
  ``regime`` trigger);
- ``metrics``: a model version's regression, classification, trading and system
  metrics from joined outcomes, and whether a metric is higher-is-better
  (``higher_is_better``, ``relative_worsening``: the gates and the performance monitor).
"""

from __future__ import annotations

from .decision import (
    METRICS,
    AnalysisSettings,
    Arm,
    Evaluation,
    Recommendation,
    analyse,
    is_final,
    metric_values,
)
from .design import PowerReport, SrmCheck, cuped_adjust, holm, power_report, srm_check
from .hypothesis import (
    Comparison,
    compare,
    mann_whitney,
    relative_lift,
    welch,
    welch_summary,
    z_test,
    z_test_summary,
)
from .sequential import (
    SequentialState,
    mixture_half_width,
    mixture_rho2,
    mixture_summary,
    sequential_compare,
)

__all__ = [
    "METRICS",
    "AnalysisSettings",
    "Arm",
    "Comparison",
    "Evaluation",
    "PowerReport",
    "Recommendation",
    "SequentialState",
    "SrmCheck",
    "analyse",
    "compare",
    "cuped_adjust",
    "holm",
    "is_final",
    "mann_whitney",
    "metric_values",
    "mixture_half_width",
    "mixture_rho2",
    "mixture_summary",
    "power_report",
    "relative_lift",
    "sequential_compare",
    "srm_check",
    "welch",
    "welch_summary",
    "z_test",
    "z_test_summary",
]
