"""Low-level NPZ format helpers: atomic, reproducible writing and header-only inspection.

Shared by :mod:`ptycho_data.npz`, :mod:`ptycho_data.fixtures`, :mod:`ptycho_data.lazy` and
:mod:`ptycho_data.hdf5`. Nothing here unpickles: object dtypes are refused from the header.
"""

from __future__ import annotations

import contextlib
import os
import tokenize
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from ptycho_core.atomic import atomic_file
from ptycho_core.errors import DataError

ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
# What reading a damaged, encrypted or exotic zip member can raise (RuntimeError: encrypted,
# NotImplementedError: unknown compression method, SyntaxError/TokenError: mangled .npy header).
ZIP_ERRORS = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, RuntimeError, NotImplementedError,
              zipfile.BadZipFile, zlib.error)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` (``ptycho_core.atomic``).

    If the block raises, the temporary file is removed and ``path`` is left untouched. The
    file gets the umask's mode (0644 with umask 022). ``suffix`` is kept for callers; the
    temporary always ends in the suffixes of ``path``.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise DataError(f"{target}: parent directory {target.parent} does not exist")
    with atomic_file(target) as tmp:
        yield tmp


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, compress: bool = False) -> Path:
    """Write ``arrays`` as an NPZ archive, atomically and byte-for-byte reproducibly.

    Members are ``<key>.npy`` in the given order with a fixed timestamp (1980-01-01), so
    the same arrays always give the same bytes. Object arrays are refused.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (used as given; no ``.npz`` suffix is added).
    arrays : Mapping[str, numpy.ndarray]
        Arrays to store.
    compress : bool
        Deflate the members (``np.savez_compressed``-style) instead of storing them.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=method, allowZip64=True) as zf:
            for key, value in arrays.items():
                arr = np.asarray(value)
                if arr.dtype.hasobject:
                    raise DataError(f"{path}: key {key!r}: object arrays cannot be saved (pickle is never used)")
                info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_DATE_TIME)
                info.compress_type = method
                info.create_system = 3
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
    return Path(path)



class MemberHeader:
    """Shape and dtype of one ``<key>.npy`` member, read from its header without loading data."""

    def __init__(self, key: str, member: zipfile.ZipInfo, shape: tuple[int, ...], dtype: np.dtype):
        self.key, self.member, self.shape, self.dtype = key, member, shape, dtype


def npz_keys(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The array keys of an NPZ archive (``<key>.npy`` member names) mapped to their zip entries."""
    return {info.filename[:-4]: info for info in zf.infolist() if info.filename.endswith(".npy")}


def read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, max_array_bytes: int) -> MemberHeader:
    """Read one ``.npy`` member header and check dtype and declared size (no array data is read).

    Raises :class:`DataError` naming the file and key for a corrupt header, an object
    (pickled) array, a declared shape larger than ``max_array_bytes`` and a member too
    short for its declared shape.
    """
    key = info.filename[:-4]
    try:
        with zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            data_start = fh.tell()
    except ZIP_ERRORS as exc:
        raise DataError(f"{path}: key {key!r}: invalid .npy header, file is corrupt ({exc})") from exc
    if dtype.hasobject:
        raise DataError(
            f"{path}: key {key!r}: object array (dtype {dtype}) refused: pickled data is never loaded; "
            "store a numeric array instead"
        )
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else dtype.itemsize
    if nbytes > max_array_bytes:
        raise DataError(
            f"{path}: key {key!r}: declared shape {shape} needs {nbytes} bytes, more than max_array_bytes="
            f"{max_array_bytes}; refusing to load"
        )
    if info.file_size < data_start + nbytes:
        raise DataError(
            f"{path}: key {key!r}: declared shape {shape} {dtype} needs {nbytes} bytes but the member holds "
            f"{info.file_size - data_start}: file is truncated or corrupt"
        )
    return MemberHeader(key, info, tuple(int(s) for s in shape), dtype)
