"""Datasets larger than memory: patterns stay on disk and are read batch by batch.

Two storages hold the DATA-001 arrays (same key names as the NPZ format):

- a directory of ``.npy`` files plus ``meta.json`` (:func:`save_lazy_dataset`,
  :class:`LazyDatasetWriter`), opened with ``diffraction.npy`` memory-mapped
  (:func:`open_lazy_dataset`);
- a chunked HDF5 file (:func:`save_lazy_hdf5`, :func:`open_lazy_hdf5`).

Both open as a :class:`LazyDataset`: small arrays (coordinates, probe, object) are in memory,
patterns are read only by :meth:`LazyDataset.read` / :meth:`LazyDataset.iter_batches`.
Writing is atomic: a directory or file appears only once complete.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ptycho_core.contracts import ALLOWED_N, Dataset
from ptycho_core.errors import DataError
from ptycho_data.lazy_write import (
    FORMAT,
    FORMAT_VERSION,
    SMALL_DTYPES,
    SMALL_KEYS,
    LazyDatasetWriter,
    save_lazy_dataset,
    save_lazy_hdf5,
)

logger = logging.getLogger("ptycho_data.lazy")


class LazyDataset:
    """A DATA-001 dataset whose patterns are read from disk on demand.

    Attributes ``xcoords``, ``ycoords``, ``scan_index``, ``xcoords_start``, ``ycoords_start``
    (n,), ``probe`` (N, N) complex64 and ``object`` (H, W) complex64 or None are in memory;
    ``diffraction`` is a read-only memory map or an ``h5py.Dataset``. Use as a context
    manager (or call :meth:`close`) to release an HDF5 file.
    """

    def __init__(self, diffraction: Any, small: Mapping[str, np.ndarray | None], source: str, closer: Any = None):
        self.source = source
        self._closer = closer
        shape = tuple(diffraction.shape)
        if len(shape) != 3 or shape[1] != shape[2]:
            raise DataError(f"{source}: diffraction: expected shape (n, N, N), got {shape}")
        if shape[0] == 0 or shape[1] not in ALLOWED_N:
            raise DataError(f"{source}: diffraction: expected n >= 1 patterns of side N in {ALLOWED_N}, got {shape}")
        if np.dtype(diffraction.dtype).kind != "f":
            raise DataError(f"{source}: diffraction: expected float amplitudes, got dtype {diffraction.dtype}")
        self.diffraction = diffraction
        values = _check_small(small, shape[0], shape[1], source)
        self.xcoords, self.ycoords = values["xcoords"], values["ycoords"]
        self.probe, self.object = values["probeGuess"], values["objectGuess"]
        zeros = np.zeros(shape[0], dtype=np.int64)
        self.scan_index = zeros if values["scan_index"] is None else values["scan_index"]
        self.xcoords_start = self.xcoords.copy() if values["xcoords_start"] is None else values["xcoords_start"]
        self.ycoords_start = self.ycoords.copy() if values["ycoords_start"] is None else values["ycoords_start"]

    @property
    def n(self) -> int:
        """Number of patterns."""
        return int(self.diffraction.shape[0])

    @property
    def N(self) -> int:  # noqa: N802 - the physics symbol
        """Pattern side in pixels."""
        return int(self.diffraction.shape[1])

    @property
    def positions(self) -> np.ndarray:
        """Scan centres as an (n, 2) array of (x, y)."""
        return np.stack([self.xcoords, self.ycoords], axis=1)

    def read(self, indices: Any) -> np.ndarray:
        """Patterns at ``indices`` (any order, repeats allowed) as a float32 (k, N, N) array.

        Raises :class:`DataError` if an index is out of range or a pattern holds NaN/inf or
        negative values (checked on every read, since the file is never scanned as a whole).
        A memory-mapped ``.npy`` is read with positional file reads (``os.preadv``), not through
        the map: pages touched through a map stay in the process's resident set, so a streamed
        pass over a file larger than memory would show up as a resident set the size of the file.
        """
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise DataError(f"{self.source}: indices: expected a 1-D integer array, got {idx.dtype} {idx.shape}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise DataError(f"{self.source}: indices: expected values in [0, {self.n}), got {idx.min()}..{idx.max()}")
        if idx.size == 0:
            return np.zeros((0, self.N, self.N), dtype=np.float32)
        try:
            if _preadable(self.diffraction):
                block = _pread_rows(self.diffraction, idx)
            elif np.all(np.diff(idx) == 1):
                block = self.diffraction[int(idx[0]) : int(idx[-1]) + 1]
            elif isinstance(self.diffraction, h5py.Dataset):
                unique, inverse = np.unique(idx, return_inverse=True)
                block = self.diffraction[unique][inverse]
            else:
                block = self.diffraction[idx]
            out = np.array(block, dtype=np.float32)
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"{self.source}: diffraction: cannot read patterns, file is corrupt ({exc})") from exc
        bad = ~np.isfinite(out).all(axis=(1, 2)) | (out < 0).any(axis=(1, 2))
        if np.any(bad):
            raise DataError(
                f"{self.source}: diffraction: patterns {idx[bad][:5].tolist()} hold NaN/inf or negative amplitudes"
            )
        return out

    def iter_batches(self, indices: Any = None, batch_size: int = 256) -> Iterator[np.ndarray]:
        """Yield float32 (b, N, N) pattern batches for ``indices`` (default all, in order)."""
        if int(batch_size) < 1:
            raise DataError(f"batch_size: expected a positive integer, got {batch_size}")
        idx = np.arange(self.n) if indices is None else np.asarray(indices)
        for start in range(0, len(idx), int(batch_size)):
            yield self.read(idx[start : start + int(batch_size)])

    def normalisation_factor(self, batch_size: int = 256) -> float:
        """Dataset normalisation ``k = sqrt((N/2)^2 / mean_j sum(A_j^2))`` computed batch by batch in float64.

        Equal to :func:`ptycho_core.reference.normalisation_factor` on the full data.
        """
        sums = [np.sum(np.square(b, dtype=np.float64), axis=(1, 2)) for b in self.iter_batches(None, batch_size)]
        mean = float(np.mean(np.concatenate(sums)))
        if not mean > 0:
            raise DataError(f"{self.source}: diffraction: all patterns are zero, the normalisation is undefined")
        return float(np.sqrt((self.N / 2) ** 2 / mean))

    def to_dataset(self) -> Dataset:
        """Read everything into an in-memory :class:`Dataset`."""
        return Dataset(diffraction=self.read(np.arange(self.n)), xcoords=self.xcoords, ycoords=self.ycoords,
                       probe=self.probe, object=self.object, scan_index=self.scan_index,
                       xcoords_start=self.xcoords_start, ycoords_start=self.ycoords_start,
                       metadata={"source": self.source})

    def close(self) -> None:
        """Release the underlying file (HDF5); memory maps are released when garbage collected."""
        if self._closer is not None:
            self._closer.close()
            self._closer = None

    def __enter__(self) -> LazyDataset:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_lazy_dataset(directory: str | os.PathLike) -> LazyDataset:
    """Open a directory written by :func:`save_lazy_dataset` / :class:`LazyDatasetWriter`.

    ``diffraction.npy`` is memory-mapped read-only (``allow_pickle=False``); the small
    arrays are loaded. Errors name the directory and file.
    """
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"{directory}: not a lazy dataset directory (missing meta.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta_path}: invalid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise DataError(f"{meta_path}: expected 'format': {FORMAT!r}, got {found!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise DataError(f"{meta_path}: unsupported version {meta.get('version')!r} (this reader: {FORMAT_VERSION})")
    diffraction = _load_npy(directory / "diffraction.npy", mmap=True)
    if diffraction.shape[:1] != (meta.get("n"),):
        raise DataError(f"{directory / 'diffraction.npy'}: holds {diffraction.shape[0]} patterns, meta.json says "
                        f"{meta.get('n')}: the directory is incomplete or corrupt")
    small = {key: _load_npy(directory / f"{key}.npy") for key in SMALL_KEYS if (directory / f"{key}.npy").is_file()}
    return LazyDataset(diffraction, small, str(directory))


def open_lazy_hdf5(path: str | os.PathLike, *, diffraction_key: str = "diffraction") -> LazyDataset:
    """Open a (chunked) HDF5 dataset file lazily; keys as in the NPZ format.

    The file stays open until :meth:`LazyDataset.close` (or the ``with`` block ends).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected an HDF5 dataset)")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file, truncated or corrupt ({exc})") from exc
    try:
        if not isinstance(f.get(diffraction_key), h5py.Dataset):
            raise DataError(f"{path}:/{diffraction_key}: missing HDF5 dataset (present: {sorted(f.keys())})")
        small = {}
        for key in SMALL_KEYS:
            if key in f:
                try:
                    small[key] = f[key][()]
                except (OSError, ValueError, TypeError, AttributeError) as exc:
                    raise DataError(f"{path}:/{key}: cannot read dataset ({exc})") from exc
        return LazyDataset(f[diffraction_key], small, f"{path}", closer=f)
    except BaseException:
        f.close()
        raise


def _preadable(arr: Any) -> bool:
    """A whole (not a view), C-ordered memory map of a file whose rows can be read with positional reads."""
    return (isinstance(arr, np.memmap) and isinstance(arr.base, mmap.mmap)
            and isinstance(getattr(arr, "filename", None), (str, os.PathLike)) and arr.flags.c_contiguous
            and arr.ndim == 3)


def _pread_rows(mm: np.memmap, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of the memory map ``mm`` read from its file into a new array (runs of rows in one read each)."""
    row_bytes = int(mm.dtype.itemsize * mm.shape[1] * mm.shape[2])
    unique, inverse = np.unique(idx, return_inverse=True)
    out = np.empty((len(unique), *mm.shape[1:]), dtype=mm.dtype)
    view = memoryview(out.reshape(-1).view(np.uint8))
    breaks = np.flatnonzero(np.diff(unique) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(unique)]])
    with open(mm.filename, "rb", buffering=0) as fh:
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            offset = int(mm.offset) + int(unique[a]) * row_bytes
            want = (b - a) * row_bytes
            got = os.preadv(fh.fileno(), [view[a * row_bytes : b * row_bytes]], offset)
            if got != want:
                raise OSError(f"short read: {got} of {want} bytes at offset {offset} (file truncated?)")
    if len(unique) == len(idx) and np.array_equal(unique, idx):
        return out
    return out[inverse]


def _check_small(small: Mapping[str, Any], n: int, big_n: int, source: str) -> dict[str, np.ndarray | None]:
    """Validate and convert the in-memory arrays (coordinates, probe, object) of a lazy dataset."""
    values: dict[str, np.ndarray | None] = {}
    for key in SMALL_KEYS:
        arr = small.get(key)
        if arr is None:
            values[key] = None
            continue
        arr = np.asarray(arr)
        target = np.dtype(SMALL_DTYPES[key])
        if arr.dtype.kind not in "fciub" or (target.kind != "c" and arr.dtype.kind == "c"):
            raise DataError(f"{source}: {key}: expected numeric dtype {target.name}, got {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=target)
        if target.kind != "i" and not np.all(np.isfinite(arr)):
            raise DataError(f"{source}: {key}: contains NaN or infinite values")
        values[key] = arr
    for key in ("xcoords", "ycoords", "probeGuess"):
        if values[key] is None:
            raise DataError(f"{source}: missing required array {key!r}")
    for key in ("xcoords", "ycoords", "scan_index", "xcoords_start", "ycoords_start"):
        arr = values[key]
        if arr is not None and arr.shape != (n,):
            raise DataError(f"{source}: {key}: expected shape ({n},) (one per pattern), got {arr.shape}")
    probe, obj = values["probeGuess"], values["objectGuess"]
    if probe.shape != (big_n, big_n):
        raise DataError(f"{source}: probeGuess: expected shape ({big_n}, {big_n}), got {probe.shape}")
    if obj is not None and (obj.ndim != 2 or obj.size == 0):
        raise DataError(f"{source}: objectGuess: expected a non-empty 2-D array, got shape {obj.shape}")
    return values


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: missing file of the lazy dataset")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read .npy array, truncated, corrupt or pickled ({exc})") from exc

__all__ = [  # the writers live in ptycho_data.lazy_write and are re-exported here
    "LazyDataset",
    "LazyDatasetWriter",
    "open_lazy_dataset",
    "open_lazy_hdf5",
    "save_lazy_dataset",
    "save_lazy_hdf5",
]
