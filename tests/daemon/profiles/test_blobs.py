"""Stored bucket profiles read as views of their blob: what numpy writes, read back."""

from __future__ import annotations

import io
import zipfile

import numpy as np

from mlwarden.daemon.profiles.blobs import decode_bucket, npz_views, zip_members
from mlwarden.daemon.profiles.columns import Columns
from mlwarden.daemon.profiles.layout import Layout
from mlwarden.daemon.profiles.profile import Profile


def bucket(rows: int, rng: np.random.Generator, sample_size: int) -> tuple[Layout, Profile]:
    edges = np.sort(rng.normal(size=(3, 9)), axis=1)
    lay = Layout(("x0", "x1", "x2"), ("c0",), edges, (("a", "b", "c"),), 2, "t")
    x = rng.normal(size=(rows, 3))
    codes = rng.integers(-2, 3, size=(rows, 1)).astype(np.int32)
    return lay, Profile.from_columns(lay, Columns(x, codes), sample_size, rng)


def test_stored_profiles_are_read_as_numpy_writes_them():
    lay, profile = bucket(30, np.random.default_rng(5), 10)
    blob = profile.to_bytes()
    views = npz_views(blob)
    with np.load(io.BytesIO(blob)) as data:
        assert set(views) == set(data.files)
        for name in data.files:
            assert views[name].dtype == data[name].dtype
            np.testing.assert_array_equal(views[name], data[name])
    assert set(npz_views(blob, ("keys", "sample"))) == set(data.files) - {"keys", "sample"}
    empty = Profile(lay, 10).to_bytes(with_sample=False)
    assert npz_views(empty)["sample"].shape == (0, 3)
    assert [m[0] for m in zip_members(blob)] == [f"{n}.npy" for n in data.files]


def test_archives_not_laid_out_as_savez_writes_them_are_read_through_zipfile():
    _, profile = bucket(30, np.random.default_rng(6), 10)
    commented = io.BytesIO(profile.to_bytes())
    with zipfile.ZipFile(commented, "a") as archive:
        archive.comment = b"a comment moves the end record"
    compressed = io.BytesIO()
    np.savez_compressed(compressed, sample=profile.sample, keys=profile.keys)
    assert zip_members(commented.getvalue()) is None  # zipfile reads its directory
    members = zip_members(compressed.getvalue())  # np.load reads its members
    assert members and {m[1] for m in members} == {zipfile.ZIP_DEFLATED}
    for blob in (commented.getvalue(), compressed.getvalue()):
        views = npz_views(blob)
        np.testing.assert_array_equal(views["sample"], profile.sample)
        np.testing.assert_array_equal(views["keys"], profile.keys)
    assert zip_members(b"PK") is None


def test_a_bucket_read_without_its_sample_has_an_empty_one():
    # The arrays left out are the layout's empty ones, not None (their declared type).
    lay, profile = bucket(30, np.random.default_rng(7), 10)
    counts = decode_bucket(lay, profile.to_bytes(), 10, False)
    assert counts.rows == 30 and counts.keys.shape == (0,) and counts.sample.shape == (0, 3)
    np.testing.assert_array_equal(counts.hist, profile.hist)
    assert Profile(lay, 10, count=profile.count).sample.shape == (0, 3)
