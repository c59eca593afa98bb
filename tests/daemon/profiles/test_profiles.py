"""Profiles: exact merges (Chan et al.), histograms as numpy's, a uniform mergeable sample."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlwarden.daemon.profiles.columns import Columns
from mlwarden.daemon.profiles.layout import OTHER, Layout
from mlwarden.daemon.profiles.profile import Profile


def layout(edges: np.ndarray, categories=(("a", "b", "c"),), top_k: int = 2) -> Layout:
    return Layout(
        numeric=tuple(f"x{i}" for i in range(edges.shape[0])),
        categorical=tuple(f"c{i}" for i in range(len(categories))),
        edges=edges,
        categories=tuple(categories),
        top_k=top_k,
        fingerprint="t",
    )


def columns(lay: Layout, x: np.ndarray, cats: list[list[object]] | None = None) -> Columns:
    n = x.shape[0]
    codes = np.zeros((n, len(lay.categorical)), dtype=np.int32)
    for j, values in enumerate(cats or []):
        codes[:, j] = lay.encode(j, values)
    return Columns(x, codes)


def test_merged_batches_equal_one_pass_over_all_rows():
    rng = np.random.default_rng(0)
    edges = np.quantile(rng.normal(size=(2, 5000)), np.linspace(0, 1, 21), axis=1).T
    lay = layout(edges)
    data = rng.normal(0.3, 2.0, size=(3000, 2))
    data[5, 0], data[6, 0], data[7, 1] = np.nan, np.inf, -np.inf
    parts = np.split(data, [100, 1700, 1701])
    rng2 = np.random.default_rng(1)
    merged = Profile(lay, 500)
    for part in parts:
        merged.merge(Profile.from_columns(lay, columns(lay, part), 500, rng2))
    whole = Profile.from_columns(lay, columns(lay, data), 500, rng2)
    for j in range(2):
        finite = data[:, j][np.isfinite(data[:, j])]
        assert merged.count[j] == whole.count[j] == len(finite)
        assert merged.mean[j] == pytest.approx(finite.mean(), rel=1e-12)
        assert merged.variance()[j] == pytest.approx(finite.var(ddof=1), rel=1e-10)
        assert merged.minimum[j] == finite.min() and merged.maximum[j] == finite.max()
        # Histogram: underflow, the reference's bins, overflow -- numpy's bins inside.
        inner, _ = np.histogram(finite, bins=edges[j])
        assert merged.hist[j, 1:-1].sum() == inner.sum()
        np.testing.assert_array_equal(merged.hist[j, 1:-1], inner)
        assert merged.hist[j, 0] == (finite < edges[j, 0]).sum()
        assert merged.hist[j, -1] == (finite > edges[j, -1]).sum()
    np.testing.assert_array_equal(merged.infs, [1, 1])
    np.testing.assert_array_equal(merged.nans, [1, 0])
    assert merged.rows == 3000 and len(merged.keys) == 500


def test_histogram_counts_every_value_by_its_definition_on_ties_and_non_finite_values():
    # Bin k holds the finite values v with exactly k edges <= v (0: below the first
    # edge, last: above the last), except that v equal to the last edge is in the last
    # inner bin. Small integers put many values on the edges; the edges repeat.
    rng = np.random.default_rng(5)
    for _ in range(200):
        f, n, e = rng.integers(1, 5), rng.integers(1, 200), rng.integers(1, 10)
        edges = np.sort(rng.integers(-3, 4, size=(f, e)).astype(float), axis=1)
        x = rng.integers(-5, 6, size=(n, f)).astype(float)
        for value, rate in ((np.nan, 0.1), (np.inf, 0.05), (-np.inf, 0.05)):
            x[rng.random((n, f)) < rate] = value
        lay = layout(edges, categories=())
        hist = Profile.from_columns(lay, columns(lay, x), 10, np.random.default_rng(0)).hist
        expected = np.zeros((f, e + 1), dtype=np.int64)
        for j in range(f):
            for v in x[:, j]:
                if np.isfinite(v):
                    k = int((edges[j] <= v).sum())
                    expected[j, e - 1 if v == edges[j, -1] else k] += 1
        np.testing.assert_array_equal(hist, expected)


def test_nulls_are_counted_apart_from_nan():
    lay = layout(np.array([[0.0, 1.0, 2.0]]), categories=())
    x = np.array([[np.nan], [np.nan], [1.0]])
    nulls = np.array([[True], [False], [False]])
    profile = Profile.from_columns(
        lay, Columns(x, np.zeros((3, 0), np.int32), nulls), 10, np.random.default_rng(0)
    )
    assert (profile.nulls[0], profile.nans[0], profile.count[0]) == (1, 1, 1)


def test_categories_top_k_other_unseen_and_nulls():
    lay = layout(np.zeros((0, 3)), categories=(("a", "b", "c"),), top_k=2)
    values = ["a", "a", "b", "c", "zzz", None, 7]
    profile = Profile.from_columns(lay, columns(lay, np.zeros((7, 0)), [values]), 10, None)
    data = profile.feature_data("c0")
    assert data.categories == ("a", "b", OTHER)
    # "c" is a known category past the top 2; "zzz" and 7 were never seen.
    np.testing.assert_array_equal(data.counts, [2, 1, 3])
    assert profile.cat_unseen[0] == 2 and profile.cat_nulls[0] == 1


def test_bottom_k_sample_of_merged_profiles_is_uniform():
    """The merged sample draws each source in proportion to its rows (chi-square)."""
    lay = layout(np.array([[0.0, 1.0]]), categories=())
    rng = np.random.default_rng(3)
    small = np.zeros((1000, 1))
    large = np.ones((9000, 1))
    shares = []
    for _ in range(200):
        a = Profile.from_columns(lay, columns(lay, small), 100, rng)
        b = Profile.from_columns(lay, columns(lay, large), 100, rng)
        shares.append(int((a.merge(b).sample[:, 0] == 0).sum()))
    # Hypergeometric: 100 draws from 10,000 rows of which 1,000 are from `small`.
    mean = np.mean(shares)
    assert stats.ttest_1samp(shares, 10.0).pvalue > 0.001, mean
    assert 9.0 < mean < 11.0


def test_tied_reference_quantiles_give_strictly_increasing_edges():
    edges = np.array([[0.0, 0.0, 0.0, 1.0, 2.0, 2.0]])
    lay = layout(edges, categories=())
    x = np.array([[-1.0], [0.0], [0.0], [0.5], [1.5], [2.0], [3.0]])
    profile = Profile.from_columns(lay, columns(lay, x), 10, np.random.default_rng(0))
    data = profile.feature_data("x0")
    np.testing.assert_array_equal(data.bin_edges, [0.0, 1.0, 2.0])
    # below 0 | [0, 1) | [1, 2] | above 2
    np.testing.assert_array_equal(data.counts, [1, 3, 2, 1])
    constant = layout(np.array([[5.0, 5.0, 5.0]]), categories=())
    profile = Profile.from_columns(
        constant, columns(constant, np.array([[4.0], [5.0], [6.0]])), 10, np.random.default_rng(0)
    )
    data = profile.feature_data("x0")
    np.testing.assert_array_equal(data.bin_edges, [5.0])
    np.testing.assert_array_equal(data.counts, [1, 2])


def test_serialisation_round_trip():
    rng = np.random.default_rng(5)
    lay = layout(np.sort(rng.normal(size=(3, 11)), axis=1), categories=(("u", "v"),))
    profile = Profile.from_columns(
        lay, columns(lay, rng.normal(size=(50, 3)), [["u", "v"] * 25]), 20, rng
    )
    back_layout = Layout.from_bytes(lay.to_bytes())
    assert back_layout.to_dict() == lay.to_dict()
    np.testing.assert_array_equal(back_layout.edges, lay.edges)
    back = Profile.from_bytes(back_layout, profile.to_bytes(), 20)
    for name in Profile._ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(profile, name))
    assert back.rows == 50
    # A smaller sample size on load cuts the sample to the smallest keys.
    cut = Profile.from_bytes(back_layout, profile.to_bytes(), 5)
    assert len(cut.keys) == 5 and set(cut.keys) <= set(profile.keys)


def test_journal_columns_round_trip_and_old_npz_blobs_still_read():
    from mlwarden.daemon.profiles.layout import pack_arrays

    rng = np.random.default_rng(6)
    numeric = rng.normal(size=(7, 3)).T.copy().T  # not C-contiguous: written in C order
    nulls = rng.random((7, 3)) < 0.3
    for cols in (
        Columns(numeric, rng.integers(-2, 5, size=(7, 2)).astype(np.int32), nulls),
        Columns(numeric, np.zeros((7, 0), np.int32)),  # no categorical feature
        Columns(np.zeros((0, 3)), np.zeros((0, 2), np.int32)),  # no row
    ):
        old = {"numeric": cols.numeric, "codes": cols.codes}
        if cols.nulls is not None:
            old["nulls"] = cols.nulls
        for blob in (cols.to_bytes(), pack_arrays(old)):
            back = Columns.from_bytes(blob)
            np.testing.assert_array_equal(back.numeric, cols.numeric)
            np.testing.assert_array_equal(back.codes, cols.codes)
            assert back.codes.dtype == np.int32 and back.numeric.shape == cols.numeric.shape
            if cols.nulls is None:
                assert back.nulls is None
            else:
                np.testing.assert_array_equal(back.nulls, cols.nulls)
            back.numeric[:1] = 0.0  # writable, not a view of the blob


def test_deferred_cut_keeps_the_same_bottom_k_rows():
    lay = layout(np.array([[0.0, 1.0]]), categories=())
    rng = np.random.default_rng(7)
    parts = [
        Profile.from_columns(lay, columns(lay, rng.normal(size=(300, 1))), 100, rng)
        for _ in range(9)
    ]
    eager, lazy = Profile(lay, 100), Profile(lay, 100)
    for part in parts:
        eager.merge(part)
        lazy.merge(part, cut=False)
        lazy.cut_sample(limit=400)
    lazy.cut_sample()
    assert sorted(eager.keys) == sorted(lazy.keys) and len(lazy.keys) == 100
    np.testing.assert_array_equal(
        eager.sample[np.argsort(eager.keys)], lazy.sample[np.argsort(lazy.keys)]
    )


def test_fold_in_place_keeps_what_merge_keeps_and_touches_no_other_profile():
    lay = layout(np.array([[0.0, 1.0], [0.0, 1.0]]), categories=())
    rng = np.random.default_rng(11)
    parts = [
        Profile.from_columns(lay, columns(lay, rng.normal(size=(n, 2))), 100, rng)
        for n in (60, 30, 300, 5, 80, 1, 250)
    ]
    before = [part.sample.copy() for part in parts]
    merged, folded = Profile(lay, 100), Profile(lay, 100)
    for part in parts:
        merged.merge(part)
        folded.fold(part)
    for name in ("rows", "count", "mean", "m2", "minimum", "maximum", "hist"):
        np.testing.assert_array_equal(getattr(folded, name), getattr(merged, name))
    assert sorted(folded.keys) == sorted(merged.keys) and len(folded.keys) == 100
    np.testing.assert_array_equal(
        folded.sample[np.argsort(folded.keys)], merged.sample[np.argsort(merged.keys)]
    )
    for part, sample in zip(parts, before, strict=True):  # the batches folded in: untouched
        np.testing.assert_array_equal(part.sample, sample)


def test_histogram_of_untied_edges_is_handed_out_as_is_and_read_only():
    edges = np.array([[0.0, 1.0, 2.0, 3.0]])
    lay = layout(edges, categories=())
    x = np.array([[-1.0], [0.5], [1.5], [2.5], [3.0], [4.0]])
    profile = Profile.from_columns(lay, columns(lay, x), 10, np.random.default_rng(0))
    data = profile.feature_data("x0")
    np.testing.assert_array_equal(data.bin_edges, edges[0])
    np.testing.assert_array_equal(data.counts, [1, 1, 1, 2, 1])
    assert not data.counts.flags.writeable  # shared with the profile (and a window's sums)
    with pytest.raises(ValueError):
        data.counts[0] = 7
    assert profile.hist[0, 0] == 1


def test_features_read_together_are_what_each_read_alone_gives():
    rng = np.random.default_rng(9)
    edges = np.sort(rng.normal(size=(3, 6)), axis=1)
    edges[1, 2] = edges[1, 1]  # a tie: the histogram is re-binned
    lay = layout(edges)
    x = rng.normal(size=(40, 3))
    x[3, 0], x[7, 0], x[5, 2] = np.nan, np.inf, -np.inf  # x1 keeps every sampled value
    x[:, 1] = np.where(np.arange(40) % 2, x[:, 1], 1.0)
    profile = Profile.from_columns(
        lay, columns(lay, x, [list("abcd" * 10)]), 30, np.random.default_rng(0)
    )
    names = ["c0", "x2", "x0", "x1"]
    together = profile.features_data(names)
    for name, data in zip(names, together, strict=True):
        alone = profile.feature_data(name)
        assert data.name == name and data.kind == alone.kind
        for field in ("count", "mean", "m2", "minimum", "maximum", "categories"):
            assert getattr(data, field) == getattr(alone, field), (name, field)
            assert type(getattr(data, field)) is type(getattr(alone, field))
        for field in ("sample", "bin_edges", "counts"):
            a, b = getattr(data, field), getattr(alone, field)
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)
    assert np.isfinite(together[2].sample).all() and len(together[2].sample) < 30
    assert len(together[3].sample) == 30


def test_merge_into_a_full_sample_keeps_the_bottom_k_of_the_union():
    lay = layout(np.array([[0.0, 1.0]]), categories=())
    rng = np.random.default_rng(11)
    for rows_a, rows_b in ((500, 300), (500, 40), (60, 500), (500, 500)):
        a = Profile.from_columns(lay, columns(lay, rng.normal(size=(rows_a, 1))), 50, rng)
        b = Profile.from_columns(lay, columns(lay, rng.normal(size=(rows_b, 1))), 50, rng)
        keys = np.concatenate([a.keys, b.keys])
        sample = np.concatenate([a.sample, b.sample])
        smallest = np.argsort(keys)[:50]
        merged = a.copy().merge(b)
        order = np.argsort(merged.keys)
        np.testing.assert_array_equal(merged.keys[order], keys[smallest])
        np.testing.assert_array_equal(merged.sample[order], sample[smallest])


def test_a_sample_held_column_by_column_merges_to_the_same_rows_in_that_layout():
    # A kept window's sample is held column by column (daemon/ingest/bucket_window.py); merged
    # with an open bucket it keeps that layout, with the same rows in the same order.
    lay = layout(np.tile(np.linspace(-3, 3, 11), (3, 1)), categories=())
    rng = np.random.default_rng(12)
    for rows_a, rows_b in ((500, 300), (500, 40), (30, 10)):
        a = Profile.from_columns(lay, columns(lay, rng.normal(size=(rows_a, 3))), 50, rng)
        b = Profile.from_columns(lay, columns(lay, rng.normal(size=(rows_b, 3))), 50, rng)
        by_rows = a.copy().merge(b)
        a.sample = np.asfortranarray(a.sample)
        by_column = a.copy().merge(b)
        assert by_column.sample.flags.f_contiguous and by_rows.sample.flags.c_contiguous
        np.testing.assert_array_equal(by_column.keys, by_rows.keys)
        np.testing.assert_array_equal(by_column.sample, by_rows.sample)
        # Each feature is read in place, read-only (the sample may be a window's).
        data = by_column.features_data(["x0", "x1", "x2"])
        for i, column in enumerate(data):
            assert column.sample is not None and not column.sample.flags.writeable
            assert np.shares_memory(column.sample, by_column.sample)
            np.testing.assert_array_equal(column.sample, by_rows.sample[:, i])
        for copied in by_rows.features_data(["x0", "x1", "x2"]):
            assert copied.sample is not None and not np.shares_memory(copied.sample, by_rows.sample)


def test_multivariate_rows_drop_only_non_finite_values_of_their_columns():
    rng = np.random.default_rng(5)
    lay = layout(np.tile(np.linspace(-3, 3, 11), (3, 1)), categories=())
    data = rng.normal(size=(100, 3))
    data[:, 2] = np.nan  # a column the multivariate methods do not take
    data[4, 0] = np.inf
    profile = Profile.from_columns(lay, columns(lay, data), 1000, rng)
    rows = profile.multivariate_data(["x0", "x1"])
    assert rows.columns == ("x0", "x1") and rows.count == 100
    assert rows.sample is not None and rows.sample.shape == (99, 2)
    assert np.isfinite(rows.sample).all()
    assert profile.multivariate_data().sample.shape == (0, 3)  # every column: none whole
