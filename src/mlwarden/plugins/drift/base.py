"""What every built-in drift method shares: option checks, kind checks, data access.

A drift method is one small class (see ``ks.py``): a ``name``, the feature ``kinds`` it
takes, keyword-only options checked with the ``check_*`` functions below,
``fit(reference) -> Self`` and ``score(current) -> DriftScore``. Subclassing
:class:`DriftMethod` gives the kind checks and the fitted-state bookkeeping; the method
then implements ``_fit`` and ``_score`` only.

How a method reaches the data inside a :class:`~mlwarden.types.FeatureData`:

- :func:`numeric_sample` / :func:`multivariate_sample`: the raw sample as float64,
  with NaN and infinities dropped (the data-quality checks count those, the
  distribution tests compare the finite values);
- :func:`reference_bins` and :func:`bin_counts`: the reference's quantile histogram and
  the current window's counts over the same edges (taken from the profile when it has
  them, binned from the sample otherwise), and :func:`merge_bins` to coarsen a fine
  profile histogram into groups of equal reference mass;
- :func:`category_counts` and :func:`align_categories`: counts per category, aligned on
  the union of both sides' categories (so unseen categories get a zero on the
  reference side).

A method may also score all the features it checks at once: ``batch(fitted)``, a
classmethod, returns a :class:`BatchScorer` over fitted instances of the class (or None),
whose ``score(data)`` gives each feature's DriftScore, or None where the batch cannot
(that feature is then scored by ``score`` alone). The monitor builds it once per fit;
the results must be those of ``score``, only cheaper (``ks`` and ``psi`` have one).

Histogram convention: ``counts`` has either ``len(bin_edges) + 1`` entries (an
underflow bin ``x < edges[0]``, then ``edges[i-1] <= x < edges[i]``, then an overflow
bin ``x >= edges[-1]``) or ``len(bin_edges) - 1`` entries (numpy's ``histogram``). A
method compares reference and current counts bin by bin, so either works as long as
both sides use the same edges.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Protocol, Self, get_args

import numpy as np

from ...types import DriftScore, FeatureData, FeatureKind

__all__ = [
    "FEATURE_KINDS",
    "BatchScorer",
    "DriftMethod",
    "align_categories",
    "bin_counts",
    "category_counts",
    "check_bool",
    "check_choice",
    "check_int",
    "check_number",
    "check_probability",
    "merge_bins",
    "multivariate_sample",
    "numeric_sample",
    "reference_bins",
    "unseen",
]

#: The feature kinds a drift method may declare in ``kinds``.
FEATURE_KINDS: tuple[str, ...] = get_args(FeatureKind)


def _fail(owner: str, option: str, expected: str, value: object) -> ValueError:
    return ValueError(
        f'drift method "{owner}": option "{option}" must be {expected}, got {value!r}'
    )


def check_number(
    owner: str,
    option: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_minimum: bool = False,
    open_maximum: bool = False,
) -> float:
    """``value`` as a finite float within the bounds; ValueError naming method and option."""
    low = "(" if open_minimum else "["
    high = ")" if open_maximum else "]"
    lo = "-inf" if minimum is None else f"{minimum:g}"
    hi = "inf" if maximum is None else f"{maximum:g}"
    expected = f"a number in {low}{lo}, {hi}{high}"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise _fail(owner, option, expected, value)
    number = float(value)
    if not math.isfinite(number):
        raise _fail(owner, option, expected, value)
    if minimum is not None and (number < minimum or (open_minimum and number == minimum)):
        raise _fail(owner, option, expected, value)
    if maximum is not None and (number > maximum or (open_maximum and number == maximum)):
        raise _fail(owner, option, expected, value)
    return number


def check_probability(owner: str, option: str, value: object) -> float:
    """``value`` as a float strictly between 0 and 1 (a significance level)."""
    return check_number(
        owner, option, value, minimum=0.0, maximum=1.0, open_minimum=True, open_maximum=True
    )


def check_int(
    owner: str, option: str, value: object, *, minimum: int, maximum: int | None = None
) -> int:
    """``value`` as an int within the bounds (bools are refused)."""
    hi = "" if maximum is None else f" and <= {maximum}"
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise _fail(owner, option, f"an integer >= {minimum}{hi}", value)
    if value < minimum or (maximum is not None and value > maximum):
        raise _fail(owner, option, f"an integer >= {minimum}{hi}", value)
    return int(value)


def check_choice(owner: str, option: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise _fail(owner, option, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def check_bool(owner: str, option: str, value: object) -> bool:
    """``value`` if it is a bool (``1`` or ``"yes"`` are refused, not guessed)."""
    if not isinstance(value, bool | np.bool_):
        raise _fail(owner, option, "true or false", value)
    return bool(value)


class BatchScorer(Protocol):
    """Scores the features of several fitted instances of one method in one pass."""

    def score(self, data: Sequence[FeatureData]) -> list[DriftScore | None]:
        """Per instance (in the order ``batch`` got them), its score of ``data[i]``.

        None where the batch does not score that feature (a missing or non-finite
        sample, another size): the caller scores it with the instance's ``score``.
        """
        ...


class DriftMethod:
    """Base of the built-in drift methods: kind checks and the fitted state.

    Subclasses set ``name``, ``kinds`` and ``test_params``, take their options as
    keyword-only ``__init__`` arguments (checked with ``check_*``; each stores its
    ``threshold``) and implement ``_fit(reference)`` and ``_score(current)``.
    ``fit`` refuses a feature of a kind the method does not take; ``score`` refuses to
    run before ``fit`` and on a feature of another kind than the reference.
    """

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[FeatureKind, ...]] = ()
    #: Option sets the conformance suite instantiates the class with.
    test_params: ClassVar[list[dict[str, Any]]] = [{}]

    threshold: float
    _reference_kind: FeatureKind | None = None

    def fit(self, reference: FeatureData) -> Self:
        """Learn what the method needs from the reference; returns ``self``."""
        self._check_kind(reference, "reference")
        self._fit(reference)
        self._reference_kind = reference.kind
        return self

    def score(self, current: FeatureData) -> DriftScore:
        """Compare ``current`` with the fitted reference."""
        if self._reference_kind is None:
            raise RuntimeError(f'drift method "{self.name}": score() called before fit()')
        self._check_kind(current, "current")
        if current.kind != self._reference_kind:
            raise ValueError(
                f'drift method "{self.name}": feature "{current.name}" is {current.kind}, '
                f"but the reference was {self._reference_kind}"
            )
        return self._score(current)

    @classmethod
    def batch(cls, fitted: Sequence[Self]) -> BatchScorer | None:
        """A scorer of the ``fitted`` instances all at once; None: one at a time."""
        return None

    def _fit(self, reference: FeatureData) -> None:
        raise NotImplementedError

    def _score(self, current: FeatureData) -> DriftScore:
        raise NotImplementedError

    def _check_kind(self, data: FeatureData, role: str) -> None:
        if not isinstance(data, FeatureData):
            raise TypeError(
                f'drift method "{self.name}": {role} must be a FeatureData, '
                f"got {type(data).__name__}"
            )
        if data.kind not in self.kinds:
            raise ValueError(
                f'drift method "{self.name}" takes {"/".join(self.kinds)} features; '
                f'{role} feature "{data.name}" is {data.kind}'
            )

    def _result(
        self,
        statistic: float,
        *,
        drifted: bool,
        p_value: float | None = None,
        **details: Any,
    ) -> DriftScore:
        """A DriftScore of this method with plain Python floats (p-values stay float64)."""
        return DriftScore(
            method=self.name,
            statistic=float(statistic),
            threshold=float(self.threshold),
            drifted=bool(drifted),
            p_value=None if p_value is None else float(p_value),
            details=details,
        )

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({options})"


# --- samples ---------------------------------------------------------------------------


def numeric_sample(owner: str, data: FeatureData, *, minimum: int = 1) -> np.ndarray:
    """The finite values of ``data.sample`` as a 1-D float64 array (a view when possible).

    ValueError naming the method and feature when there is no sample or fewer than
    ``minimum`` finite values.
    """
    if data.sample is None:
        raise ValueError(f'drift method "{owner}" needs a sample of feature "{data.name}"')
    try:
        values = np.ascontiguousarray(data.sample, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f'drift method "{owner}": sample of feature "{data.name}" is not numeric: {exc}'
        ) from None
    finite = np.isfinite(values)
    if not finite.all():  # no copy when every value is finite
        values = values[finite]
    if values.size < minimum:
        raise ValueError(
            f'drift method "{owner}" needs at least {minimum} finite value(s) of feature '
            f'"{data.name}", got {values.size}'
        )
    return values


def multivariate_sample(owner: str, data: FeatureData, *, minimum: int = 2) -> np.ndarray:
    """The rows of a 2-D ``data.sample`` without non-finite values, as float64."""
    if data.sample is None:
        raise ValueError(f'drift method "{owner}" needs a sample of "{data.name}"')
    try:
        rows = np.asarray(data.sample, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f'drift method "{owner}": sample of "{data.name}" is not numeric: {exc}'
        ) from None
    if rows.ndim == 1:
        rows = rows[:, None]
    if rows.ndim != 2:
        raise ValueError(
            f'drift method "{owner}": sample of "{data.name}" must be rows x features, '
            f"got {rows.ndim} dimensions"
        )
    rows = rows[np.isfinite(rows).all(axis=1)]
    if rows.shape[0] < minimum:
        raise ValueError(
            f'drift method "{owner}" needs at least {minimum} complete rows of '
            f'"{data.name}", got {rows.shape[0]}'
        )
    return rows


# --- histograms ------------------------------------------------------------------------


def reference_bins(owner: str, reference: FeatureData, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges and counts of the reference histogram.

    The profile's own histogram (``bin_edges`` + ``counts``) when it has one; otherwise
    ``bins`` quantile bins of the reference sample with open outer bins (``bins - 1``
    interior edges, ``len(edges) + 1`` counts). Repeated quantiles (ties) are merged.
    """
    if reference.bin_edges is not None and reference.counts is not None:
        edges = np.asarray(reference.bin_edges, dtype=np.float64)
        counts = np.asarray(reference.counts, dtype=np.float64)
        if counts.size not in (edges.size + 1, edges.size - 1) or counts.size < 2:
            raise ValueError(
                f'drift method "{owner}": histogram of feature "{reference.name}" has '
                f"{counts.size} counts for {edges.size} edges"
            )
        if np.any(np.diff(edges) <= 0) or not np.isfinite(edges).all():
            raise ValueError(
                f'drift method "{owner}": bin edges of feature "{reference.name}" must be '
                "finite and strictly increasing"
            )
        return edges, counts
    values = numeric_sample(owner, reference)
    edges = np.unique(np.quantile(values, np.arange(1, bins) / bins))
    return edges, _bin_sample(values, edges, edges.size + 1)


def bin_counts(owner: str, current: FeatureData, edges: np.ndarray, size: int) -> np.ndarray:
    """Counts of ``current`` over the reference's ``edges`` (``size`` counts).

    Uses the current profile's histogram when it was built on the same edges, and bins
    the current sample otherwise.
    """
    if current.bin_edges is not None and current.counts is not None:
        cur_edges = np.asarray(current.bin_edges, dtype=np.float64)
        counts = np.asarray(current.counts, dtype=np.float64)
        if cur_edges.shape == edges.shape and np.array_equal(cur_edges, edges):
            if counts.size != size:
                raise ValueError(
                    f'drift method "{owner}": histogram of feature "{current.name}" has '
                    f"{counts.size} counts, the reference has {size}"
                )
            return counts
        if current.sample is None:
            raise ValueError(
                f'drift method "{owner}": feature "{current.name}" was binned on other '
                "edges than the reference and has no sample to re-bin"
            )
    return _bin_sample(numeric_sample(owner, current), edges, size)


def _bin_sample(values: np.ndarray, edges: np.ndarray, size: int) -> np.ndarray:
    if size == edges.size + 1:
        index = np.searchsorted(edges, values, side="right")
    else:  # numpy's convention: closed outer bins, values outside are clipped in
        index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, size - 1)
    return np.bincount(index, minlength=size).astype(np.float64)


def merge_bins(reference_counts: np.ndarray, groups: int) -> np.ndarray:
    """Start indices (for ``np.add.reduceat``) of at most ``groups`` runs of bins.

    Adjacent fine bins are merged so that each run holds about ``1/groups`` of the
    reference mass: a profile's many quantile bins become ``groups`` quantile bins.
    """
    size = reference_counts.size
    if size <= groups:
        return np.arange(size)
    cumulative = np.cumsum(reference_counts)
    total = cumulative[-1]
    if total <= 0:
        return np.linspace(0, size, groups, endpoint=False).astype(np.intp)
    cuts = np.searchsorted(cumulative, total * np.arange(1, groups) / groups, side="left") + 1
    starts = np.unique(np.concatenate(([0], cuts[cuts < size])))
    return starts


# --- categories ------------------------------------------------------------------------


def category_counts(owner: str, data: FeatureData) -> dict[str, float]:
    """Counts per category: from ``categories`` + ``counts``, else from the sample."""
    if data.categories is not None and data.counts is not None:
        counts = np.asarray(data.counts, dtype=np.float64)
        if len(data.categories) != counts.size:
            raise ValueError(
                f'drift method "{owner}": feature "{data.name}" has {len(data.categories)} '
                f"categories and {counts.size} counts"
            )
        if counts.size and (counts.min() < 0 or not np.isfinite(counts).all()):
            raise ValueError(
                f'drift method "{owner}": counts of feature "{data.name}" must be finite '
                "and non-negative"
            )
        out: dict[str, float] = {}
        for category, count in zip(data.categories, counts.tolist(), strict=True):
            out[str(category)] = out.get(str(category), 0.0) + count
        return out
    if data.sample is None:
        raise ValueError(
            f'drift method "{owner}" needs category counts or a sample of feature "{data.name}"'
        )
    values = [v for v in np.asarray(data.sample, dtype=object).ravel() if not _missing(v)]
    names, found = np.unique(np.asarray([str(v) for v in values], dtype=str), return_counts=True)
    return dict(zip(names.tolist(), found.astype(np.float64).tolist(), strict=True))


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def align_categories(
    reference: dict[str, float], current: dict[str, float]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Both sides' counts over the union of categories (reference order first).

    Categories the reference never saw get a zero reference count; categories with no
    count on either side are dropped.
    """
    names = list(reference) + [c for c in current if c not in reference]
    ref = np.array([reference.get(c, 0.0) for c in names], dtype=np.float64)
    cur = np.array([current.get(c, 0.0) for c in names], dtype=np.float64)
    keep = (ref + cur) > 0
    return [c for c, k in zip(names, keep, strict=True) if k], ref[keep], cur[keep]


def unseen(reference: Iterable[str], current: dict[str, float]) -> list[str]:
    """Categories with a count in ``current`` that ``reference`` never saw."""
    known = set(reference)
    return sorted(c for c, n in current.items() if n > 0 and c not in known)
