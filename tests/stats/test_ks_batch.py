"""ks_batch: the statistics of many features at once equal ks_statistic's, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.stats.kolmogorov import SortedReference, ks_statistic
from mlwarden.stats.ks_batch import StackedReferences, batch_stride, ks_statistics


@pytest.mark.parametrize("stride", [None, 1, 7, 16])
@pytest.mark.parametrize("seed", range(8))
def test_every_row_equals_the_one_feature_statistic(seed, stride):
    rng = np.random.default_rng(seed)
    features = int(rng.integers(1, 40))
    n1, n2 = int(rng.integers(1, 12_000)), int(rng.integers(1, 6_000))
    reference = rng.normal(size=(features, n1))
    current = rng.normal(rng.normal(0, 0.05), size=(features, n2))
    if seed % 2:  # ties inside and across the samples
        reference, current = np.round(reference * 3), np.round(current * 3)
    references = [SortedReference(row) for row in reference]
    one = np.array([ks_statistic(r, c) for r, c in zip(references, current, strict=True)])
    # Stacked at another stride than the references' own (batch_stride by default).
    together = ks_statistics(StackedReferences(references, stride), current.copy())
    assert np.array_equal(together, one)
    # The references re-indexed at the stack's stride give the same statistics alone.
    again = [ks_statistic(r, c) for r, c in zip(references, current, strict=True)]
    assert np.array_equal(np.array(again), one)


def test_a_subset_of_rows_is_compared_with_its_own_references():
    rng = np.random.default_rng(1)
    reference, current = rng.normal(size=(6, 3_000)), rng.normal(0.1, size=(6, 2_000))
    references = [SortedReference(row) for row in reference]
    stacked = StackedReferences(references)
    rows = [1, 4, 5]
    got = ks_statistics(stacked, current[rows].copy(), rows)
    assert got.tolist() == [ks_statistic(references[i], current[i]) for i in rows]


def test_the_references_share_the_stacked_rank_tables():
    references = [SortedReference(np.random.default_rng(i).normal(size=500)) for i in range(4)]
    values = [r.values for r in references]
    stacked = StackedReferences(references)
    for i, reference in enumerate(references):
        assert reference.values is values[i]  # the sorted values are not copied
        assert np.shares_memory(reference.edges, stacked.edges)
        assert reference.stride == stacked.stride == batch_stride(500)
        assert np.shares_memory(reference.left, stacked.left)
        assert np.shares_memory(reference.right, stacked.right)
        assert np.array_equal(reference.left, stacked.left[i])
