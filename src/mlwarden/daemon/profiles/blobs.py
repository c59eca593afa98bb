"""Stored bucket profiles read as views of their blob, without copying or ``zipfile``.

A bucket profile is stored as an ``np.savez`` blob (an uncompressed zip of .npy files,
``Profile.to_bytes``). Reading a window reads hundreds of them, each with a sample of
up to ``sample_size`` rows of which the window keeps a few: the arrays are handed out
as read-only views of the blob, and the zip directory is read with ``struct``.
"""

from __future__ import annotations

import ast
import functools
import io
import math
import struct
import zipfile
from typing import Any

import numpy as np

from .layout import Layout
from .profile import Profile

__all__ = ["decode_bucket", "npz_views", "zip_members"]


def decode_bucket(layout: Layout, blob: bytes, sample_size: int, with_sample: bool) -> Profile:
    """A stored bucket profile whose arrays are read-only views of ``blob`` (no copies).

    Without its sample, only the counts and moments are read. Whatever the window keeps
    of it is copied out (sums by addition, moments and held rows by ``add``).
    """
    skip = () if with_sample else ("keys", "sample")
    arrays = npz_views(blob, skip)
    rows = int(arrays.pop("rows")[0])
    return Profile(layout, sample_size, rows=rows, **arrays)


def npz_views(blob: bytes, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays of an ``np.savez`` blob (uncompressed zip of .npy files) as views.

    ``np.load`` copies every array out of the archive and checks its CRC: for a bucket
    whose sample is 2 MB of which the window keeps a few rows, that is most of the cost
    of reading a window. The zip's directory is read with ``struct`` (``zipfile`` took
    most of the remaining time); an archive not laid out as ``np.savez`` writes it goes
    through ``zipfile``, a member that is not a plain stored .npy through ``np.load``.
    """
    members = zip_members(blob)
    if members is None:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            members = [(i.filename, i.compress_type, i.header_offset) for i in archive.infolist()]
    out: dict[str, np.ndarray] = {}
    for filename, compress_type, local in members:
        name = filename.removesuffix(".npy")
        if name in skip:
            continue
        if compress_type != zipfile.ZIP_STORED:
            with zipfile.ZipFile(io.BytesIO(blob)) as archive:
                out[name] = np.load(archive.open(filename), allow_pickle=False)
            continue
        name_length, extra_length = struct.unpack_from("<HH", blob, local + 26)
        start = local + 30 + name_length + extra_length
        major = blob[start + 6]
        if major == 1:
            (length,) = struct.unpack_from("<H", blob, start + 8)
            offset = start + 10
        else:
            (length,) = struct.unpack_from("<I", blob, start + 8)
            offset = start + 12
        shape, fortran, dtype = _npy_header(blob[offset : offset + length])
        count = math.prod(shape)
        flat = np.frombuffer(blob, dtype=dtype, count=count, offset=offset + length)
        out[name] = flat.reshape(shape, order="F" if fortran else "C")
    return out


_END = struct.Struct("<4s4H2LH")  # end of central directory record (22 bytes)
_ENTRY = struct.Struct("<4s4B4HL2L5H2L")  # central directory entry (46 bytes)


def zip_members(blob: bytes) -> list[tuple[str, int, int]] | None:
    """``(name, compress_type, local header offset)`` of each member of a plain zip.

    None for what ``np.savez`` does not write (an archive comment, zip64 directory
    records, spanned disks): ``zipfile`` reads those.
    """
    if len(blob) < _END.size:
        return None
    signature, disk, disk_start, here, total, _, offset, comment = _END.unpack_from(
        blob, len(blob) - _END.size
    )
    if signature != b"PK\x05\x06" or comment or disk or disk_start or here != total:
        return None
    if total == 0xFFFF or offset == 0xFFFFFFFF:
        return None
    members = []
    position = offset
    for _ in range(total):
        if position + _ENTRY.size > len(blob):
            return None
        entry = _ENTRY.unpack_from(blob, position)
        if entry[0] != b"PK\x01\x02" or entry[18] == 0xFFFFFFFF:
            return None
        flags, compress_type, name_length, extra_length, comment_length = (
            entry[5], entry[6], entry[12], entry[13], entry[14]
        )  # fmt: skip
        start = position + _ENTRY.size
        raw = blob[start : start + name_length]
        name = raw.decode("utf-8" if flags & 0x800 else "cp437")
        members.append((name, compress_type, entry[18]))
        position = start + name_length + extra_length + comment_length
    return members


@functools.lru_cache(maxsize=256)
def _npy_header(text: bytes) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Shape, Fortran order and dtype of an .npy header (the same few recur in every bucket)."""
    header = ast.literal_eval(text.decode("latin1"))
    dtype = np.lib.format.descr_to_dtype(header["descr"])
    if dtype.hasobject:
        raise ValueError("a stored profile array holds Python objects")
    return tuple(header["shape"]), bool(header["fortran_order"]), dtype
