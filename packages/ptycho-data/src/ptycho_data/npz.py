"""NPZ dataset I/O following the DATA-001 contract (physics.md section 2).

:func:`load_dataset` reads canonical and legacy PtychoPINN files into a
:class:`ptycho_core.contracts.Dataset`; :func:`save_dataset` writes the canonical layout.
Files are never unpickled: every member header is checked (dtype, shape, declared size)
before any array is read, and every conversion of a legacy layout is logged on the
``ptycho_data.npz`` logger. Writing is atomic and byte-reproducible (fixed zip timestamps).
"""

from __future__ import annotations

import contextlib
import logging
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_core.contracts import Dataset
from ptycho_core.errors import DataError
from ptycho_data import geometry
from ptycho_data.npzformat import ZIP_ERRORS, MemberHeader, npz_keys, read_header, write_npz

logger = logging.getLogger("ptycho_data.npz")

REQUIRED_KEYS = ("xcoords", "ycoords", "probeGuess")
OPTIONAL_KEYS = ("objectGuess", "scan_index", "xcoords_start", "ycoords_start")
LAYOUT_KEY = "diffraction_layout"
UNIT_KEY = "position_unit"
PIXEL_KEY = "pixel_size_m"
ALIASES = {
    "diffraction": ("diff", "diffraction_patterns", "patterns_amplitude"),
    "probeGuess": ("probe", "probe_guess"),
    "objectGuess": ("object", "object_guess", "obj"),
    "xcoords": ("x", "xcoord", "x_coords"),
    "ycoords": ("y", "ycoord", "y_coords"),
}
"""Other names of the DATA-001 keys, read with a log line (``diff3d`` is the legacy PtychoPINN name, handled apart)."""
POSITION_ALIASES = ("positions", "scan_positions", "coords")
"""Names of an (n, 2) array of (x, y) positions, read as ``xcoords`` and ``ycoords`` (logged)."""
LAYOUTS = ("nNN", "NNn")
DEFAULT_MAX_ARRAY_BYTES = 32 * 2**30
_TARGET = {"diffraction": np.float32, "diff3d": np.float32, "xcoords": np.float64, "ycoords": np.float64,
           "xcoords_start": np.float64, "ycoords_start": np.float64, "scan_index": np.int64,
           "probeGuess": np.complex64, "objectGuess": np.complex64}


def save_dataset(dataset: Dataset, path: str | os.PathLike, *, compress: bool = False) -> Path:
    """Save ``dataset`` in the canonical DATA-001 layout (atomic: a failure leaves no file).

    Keys written: ``diffraction`` (n, N, N) float32 amplitudes, ``xcoords``, ``ycoords``,
    ``xcoords_start``, ``ycoords_start`` (n,) float64, ``scan_index`` (n,) int64,
    ``probeGuess`` (N, N) complex64 and ``objectGuess`` (H, W) complex64 when present.

    Parameters
    ----------
    dataset : ptycho_core.contracts.Dataset
        The dataset to write.
    path : str or os.PathLike
        Output file, used as given.
    compress : bool
        Deflate the members.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    if not isinstance(dataset, Dataset):
        raise DataError(f"{path}: save_dataset expects a ptycho_core.contracts.Dataset, got {type(dataset).__name__}")
    return write_npz(path, dataset_arrays(dataset), compress=compress)


def dataset_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    """The canonical ``{key: array}`` mapping of ``dataset`` (the NPZ keys of DATA-001).

    When ``dataset.metadata`` knows the pixel size, ``pixel_size_m`` is written with
    ``position_unit = "px"`` (the positions are object pixels either way).
    """
    arrays = {
        "diffraction": dataset.diffraction,
        "xcoords": dataset.xcoords,
        "ycoords": dataset.ycoords,
        "xcoords_start": dataset.xcoords_start,
        "ycoords_start": dataset.ycoords_start,
        "scan_index": dataset.scan_index,
        "probeGuess": dataset.probe,
        # Names the layout, so a stack with n == N (e.g. 64 patterns of 64x64) is not ambiguous.
        LAYOUT_KEY: np.array("nNN"),
    }
    if dataset.object is not None:
        arrays["objectGuess"] = dataset.object
    pixel = (dataset.metadata or {}).get(PIXEL_KEY)
    if pixel is not None:
        arrays[UNIT_KEY] = np.array("px")
        arrays[PIXEL_KEY] = np.array(float(pixel), dtype=np.float64)
    return arrays


def load_dataset(
    path: str | os.PathLike,
    *,
    intensities: bool | None = None,
    max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES,
    position_unit: str | None = None,
    pixel_size_m: float | None = None,
) -> Dataset:
    """Load an NPZ dataset (canonical DATA-001 or legacy PtychoPINN layout).

    Legacy inputs converted (each logged on ``ptycho_data.npz``): key ``diff3d`` for
    ``diffraction``; layout (N, N, n) transposed to (n, N, N) when unambiguous; float64 /
    complex128 / integer arrays cast to float32 / complex64; real probes made complex.
    Optional keys default to: ``objectGuess`` None, ``scan_index`` zeros,
    ``xcoords_start``/``ycoords_start`` equal to ``xcoords``/``ycoords``.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.
    intensities : bool or None
        ``None`` (default): detected: data that look like integer photon counts (see
        :func:`looks_like_intensities`) are read as intensities (square root taken, logged as a
        warning), anything else as amplitudes (logged). ``True``: the patterns are intensities
        (counts); their square root is taken (negative counts are clipped to 0, with a warning).
        ``False``: amplitudes, no detection.
    max_array_bytes : int
        Refuse any member whose declared shape needs more bytes than this.
    position_unit : {'px', 'm'} or None
        Unit of the positions when the file has no ``position_unit`` key (a contradicting key is an error).
    pixel_size_m : float or None
        Metres per object pixel, to convert positions in metres, when the file has no ``pixel_size_m``.

    Other key names are read with a log line: see :data:`ALIASES` and :data:`POSITION_ALIASES`.
    Positions in metres (``position_unit = "m"``) are divided by the pixel size; a scan whose
    extent cannot be object pixels is an error (:func:`ptycho_data.geometry.check_scan_extent`).

    Returns
    -------
    ptycho_core.contracts.Dataset

    Raises
    ------
    ptycho_core.errors.DataError
        Naming the file and key for any file or contract problem.
    """
    path = Path(path)
    with _open_zip(path) as zf:
        present = npz_keys(zf)
        if not present:
            raise DataError(f"{path}: zip archive holds no .npy arrays, not an NPZ dataset")
        members = _apply_aliases(present, path)
        diff_key = _diffraction_key(members, path)
        xy = _read_positions_alias(zf, members, path, max_array_bytes)
        for key in REQUIRED_KEYS:
            if key not in members and not (xy is not None and key in xy):
                raise DataError(f"{path}: missing required key {key!r} (keys present: {sorted(present)})"
                                + _alias_hint(key))
        wanted = [diff_key, *REQUIRED_KEYS, *(k for k in OPTIONAL_KEYS if k in members)]
        from_file = [k for k in wanted if xy is None or k not in xy]
        headers = {key: read_header(zf, members[key], path, max_array_bytes) for key in from_file}
        if xy is not None:
            headers.update({key: MemberHeader(key, None, value.shape, value.dtype) for key, value in xy.items()})
        declared = _declared_layout(zf, members, path, max_array_bytes)
        layout = _check_layout(headers, diff_key, path, declared)
        arrays = {key: _read_member(zf, headers[key], path) for key in from_file}
        arrays.update(xy or {})
        file_unit = _scalar(zf, members, UNIT_KEY, "U", path, max_array_bytes)
        file_pixel = _scalar(zf, members, PIXEL_KEY, "f", path, max_array_bytes)
    ignored = sorted(set(present) - {members[k].filename[:-4] for k in from_file} - {LAYOUT_KEY, UNIT_KEY, PIXEL_KEY})
    if ignored:
        logger.debug("%s: ignoring keys not in DATA-001: %s", path, ignored)
    meta: dict = {"source": str(path), "warnings": []}
    diffraction = _convert_diffraction(arrays.pop(diff_key), diff_key, layout, intensities, path, meta)
    for key, arr in arrays.items():
        arrays[key] = _convert_dtype(arr, key, path)
    unit, pixel = geometry.resolve_units(None if file_unit is None else str(file_unit),
                                         None if file_pixel is None else float(file_pixel), position_unit,
                                         pixel_size_m, str(path))
    for xk, yk in (("xcoords", "ycoords"), ("xcoords_start", "ycoords_start")):
        if xk in arrays and yk in arrays:
            arrays[xk], arrays[yk] = geometry.to_pixels(arrays[xk], arrays[yk], unit, pixel,
                                                        f"{path}: keys {xk!r}, {yk!r}")
    meta.update(position_unit="px", pixel_size_m=pixel, positions_read_as=unit or "px (assumed)")
    try:
        dataset = Dataset(
            diffraction=diffraction,
            xcoords=arrays["xcoords"],
            ycoords=arrays["ycoords"],
            probe=arrays["probeGuess"],
            object=arrays.get("objectGuess"),
            scan_index=arrays.get("scan_index"),
            xcoords_start=arrays.get("xcoords_start"),
            ycoords_start=arrays.get("ycoords_start"),
            metadata=meta,
        )
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
    geometry.check_scan_extent(dataset.xcoords, dataset.ycoords, dataset.N, f"{path}: keys 'xcoords', 'ycoords'",
                               assumed=unit is None)
    if dataset.object is not None:
        check_positions_in_object(dataset.xcoords, dataset.ycoords, dataset.object.shape, dataset.N,
                                  (f"{path}: key 'xcoords'", f"{path}: key 'ycoords'"), "objectGuess")
    return dataset


def check_positions_in_object(xcoords: np.ndarray, ycoords: np.ndarray, object_shape: tuple[int, int], N: int,
                              where: tuple[str, str], object_name: str) -> None:
    """Refuse scan positions whose N x N patch would not touch the object at all.

    Positions are object pixels (pixel centres at integer coordinates); a centre more than
    ``N/2`` pixels beyond the object's edge means the coordinates are in other units or
    relative to another origin. ``where`` labels the x and y arrays in the message.

    Raises
    ------
    ptycho_core.errors.DataError
        Naming the array, the first offending value and the object's extent.
    """
    height, width = object_shape
    for label, values, size in ((where[0], xcoords, width), (where[1], ycoords, height)):
        values = np.asarray(values, dtype=np.float64)
        bad = (values < -N / 2) | (values > size - 1 + N / 2)
        if np.any(bad):
            raise DataError(
                f"{label}: {int(np.count_nonzero(bad))} of {values.size} scan positions lie outside {object_name} "
                f"(0..{size - 1} pixels, +-N/2={N // 2}), e.g. {float(values[bad][0]):.6g}; positions must be "
                "object pixel coordinates"
            )


def load_arrays(path: str | os.PathLike, keys: list[str], *, what: str = "an NPZ file",
                max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES) -> dict[str, np.ndarray]:
    """Read the arrays ``keys`` of any NPZ file with the checks of :func:`load_dataset`.

    Headers are checked before any data is read (no pickles, no declared shape above
    ``max_array_bytes``, no member shorter than its header says).

    Raises
    ------
    ptycho_core.errors.DataError
        Naming the file and key; ``what`` says what the file should have been.
    """
    path = Path(path)
    with _open_zip(path) as zf:
        members = npz_keys(zf)
        missing = [key for key in keys if key not in members]
        if missing:
            raise DataError(f"{path}: missing key {missing[0]!r} (expected {what}; keys present: {sorted(members)})")
        headers = [read_header(zf, members[key], path, max_array_bytes) for key in keys]
        return {header.key: _read_member(zf, header, path) for header in headers}


@contextlib.contextmanager
def _open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected an .npz dataset)")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise DataError(f"{path}: is a single .npy array, expected an .npz archive with keys 'diffraction', ...")
    try:
        zf = zipfile.ZipFile(path)
    except ZIP_ERRORS as exc:
        raise DataError(
            f"{path}: not a valid NPZ (zip) archive: file is truncated, corrupt or not an NPZ ({exc})"
        ) from exc
    with zf:
        yield zf


def _apply_aliases(members: dict, path: Path) -> dict:
    """``members`` plus each missing DATA-001 key mapped to the member of its first alias present (logged)."""
    out = dict(members)
    for key, aliases in ALIASES.items():
        if key in out or (key == "diffraction" and "diff3d" in out):
            continue
        alias = next((a for a in aliases if a in members), None)
        if alias is not None:
            logger.info("%s: key %r read as %r (alias)", path, alias, key)
            out[key] = members[alias]
    return out


def _alias_hint(key: str) -> str:
    names = ALIASES.get(key, ()) + (POSITION_ALIASES if key in ("xcoords", "ycoords") else ())
    return f"; also accepted under the names {', '.join(repr(n) for n in names)}" if names else ""


def _read_positions_alias(zf: zipfile.ZipFile, members: dict, path: Path, max_array_bytes: int) -> dict | None:
    """``{'xcoords': x, 'ycoords': y}`` from an (n, 2) positions array when xcoords/ycoords are missing."""
    if "xcoords" in members and "ycoords" in members:
        return None
    alias = next((a for a in POSITION_ALIASES if a in members), None)
    if alias is None:
        return None
    arr = _read_member(zf, read_header(zf, members[alias], path, max_array_bytes), path)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.dtype.kind not in "fiu":
        raise DataError(f"{path}: key {alias!r}: expected (n, 2) numeric scan positions (x, y), got {arr.dtype} "
                        f"{arr.shape}; or give 'xcoords' and 'ycoords'")
    logger.info("%s: key %r %s read as columns (x, y) -> 'xcoords', 'ycoords' (alias)", path, alias, arr.shape)
    return {"xcoords": np.ascontiguousarray(arr[:, 0], dtype=np.float64),
            "ycoords": np.ascontiguousarray(arr[:, 1], dtype=np.float64)}


def _scalar(zf: zipfile.ZipFile, members: dict, key: str, kind: str, path: Path, max_array_bytes: int) -> Any:
    """The optional scalar ``key`` (string for kind 'U', number for 'f'), None when absent."""
    if key not in members:
        return None
    value = _read_member(zf, read_header(zf, members[key], path, max_array_bytes), path)
    ok = value.shape == () and (value.dtype.kind == "U" if kind == "U" else value.dtype.kind in "fiu")
    if not ok:
        expected = "a string scalar 'px' or 'm'" if kind == "U" else "a number (metres per object pixel)"
        raise DataError(f"{path}: key {key!r}: expected {expected}, got {value.dtype} {value.shape}")
    return value[()] if kind != "U" else str(value)


def _diffraction_key(headers: dict, path: Path) -> str:
    if "diffraction" in headers:
        if "diff3d" in headers:
            logger.info("%s: both 'diffraction' and legacy 'diff3d' present; using 'diffraction'", path)
        return "diffraction"
    if "diff3d" in headers:
        logger.info("%s: legacy key 'diff3d' read as 'diffraction'", path)
        return "diff3d"
    raise DataError(f"{path}: missing required key 'diffraction' (or legacy 'diff3d', or "
                    f"{', '.join(repr(a) for a in ALIASES['diffraction'])}); keys present: {sorted(headers)}")


def _declared_layout(zf: zipfile.ZipFile, members: dict, path: Path, max_array_bytes: int) -> str | None:
    """The optional ``diffraction_layout`` key: 'nNN' (canonical) or 'NNn' (legacy); None when absent."""
    if LAYOUT_KEY not in members:
        return None
    value = _read_member(zf, read_header(zf, members[LAYOUT_KEY], path, max_array_bytes), path)
    if value.dtype.kind != "U" or value.shape != () or str(value) not in LAYOUTS:
        raise DataError(f"{path}: key {LAYOUT_KEY!r}: expected a string scalar 'nNN' or 'NNn', got {value!r}")
    return str(value)


def _check_layout(headers: dict[str, MemberHeader], diff_key: str, path: Path, declared: str | None = None) -> str:
    """Decide 'nNN' or 'NNn' from the header shapes (and the declared layout); raise on anything else."""
    shape = headers[diff_key].shape
    n = _length(headers, "xcoords", path)
    ny = _length(headers, "ycoords", path)
    if ny != n:
        raise DataError(f"{path}: key 'ycoords': expected length {n} like 'xcoords', got {ny}")
    if len(shape) != 3:
        raise DataError(f"{path}: key {diff_key!r}: expected a 3-D stack of patterns (n, N, N), got shape {shape}")
    canonical = shape[0] == n and shape[1] == shape[2]
    legacy = shape[2] == n and shape[0] == shape[1]
    if declared is not None and {"nNN": canonical, "NNn": legacy}[declared]:
        canonical, legacy = declared == "nNN", declared == "NNn"
    elif declared is not None:
        raise DataError(f"{path}: key {diff_key!r}: shape {shape} does not fit the declared {LAYOUT_KEY} "
                        f"{declared!r} for the n={n} positions of 'xcoords'")
    if canonical and legacy:
        raise DataError(
            f"{path}: key {diff_key!r}: shape {shape} is ambiguous, it fits both (n, N, N) and legacy (N, N, n) "
            f"with n={n}; add the key {LAYOUT_KEY!r} = 'nNN' or 'NNn' (ptycho's writers always do)"
        )
    if canonical:
        return "nNN"
    if legacy:
        logger.info("%s: key %r has legacy layout (N, N, n) %s; transposed to (n, N, N)", path, diff_key, shape)
        return "NNn"
    if shape[0] == n or shape[2] == n:
        raise DataError(f"{path}: key {diff_key!r}: patterns must be square (N x N), got shape {shape}")
    raise DataError(
        f"{path}: key {diff_key!r}: shape {shape} holds neither (n, N, N) nor (N, N, n) patterns for the "
        f"n={n} positions of 'xcoords' (length mismatch between patterns and coordinates)"
    )


def _length(headers: dict[str, MemberHeader], key: str, path: Path) -> int:
    shape = headers[key].shape
    if len(shape) != 1:
        raise DataError(f"{path}: key {key!r}: expected a 1-D array of scan coordinates, got shape {shape}")
    return int(shape[0])


def _read_member(zf: zipfile.ZipFile, header: MemberHeader, path: Path) -> np.ndarray:
    try:
        with zf.open(header.member) as fh:
            arr = np.lib.format.read_array(fh, allow_pickle=False)
    except ZIP_ERRORS as exc:
        raise DataError(f"{path}: key {header.key!r}: cannot read array, file is truncated or corrupt ({exc})") from exc
    if arr.shape != header.shape:
        raise DataError(f"{path}: key {header.key!r}: read shape {arr.shape}, header declared {header.shape}")
    return arr


def _convert_diffraction(arr: np.ndarray, key: str, layout: str, intensities: bool | None, path: Path,
                         meta: dict | None = None) -> np.ndarray:
    meta = {} if meta is None else meta
    if np.iscomplexobj(arr):
        raise DataError(f"{path}: key {key!r}: expected real amplitudes, got complex dtype {arr.dtype}")
    if layout == "NNn":
        arr = np.transpose(arr, (2, 0, 1))
    if intensities is None:
        reason = looks_like_intensities(arr)
        if reason:
            logger.warning("%s: key %r assumed to hold intensities (photon counts), not amplitudes: %s; took the "
                           "square root (pass --no-intensities, intensities=False, if these are amplitudes)",
                           path, key, reason)
            intensities = True
        else:
            logger.info("%s: key %r read as amplitudes sqrt(counts) (pass --intensities if they are counts)", path, key)
    meta["intensities"] = bool(intensities)
    if intensities:
        return intensities_to_amplitudes(arr, f"{path}: key {key!r}", meta)
    return _convert_dtype(arr, key, path)


def intensities_to_amplitudes(arr: np.ndarray, where: str, meta: dict) -> np.ndarray:
    """``sqrt`` of intensities as float32; negative counts are clipped to 0 (a warning in ``meta['warnings']``).

    ``meta['max_count']`` records the largest count when they are integers (for the saturation check).
    """
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{where}: expected real numeric intensities, got dtype {arr.dtype}")
    counts = arr.astype(np.float64)
    if not np.all(np.isfinite(counts)):
        raise DataError(f"{where}: intensities contain NaN or infinite values")
    negative = int(np.count_nonzero(counts < 0))
    if negative:
        text = (f"{negative} negative intensities (background-subtracted data?) clipped to 0, "
                f"the smallest {float(counts.min()):.4g}")
        logger.warning("%s: %s", where, text)
        meta.setdefault("warnings", []).append(text)
        counts = np.maximum(counts, 0.0)
    if arr.dtype.kind in "iu" or np.all(counts == np.rint(counts)):
        meta["max_count"] = int(counts.max())
    logger.info("%s: read as intensities; took the square root to get amplitudes", where)
    return np.sqrt(counts).astype(np.float32)


def _convert_dtype(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    target = _TARGET.get(key, np.float32)
    kind = np.dtype(target).kind
    if kind == "i" and arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise DataError(f"{path}: key {key!r}: expected integer values, got non-integer floats")
    elif kind == "c" and arr.dtype.kind in "fiub":
        logger.info("%s: key %r is real (%s); converted to complex64", path, key, arr.dtype)
    elif kind == "f" and arr.dtype.kind == "c":
        raise DataError(f"{path}: key {key!r}: expected real values, got complex dtype {arr.dtype}")
    if arr.dtype.kind in "fc" and arr.dtype.kind == kind and arr.dtype.itemsize > np.dtype(target).itemsize:
        logger.info("%s: key %r cast %s -> %s", path, key, arr.dtype, np.dtype(target).name)
    elif arr.dtype.kind in "iub" and kind == "f" and key in ("diffraction", "diff3d"):
        logger.info("%s: key %r cast %s -> float32", path, key, arr.dtype)
    return arr


INTENSITY_DYNAMIC_RANGE = 1000.0


def looks_like_intensities(arr: np.ndarray) -> str | None:
    """Say why ``arr`` looks like intensities (counts) rather than amplitudes, or return None.

    Conservative heuristic: all three must hold.

    1. Every value is a non-negative integer (integer dtype, or floats equal to their rounding).
       Amplitudes are square roots of counts and are almost never all integers.
    2. Large dynamic range: ``max / min(positive) >= 1000`` (detector counts span decades;
       amplitudes span the square root of that).
    3. At least half of the values above 1 have a non-integer square root (so the array is not
       the element-wise square of integer amplitudes either).

    Arrays with NaN/inf or negative values return None (the contract check reports those).
    """
    if arr.size == 0 or arr.dtype.kind not in "fiu":
        return None
    if arr.dtype.kind == "f":
        first = arr[0]
        if not np.all(np.isfinite(first)) or np.any(first != np.rint(first)):
            return None
        if not np.all(np.isfinite(arr)) or np.any(arr != np.rint(arr)):
            return None
    if np.any(arr < 0):
        return None
    positive = arr[arr > 0]
    if positive.size == 0:
        return None
    lo, hi = float(positive.min()), float(positive.max())
    if hi / lo < INTENSITY_DYNAMIC_RANGE:
        return None
    above = positive[positive > 1].astype(np.float64)
    roots = np.sqrt(above)
    non_square = float(np.mean(roots != np.rint(roots))) if above.size else 0.0
    if non_square < 0.5:
        return None
    return (
        f"all values are integers, dynamic range {hi / lo:.0f} >= {INTENSITY_DYNAMIC_RANGE:.0f} "
        f"and {100 * non_square:.0f}% of the values above 1 are not perfect squares"
    )
