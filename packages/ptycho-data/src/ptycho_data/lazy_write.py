"""Writers of lazy datasets: a ``.npy`` directory chunk by chunk, or a chunked HDF5 file.

Read them back with :func:`ptycho_data.lazy.open_lazy_dataset` /
:func:`ptycho_data.lazy.open_lazy_hdf5` (which also re-exports everything here).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ptycho_core.atomic import commit_directory, stage_directory
from ptycho_core.contracts import ALLOWED_N, Dataset
from ptycho_core.errors import DataError
from ptycho_data.npzformat import atomic_path

logger = logging.getLogger("ptycho_data.lazy")

FORMAT = "ptycho-lazy-dataset"
FORMAT_VERSION = 1
SMALL_KEYS = ("xcoords", "ycoords", "scan_index", "xcoords_start", "ycoords_start", "probeGuess", "objectGuess")
SMALL_DTYPES = {"xcoords": np.float64, "ycoords": np.float64, "scan_index": np.int64, "xcoords_start": np.float64,
                "ycoords_start": np.float64, "probeGuess": np.complex64, "objectGuess": np.complex64}


class LazyDatasetWriter:
    """Write a lazy dataset directory chunk by chunk (for data larger than memory).

    Patterns go straight to ``diffraction.npy`` (its header is fixed on :meth:`close`);
    coordinates are kept in memory. The directory appears only on a successful close;
    an exception inside ``with`` removes everything written.

    Parameters
    ----------
    directory : str or os.PathLike
        Output directory (must not exist unless ``overwrite``).
    probe : numpy.ndarray
        (N, N) probe; fixes N.
    object : numpy.ndarray, optional
        (H, W) ground-truth object.
    overwrite : bool
        Replace an existing directory.
    """

    def __init__(self, directory: str | os.PathLike, probe: np.ndarray, *, object: np.ndarray | None = None,
                 overwrite: bool = False):
        self.directory = Path(directory)
        if self.directory.exists() and not overwrite:
            raise DataError(f"{self.directory}: already exists (pass overwrite=True to replace it)")
        if not self.directory.parent.is_dir():
            raise DataError(f"{self.directory}: parent directory {self.directory.parent} does not exist")
        probe = np.asarray(probe)
        if probe.ndim != 2 or probe.shape[0] != probe.shape[1] or probe.shape[0] not in ALLOWED_N:
            raise DataError(f"{self.directory}: probeGuess: expected (N, N) with N in {ALLOWED_N}, got {probe.shape}")
        if object is not None and (np.ndim(object) != 2 or np.size(object) == 0):
            raise DataError(f"{self.directory}: objectGuess: expected a non-empty 2-D array, got {np.shape(object)}")
        self.N = int(probe.shape[0])
        self.n = 0
        self._small: dict[str, Any] = {"probeGuess": probe, "objectGuess": object}
        self._lists: dict[str, list[np.ndarray]] = {k: [] for k in SMALL_KEYS[:5]}
        self._overwrite = overwrite
        self._tmp = stage_directory(self.directory, overwrite=overwrite)
        self._fh = open(self._tmp / "diffraction.npy", "wb")  # noqa: SIM115 - closed in close()/abort()
        self._write_header()

    def _write_header(self) -> None:
        header = {"descr": "<f4", "fortran_order": False, "shape": (self.n, self.N, self.N)}
        self._fh.seek(0)
        np.lib.format.write_array_header_1_0(self._fh, header)
        if self.n == 0:
            self._data_start = self._fh.tell()
        elif self._fh.tell() != self._data_start:
            raise DataError(f"{self.directory}: diffraction.npy header grew; cannot finalise {self.n} patterns")

    def append(self, diffraction: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray, *,
               scan_index: np.ndarray | None = None, xcoords_start: np.ndarray | None = None,
               ycoords_start: np.ndarray | None = None) -> None:
        """Append a chunk of k patterns (k, N, N) amplitudes with their k coordinates."""
        chunk = np.asarray(diffraction)
        if chunk.ndim != 3 or chunk.shape[1:] != (self.N, self.N) or chunk.dtype.kind not in "fiu":
            raise DataError(f"{self.directory}: diffraction chunk: expected real (k, {self.N}, {self.N}), "
                            f"got {chunk.dtype} {chunk.shape}")
        chunk = np.ascontiguousarray(chunk, dtype="<f4")
        if not np.all(np.isfinite(chunk)) or np.any(chunk < 0):
            raise DataError(f"{self.directory}: diffraction chunk: amplitudes must be finite and >= 0")
        k = chunk.shape[0]
        extra = {"xcoords": xcoords, "ycoords": ycoords, "scan_index": scan_index,
                 "xcoords_start": xcoords_start, "ycoords_start": ycoords_start}
        for key, value in extra.items():
            if value is None:
                value = {"scan_index": np.zeros(k), "xcoords_start": xcoords, "ycoords_start": ycoords}[key]
            value = np.asarray(value)
            if value.shape != (k,) or value.dtype.kind not in "fiu":
                raise DataError(f"{self.directory}: {key} chunk: expected {k} numbers, got {value.dtype} {value.shape}")
            extra[key] = value
        self._fh.write(chunk.tobytes())
        for key, value in extra.items():
            self._lists[key].append(value)
        self.n += k

    def close(self) -> Path:
        """Finalise the header, write the small arrays and ``meta.json``, move the directory in place."""
        if self.n == 0:
            self.abort()
            raise DataError(f"{self.directory}: no patterns were appended")
        self._write_header()
        self._fh.close()
        arrays = {key: np.concatenate(parts) for key, parts in self._lists.items()}
        arrays.update({k: v for k, v in self._small.items() if v is not None})
        try:
            for key, value in arrays.items():
                np.save(self._tmp / f"{key}.npy", np.asarray(value, dtype=SMALL_DTYPES[key]), allow_pickle=False)
            meta = {"format": FORMAT, "version": FORMAT_VERSION, "n": self.n, "N": self.N, "arrays": sorted(arrays)}
            (self._tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
            commit_directory(self._tmp, self.directory, overwrite=self._overwrite)
        except BaseException:
            self.abort()
            raise
        logger.info("%s: wrote %d patterns of %dx%d", self.directory, self.n, self.N, self.N)
        return self.directory

    def abort(self) -> None:
        """Discard everything written so far."""
        self._fh.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> LazyDatasetWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def save_lazy_dataset(
    data: Dataset | Mapping[str, np.ndarray], directory: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write a dataset as a lazy directory of ``.npy`` files plus ``meta.json``.

    Parameters
    ----------
    data : Dataset or Mapping[str, numpy.ndarray]
        A :class:`Dataset`, or arrays under the NPZ key names (``diffraction``, ``xcoords``,
        ``ycoords``, ``probeGuess`` and optional ``objectGuess``, ``scan_index``,
        ``xcoords_start``, ``ycoords_start``), validated through :class:`Dataset`.
    directory : str or os.PathLike
        Output directory (created; must not exist unless ``overwrite``).
    overwrite : bool
        Replace an existing directory.

    Returns
    -------
    pathlib.Path
    """
    dataset = data if isinstance(data, Dataset) else _dataset_from_mapping(data, directory)
    with LazyDatasetWriter(directory, dataset.probe, object=dataset.object, overwrite=overwrite) as writer:
        writer.append(dataset.diffraction, dataset.xcoords, dataset.ycoords, scan_index=dataset.scan_index,
                      xcoords_start=dataset.xcoords_start, ycoords_start=dataset.ycoords_start)
    return Path(directory)


def save_lazy_hdf5(data: Any, path: str | os.PathLike, *, chunk_patterns: int = 64, batch_size: int = 256) -> Path:
    """Write a :class:`Dataset` or a :class:`~ptycho_data.lazy.LazyDataset` as a chunked HDF5 file (atomic).

    Patterns are stored in ``diffraction`` with chunks of ``chunk_patterns`` patterns; a lazy
    source is copied batch by batch, so it never needs to fit in memory.
    """
    if not (isinstance(data, Dataset) or hasattr(data, "iter_batches")):
        raise DataError(f"{path}: save_lazy_hdf5 expects a Dataset or LazyDataset, got {type(data).__name__}")
    n, big_n = int(data.diffraction.shape[0]), int(data.diffraction.shape[1])
    small = {"xcoords": data.xcoords, "ycoords": data.ycoords, "scan_index": data.scan_index,
             "xcoords_start": data.xcoords_start, "ycoords_start": data.ycoords_start, "probeGuess": data.probe,
             "objectGuess": data.object}
    with atomic_path(path, suffix=".h5.tmp") as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("diffraction", shape=(n, big_n, big_n), dtype=np.float32,
                              chunks=(max(1, min(int(chunk_patterns), n)), big_n, big_n))
        if isinstance(data, Dataset):
            ds[...] = data.diffraction
        else:
            start = 0
            for batch in data.iter_batches(None, batch_size):
                ds[start : start + len(batch)] = batch
                start += len(batch)
        for key, value in small.items():
            if value is not None:
                f.create_dataset(key, data=np.asarray(value, dtype=SMALL_DTYPES[key]))
    return Path(path)


def _dataset_from_mapping(arrays: Mapping[str, np.ndarray], where: Any) -> Dataset:
    missing = [k for k in ("diffraction", "xcoords", "ycoords", "probeGuess") if k not in arrays]
    if missing:
        raise DataError(f"{where}: missing required arrays {missing} (got keys {sorted(arrays)})")
    unknown = sorted(set(arrays) - {"diffraction", *SMALL_KEYS})
    if unknown:
        raise DataError(f"{where}: unknown keys {unknown}; expected the DATA-001 names {['diffraction', *SMALL_KEYS]}")
    try:
        return Dataset(diffraction=arrays["diffraction"], xcoords=arrays["xcoords"], ycoords=arrays["ycoords"],
                       probe=arrays["probeGuess"], object=arrays.get("objectGuess"),
                       scan_index=arrays.get("scan_index"), xcoords_start=arrays.get("xcoords_start"),
                       ycoords_start=arrays.get("ycoords_start"))
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from exc
