"""Diffraction pattern files that accompany Ptychodus products, and shared HDF5 reading helpers.

A pattern file is an NPZ or HDF5 file with ``diffraction`` (amplitudes) or Ptychodus-style
``patterns``/``data`` (intensities, square-rooted with a log line on ``ptycho_data.hdf5``),
and optionally ``indexes`` (n,) matching a product's ``probe_position_indexes``.
Errors name the file and the key or HDF5 path (``file:/name``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ptycho_core.contracts import Dataset
from ptycho_core.errors import DataError
from ptycho_data.npzformat import ZIP_ERRORS, atomic_path, npz_keys, read_header

logger = logging.getLogger("ptycho_data.hdf5")

_AMPLITUDE_KEYS = ("diffraction",)
_INTENSITY_KEYS = ("patterns", "data")
_MAX_BYTES = 32 * 2**30


def load_patterns(
    path: str | os.PathLike, *, max_array_bytes: int = _MAX_BYTES
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read diffraction patterns from an NPZ or HDF5 file as float32 amplitudes.

    Looks for ``diffraction`` (amplitudes), then ``patterns`` or ``data`` (intensities,
    square-rooted; logged). Returns ``(amplitudes (n, N, N), indexes (n,) or None)``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected diffraction patterns, NPZ or HDF5)")
    if zipfile.is_zipfile(path):
        try:
            zf = zipfile.ZipFile(path)
        except ZIP_ERRORS as exc:
            raise DataError(f"{path}: not a valid NPZ (zip) archive: truncated or corrupt ({exc})") from exc
        with zf:
            members = npz_keys(zf)
            key = _pattern_key(members, path)
            arrays = {}
            for name in (key, "indexes"):
                if name in members:
                    header = read_header(zf, members[name], path, max_array_bytes)
                    try:
                        with zf.open(header.member) as fh:
                            arrays[name] = np.lib.format.read_array(fh, allow_pickle=False)
                    except ZIP_ERRORS as exc:
                        raise DataError(f"{path}: key {name!r}: cannot read array, file is corrupt ({exc})") from exc
        where = f"{path}: key {key!r}"
    else:
        with open_h5(path) as f:
            key = _pattern_key(f, path)
            ds = h5_dataset(f, key, path)
            nbytes = int(np.prod(ds.shape, dtype=object)) * ds.dtype.itemsize
            if nbytes > max_array_bytes:
                raise DataError(f"{path}:/{key}: declared shape {ds.shape} needs {nbytes} bytes, over the limit")
            arrays = {key: h5_read(ds, path)}
            if "indexes" in f:
                arrays["indexes"] = h5_read(h5_dataset(f, "indexes", path), path)
        where = f"{path}:/{key}"
    data, indexes = arrays[key], arrays.get("indexes")
    if data.ndim != 3 or data.shape[1] != data.shape[2]:
        raise DataError(f"{where}: expected patterns of shape (n, N, N), got {data.shape}")
    if data.dtype.kind not in "fiu":
        raise DataError(f"{where}: expected real numeric patterns, got dtype {data.dtype}")
    if indexes is not None and (indexes.shape != (data.shape[0],) or indexes.dtype.kind not in "iu"):
        raise DataError(f"{where}: 'indexes' must be {data.shape[0]} integers, got {indexes.dtype} {indexes.shape}")
    if key in _INTENSITY_KEYS:
        if not np.all(np.isfinite(data)) or np.any(data < 0):
            raise DataError(f"{where}: intensities must be finite and >= 0 (clip negatives before loading)")
        logger.info("%s: intensities %r converted to amplitudes with sqrt", path, key)
        data = np.sqrt(data.astype(np.float64))
    elif data.dtype != np.float32:
        logger.info("%s: %r cast %s -> float32", path, key, data.dtype)
    return data.astype(np.float32, copy=False), indexes


def write_patterns(path: str | os.PathLike, dataset: Dataset) -> Path:
    """Write the patterns of ``dataset`` as a Ptychodus-style HDF5 diffraction file (atomic).

    Datasets: ``patterns`` (n, N, N) float32 intensities (amplitude squared) and
    ``indexes`` (n,) int64 = 0..n-1, matching :func:`write_product`'s position indexes.
    """
    with atomic_path(path, suffix=".h5.tmp") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("patterns", data=np.square(dataset.diffraction, dtype=np.float32))
        f.create_dataset("indexes", data=np.arange(dataset.n, dtype=np.int64))
    return Path(path)


def _pattern_key(container: Any, path: Path) -> str:
    for key in (*_AMPLITUDE_KEYS, *_INTENSITY_KEYS):
        if key in container:
            return key
    raise DataError(
        f"{path}: missing diffraction patterns: expected key 'diffraction' (amplitudes) or 'patterns'/'data' "
        f"(intensities); present: {sorted(container.keys())}"
    )


@contextlib.contextmanager
def open_h5(path: Path) -> Iterator[h5py.File]:
    """Open an HDF5 file read-only; a missing, truncated or non-HDF5 file is a :class:`DataError`."""
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected an HDF5 file)")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file, truncated or corrupt ({exc})") from exc
    with f:
        yield f


def h5_dataset(f: Any, name: str, path: Path) -> h5py.Dataset:
    """The dataset ``/name`` of ``f``; missing or a group is a :class:`DataError` naming ``path:/name``."""
    if name not in f:
        raise DataError(f"{path}:/{name}: missing HDF5 dataset (present: {sorted(f.keys())})")
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{path}:/{name}: expected an HDF5 dataset, found a {type(obj).__name__}")
    return obj


def h5_read(ds: h5py.Dataset, path: Path) -> np.ndarray:
    """Read a whole numeric dataset; unreadable or non-numeric data is a :class:`DataError`."""
    try:
        arr = ds[()]
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}:{ds.name}: cannot read dataset, file is truncated or corrupt ({exc})") from exc
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fciub":
        raise DataError(f"{path}:{ds.name}: expected a numeric array, got dtype {arr.dtype}")
    return arr
