"""A window of closed buckets held in memory, added to and evicted one bucket at a time.

The window of a drift check is the sum of the stored bucket profiles that start in
``[first, last)``. Re-reading and merging every stored bucket whenever a bucket closes
or the window slides (once per ``bucket_seconds``) costs O(window): 288 buckets of a
24-hour window carry up to ``sample_size`` sampled rows each. :class:`BucketWindow`
keeps instead, per model (and per version filter):

- the sums of the additive parts (row, value, null/NaN/inf counts, histograms,
  category counts): a closed bucket is added, an expired one subtracted, exactly (the
  expired bucket's counts are read back from the store: one row, not the window);
- per bucket, its count, mean, M2, min and max (a few numbers per feature): mean and M2
  of the window are merged from them (Chan et al.'s pairwise formula, vectorised over
  the buckets in (start, version, seq) order), min and max are taken over them;
- the sampled rows of its buckets whose bottom-k key is at most a ``cutoff``: all of
  them while at most ``sample_size * 5 / 4`` are held, otherwise the cutoff drops to the
  key of rank ``sample_size * 9 / 8``. The window's sample is the ``sample_size`` held
  rows with the smallest keys (held sorted by key and column by column, the sample is a
  view of them whose per-feature columns a check reads in place). That
  is exactly the bottom-k sample of the union of the stored bucket samples (what a full
  merge gives) as long as at least ``sample_size`` rows are held or the cutoff was never
  lowered; when evictions leave fewer (:meth:`BucketWindow.exact`), the window is rebuilt.

It holds no store: which buckets it counts, how it follows the store and when it is
rebuilt are daemon/ingest/window.py's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..profiles.layout import Layout
from ..profiles.profile import Profile

__all__ = ["BucketWindow"]

#: The additive parts of a profile, summed and subtracted exactly.
_SUMS = ("count", "nulls", "nans", "infs", "hist", "cat_counts", "cat_nulls", "cat_unseen")
_MOMENTS = ("count", "mean", "m2", "minimum", "maximum")


@dataclass
class _Bucket:
    """What the window keeps of one stored bucket besides its share of the sums."""

    seq: int
    version: str
    start: float
    rows: int
    moments: np.ndarray  # (5, F) float64: count, mean, m2, minimum, maximum


class BucketWindow:
    """The closed buckets of one model (and version filter) starting at or after ``first``."""

    def __init__(self, layout: Layout, sample_size: int, version: str | None, first: float):
        self.layout = layout
        self.sample_size = sample_size
        self.version = version
        self.first = first
        self.generation = -1
        self.max_seq = 0
        self.rows = 0
        empty = Profile(layout, sample_size)
        self.sums = {name: getattr(empty, name) for name in _SUMS}
        self.buckets: dict[int, _Bucket] = {}
        self.cutoff = math.inf
        self.keys = np.zeros(0)
        self.sample = np.zeros((0, len(layout.numeric)))
        self.starts = np.zeros(0)
        # Held rows added since the last gather, concatenated once (not at every add).
        self._parts: list[tuple[np.ndarray, np.ndarray, float]] = []
        self._pending = 0
        self._sorted = True
        self._profile: Profile | None = None
        #: ((first, last, generation), profile) of the buckets before ``last`` when some
        #: counted bucket starts at or after it (clock skew): merged apart, kept until
        #: the window changes.
        self.bounded: tuple[tuple[float, float, int, int, int], Profile] | None = None

    @property
    def held_limit(self) -> int:
        """Held sampled rows are cut back to this many (an eighth over ``sample_size``)."""
        return self.sample_size + max(self.sample_size // 8, 1)

    # -- changes -----------------------------------------------------------------------

    def add(self, seq: int, version: str, start: float, profile: Profile) -> None:
        """Count a stored bucket (its profile as decoded, sample included) in."""
        self.max_seq = max(self.max_seq, seq)
        if start < self.first or seq in self.buckets:
            return
        self.rows += profile.rows
        for name in _SUMS:
            self.sums[name] = self.sums[name] + getattr(profile, name)
        moments = np.array([getattr(profile, name) for name in _MOMENTS], dtype=np.float64)
        self.buckets[seq] = _Bucket(seq, version, start, profile.rows, moments)
        keys = profile.keys
        if len(keys):
            keep = keys <= self.cutoff
            if keep.all():  # copies: the decoded arrays are views of the stored blob
                keys, sample = keys.copy(), profile.sample.copy()
            else:
                keys, sample = keys[keep], profile.sample[keep]
            if len(keys):
                self._parts.append((keys, sample, start))
                self._pending += len(keys)
                self._sorted = False
                if len(self.keys) + self._pending > self.held_limit + self.sample_size // 8:
                    self._lower_cutoff()
        self._profile = None

    def _gather(self) -> None:
        """Concatenate the held rows added since the last gather."""
        if not self._parts:
            return
        keys, samples, starts = zip(*self._parts, strict=True)
        self.keys = np.concatenate([self.keys, *keys])
        self.sample = np.concatenate([self.sample, *samples])
        self.starts = np.concatenate(
            [self.starts, *(np.full(len(k), start) for k, start in zip(keys, starts, strict=True))]
        )
        self._parts, self._pending = [], 0

    def expiring(self, first: float) -> list[int]:
        """The seqs of the buckets that start before ``first``."""
        return [b.seq for b in self.buckets.values() if b.start < first]

    def evict(self, first: float, expired: list[Profile], seqs: list[int]) -> bool:
        """Move the window's start to ``first``, subtracting the ``expired`` buckets.

        ``expired`` are the stored profiles of ``seqs`` (``expiring(first)``), read back
        from the store (their counts are needed, not their samples). False when they do
        not match what the window counted: the window must then be rebuilt.
        """
        gone = [self.buckets.pop(seq) for seq in seqs]
        self.first = first
        if len(expired) != len(gone) or sum(p.rows for p in expired) != sum(b.rows for b in gone):
            return False
        for profile in expired:
            self.rows -= profile.rows
            for name in _SUMS:
                self.sums[name] = self.sums[name] - getattr(profile, name)
        self._gather()
        if len(self.starts):
            keep = self.starts >= first
            self.keys, self.sample, self.starts = (
                self.keys[keep], self.sample[keep], self.starts[keep]
            )  # fmt: skip
        self._profile = None
        return True

    def exact(self) -> bool:
        """Whether the held rows still give the exact bottom-k sample of the window."""
        return self.cutoff == math.inf or len(self.keys) + self._pending >= self.sample_size

    def beyond(self, last: float) -> bool:
        """Whether a counted bucket starts at or after ``last`` (outside the window)."""
        return any(b.start >= last for b in self.buckets.values())

    def _lower_cutoff(self) -> None:
        self._gather()
        limit = self.held_limit
        self.cutoff = float(np.partition(self.keys, limit - 1)[limit - 1])
        keep = self.keys <= self.cutoff  # every held row up to the cutoff, ties included
        self.keys, self.sample, self.starts = self.keys[keep], self.sample[keep], self.starts[keep]

    # -- the window's profile ----------------------------------------------------------

    def profile(self) -> Profile:
        """The merged profile of the counted buckets (cached until the window changes)."""
        return self.assemble().copy()

    def assemble(self) -> Profile:
        """The cached merged profile, assembled now if the window changed (blocking)."""
        if self._profile is None:
            self._profile = self._assemble()
        return self._profile

    def _assemble(self) -> Profile:
        profile = Profile(self.layout, self.sample_size)
        if not self.buckets:
            return profile
        profile.rows = self.rows
        for name in _SUMS:
            setattr(profile, name, self.sums[name])
        order = sorted(self.buckets.values(), key=lambda b: (b.start, b.version, b.seq))
        count, mean, m2, low, high = np.stack([b.moments for b in order], axis=1)
        n = self.sums["count"]
        with np.errstate(invalid="ignore", divide="ignore"):
            total_mean = np.where(n > 0, (count * mean).sum(axis=0) / n, 0.0)
            spread = (count * (mean - total_mean) ** 2).sum(axis=0)
        profile.mean = total_mean
        profile.m2 = np.where(n > 0, m2.sum(axis=0) + spread, 0.0)
        profile.minimum, profile.maximum = low.min(axis=0), high.max(axis=0)
        self._gather()
        if not self._sorted:  # held rows by key: the window's sample is a prefix, not a copy
            by_key = np.argsort(self.keys, kind="stable")
            self.keys, self.sample, self.starts = (
                self.keys[by_key], self.sample[by_key], self.starts[by_key]
            )  # fmt: skip
            self._sorted = True
        if not self.sample.flags.f_contiguous:
            # Held column by column: each feature's sampled values are contiguous, so a
            # check reads them in place (Profile.features_data) instead of transposing
            # the sample (5,000 x 50 values) at every check.
            self.sample = np.asfortranarray(self.sample)
        profile.keys, profile.sample = (
            self.keys[: self.sample_size],
            self.sample[: self.sample_size],
        )
        return profile
