"""One reader for every supported input, chosen by the file's content (never by its extension).

:func:`open_dataset` is what every ``ptycho`` command reads data with
(:func:`ptycho.workflow.load_dataset` calls it):

========================================  =========================================================
input                                     recognised by
========================================  =========================================================
canonical or legacy PtychoPINN NPZ        zip magic bytes (:func:`ptycho_data.npz.load_dataset`)
lazy dataset directory                    a directory holding ``meta.json`` (:mod:`ptycho_data.lazy`)
lazy HDF5 dataset                         HDF5 with a ``/diffraction`` dataset
Ptychodus product + its patterns file     HDF5 with ``/probe_position_x_m`` (``diffraction_file`` option)
generic detector HDF5                     the ``patterns``, ``x``, ``y`` options (HDF5 paths)
========================================  =========================================================

Options that a format does not use are an error (a flag that would be silently ignored).
Whatever the format, the result is in object pixels and a scan whose extent cannot be pixels is
refused (:func:`ptycho_data.geometry.check_scan_extent`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import h5py
import numpy as np

from ptycho_core.config import ReadOptions
from ptycho_core.contracts import ALLOWED_N, Dataset
from ptycho_core.errors import ConfigError, DataError
from ptycho_data import geometry, npz
from ptycho_data.hdf5_patterns import open_h5
from ptycho_data.npzformat import npz_keys

logger = logging.getLogger("ptycho_data.readers")

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
UNIT_SCALE = {"m": 1.0, "metre": 1.0, "meter": 1.0, "metres": 1.0, "meters": 1.0, "mm": 1e-3, "um": 1e-6,
              "µm": 1e-6, "micron": 1e-6, "microns": 1e-6, "nm": 1e-9}
"""HDF5 ``units`` attribute values of positions in length units, as metres per unit."""
PIXEL_UNITS = ("px", "pixel", "pixels")
DETECTOR_CHUNK = 256
"""Patterns read at once from a generic detector file."""

_FLAGS = {"intensities": "--intensities/--no-intensities", "position_unit": "--position-unit",
          "pixel_size_m": "--pixel-size", "diffraction_file": "--diffraction-file", "patterns": "--patterns",
          "x": "--x", "y": "--y", "probe": "--probe"}


def detect_format(path: str | os.PathLike) -> str:
    """``'npz'``, ``'lazy-dir'``, ``'lazy-hdf5'``, ``'ptychodus-product'`` or ``'hdf5'`` (other HDF5), by content.

    Raises
    ------
    ptycho_core.errors.DataError
        No such file, a single ``.npy`` array, or an unknown format.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "meta.json").is_file():
            return "lazy-dir"
        raise DataError(f"{path}: a directory without meta.json, not a lazy dataset directory")
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic.startswith(ZIP_MAGIC) or magic.startswith(b"PK\x05\x06"):
        return "npz"
    if magic == HDF5_MAGIC:
        with open_h5(path) as f:
            if isinstance(f.get("probe_position_x_m"), h5py.Dataset):
                return "ptychodus-product"
            if isinstance(f.get("diffraction"), h5py.Dataset):
                return "lazy-hdf5"
        return "hdf5"
    if magic.startswith(NPY_MAGIC):
        raise DataError(f"{path}: a single .npy array, not a dataset; put the patterns, positions and probe in one "
                        "NPZ file (keys 'diffraction', 'xcoords', 'ycoords', 'probeGuess')")
    raise DataError(f"{path}: not a supported data file (expected an NPZ archive, an HDF5 file or a lazy dataset "
                    f"directory; the file starts with {magic!r})")


def _refuse_unused(options: ReadOptions, used: tuple[str, ...], path: Path, kind: str) -> None:
    unused = [name for name in _FLAGS if name not in used and getattr(options, name) is not None]
    if unused:
        flags = ", ".join(_FLAGS[n] for n in unused)
        raise DataError(f"{path}: is {kind}, which does not use {flags}; drop "
                        f"{'it' if len(unused) == 1 else 'them'} (see docs/data-format.md, 'Bring your own data')")


def load_dataset(path: str | os.PathLike | None, what: str, options: ReadOptions | None = None) -> Any:
    """:func:`open_dataset` for the input a command or config names as ``what`` (e.g. ``"train_data_file"``).

    Gives a :class:`~ptycho_core.errors.ConfigError` naming ``what`` when no path is given and a
    :class:`~ptycho_core.errors.DataError` when the path does not exist; otherwise the dataset as
    :func:`open_dataset` reads it (in memory, or lazily for lazy storage; positions in object pixels).
    """
    if path is None:
        raise ConfigError(f"{what}: no data file given (set it in the config or pass --{what.replace('_', '-')})")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such data file ({what})")
    return open_dataset(path, options)


def open_dataset(path: str | os.PathLike, options: ReadOptions | None = None) -> Any:
    """Read any supported input (see the module docstring) as a Dataset, or a LazyDataset for lazy storage.

    Parameters
    ----------
    path : str or os.PathLike
        The file or lazy dataset directory.
    options : ptycho_core.config.ReadOptions, optional
        What the file does not say itself (units, pixel size, intensities, HDF5 paths, ...).

    Returns
    -------
    ptycho_core.contracts.Dataset or ptycho_data.lazy.LazyDataset
        Positions in object pixels; ``metadata['format']`` names the format read.

    Raises
    ------
    ptycho_core.errors.DataError
        Naming the file and key (or HDF5 path) and what was expected; also for options the format does not use.
    """
    from ptycho_data import lazy

    options = options or ReadOptions()
    path = Path(path)
    if options.patterns is not None:
        kind = "detector"
        if detect_format(path) not in ("hdf5", "lazy-hdf5", "ptychodus-product"):
            raise DataError(f"{path}: --patterns/--x/--y name datasets of an HDF5 file, but this is not HDF5")
    else:
        kind = detect_format(path)
    if kind == "npz":
        _refuse_unused(options, ("intensities", "position_unit", "pixel_size_m"), path, "an NPZ dataset")
        ds = npz.load_dataset(path, intensities=options.intensities, position_unit=options.position_unit,
                              pixel_size_m=options.pixel_size_m)
    elif kind in ("lazy-dir", "lazy-hdf5"):
        _refuse_unused(options, (), path, "a lazy dataset (amplitudes in object pixels by format)")
        ds = lazy.open_lazy_dataset(path) if kind == "lazy-dir" else lazy.open_lazy_hdf5(path)
        try:
            geometry.check_scan_extent(ds.xcoords, ds.ycoords, ds.N, f"{path}: xcoords, ycoords", assumed=False)
        except BaseException:
            ds.close()
            raise
        ds.metadata = {"source": str(path)}
    elif kind == "ptychodus-product":
        ds = read_ptychodus_product(path, options)
    elif kind == "detector":
        ds = read_detector_hdf5(path, options)
    else:
        with open_h5(path) as f:
            found = _list_datasets(f)
        raise DataError(
            f"{path}: an HDF5 file of no known layout (datasets: {', '.join(found[:12]) or 'none'}): for a detector "
            "file name its datasets with --patterns /entry/data/data --x PATH --y PATH (and --probe); for a "
            "Ptychodus product the file needs /probe_position_x_m; a ptycho lazy HDF5 file has /diffraction")
    ds.metadata["format"] = kind
    return ds


def read_ptychodus_product(path: Path, options: ReadOptions) -> Dataset:
    """A Ptychodus product file plus ``options.diffraction_file`` (:func:`ptycho_data.hdf5.read_product`)."""
    from ptycho_data.hdf5 import read_product

    _refuse_unused(options, ("diffraction_file",), path,
                   "a Ptychodus product (positions in metres with the object's pixel size, intensities in its "
                   "patterns file)")
    if options.diffraction_file is None:
        raise DataError(f"{path}: is a Ptychodus product file (positions, probe, object); its diffraction patterns "
                        "are in a separate file: pass --diffraction-file PATTERNS.h5")
    ds = read_product(path, options.diffraction_file)
    geo = ds.metadata.get("ptychodus", {})
    width, height = geo.get("pixel_width_m"), geo.get("pixel_height_m")
    if width is not None and np.isclose(width, height, rtol=1e-6):
        ds.metadata["pixel_size_m"] = float(width)
    ds.metadata["positions_read_as"] = "m"
    geometry.check_scan_extent(ds.xcoords, ds.ycoords, ds.N, f"{path}:/probe_position_x_m, /probe_position_y_m",
                               assumed=False)
    return ds


def _list_datasets(f: h5py.File) -> list[str]:
    found: list[str] = []
    f.visititems(lambda name, obj: found.append(f"/{name} {obj.shape}") if isinstance(obj, h5py.Dataset) else None)
    return found


def _h5(f: h5py.File, name: str, path: Path, option: str) -> h5py.Dataset:
    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        found = _list_datasets(f)
        raise DataError(f"{path}:{name if name.startswith('/') else '/' + name}: no such HDF5 dataset ({option}); "
                        f"datasets in the file: {', '.join(found[:12]) or 'none'}")
    return obj


def _position_unit(ds: h5py.Dataset, path: Path) -> tuple[str | None, float]:
    """(``'m'``/``'px'``/None, factor to metres) from the dataset's ``units`` attribute."""
    if "units" not in ds.attrs:
        return None, 1.0
    raw = ds.attrs["units"]
    text = (raw.decode() if isinstance(raw, bytes) else str(np.asarray(raw).reshape(-1)[0] if np.ndim(raw) else raw))
    text = text.strip().lower()
    if text in UNIT_SCALE:
        return "m", UNIT_SCALE[text]
    if text in PIXEL_UNITS:
        return "px", 1.0
    raise DataError(f"{path}:{ds.name}@units: unknown unit {text!r} (expected one of "
                    f"{', '.join(list(UNIT_SCALE) + list(PIXEL_UNITS))}); pass --position-unit")


def _read_probe(f: h5py.File, path: Path, spec: str | None, N: int) -> np.ndarray:
    from ptycho_data.hdf5 import _first_slices

    if spec is None:
        raise DataError(f"{path}: a detector file holds no probe, and the model needs one on the object pixel grid: "
                        "pass --probe with an HDF5 path in this file or an .npy/.npz file (key probeGuess)")
    if spec in f:
        arr = np.asarray(_h5(f, spec, path, "--probe")[()])
        where = f"{path}:{spec}"
    else:
        probe_path = Path(spec)
        if not probe_path.is_file():
            raise DataError(f"--probe {spec}: neither a dataset of {path} nor a file")
        where = str(probe_path)
        with open(probe_path, "rb") as fh:
            magic = fh.read(6)
        if magic == NPY_MAGIC:
            try:
                arr = np.load(probe_path, allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise DataError(f"{probe_path}: cannot read the probe .npy ({exc})") from exc
        else:
            with npz._open_zip(probe_path) as zf:
                keys = npz_keys(zf)
            key = next((k for k in ("probeGuess", "probe") if k in keys), "probeGuess")
            arr = npz.load_arrays(probe_path, [key], what="a probe (key probeGuess)")[key]
    if arr.dtype.kind not in "fc":
        raise DataError(f"{where}: expected a real or complex probe, got dtype {arr.dtype}")
    probe = _first_slices(arr, 2, where.rsplit(":", 1)[-1].lstrip("/"), Path(where.split(":")[0]))
    if probe.shape != (N, N):
        raise DataError(f"{where}: expected a {N} x {N} probe like the patterns, got shape {probe.shape}")
    return probe.astype(np.complex64)


@attrs.frozen
class DetectorSource:
    """The parts of a generic detector HDF5 file: pattern stack (read in chunks), positions in pixels, probe."""

    patterns: h5py.Dataset
    xcoords: np.ndarray
    ycoords: np.ndarray
    probe: np.ndarray
    intensities: bool
    metadata: dict

    def chunks(self, size: int = DETECTOR_CHUNK) -> Iterator[tuple[slice, np.ndarray]]:
        """``(rows, amplitudes)`` blocks of at most ``size`` patterns, float32 amplitudes."""
        n = self.patterns.shape[0]
        for start in range(0, n, size):
            rows = slice(start, min(start + size, n))
            where = f"{self.metadata['source']}:{self.patterns.name}[{rows.start}:{rows.stop}]"
            try:
                block = np.asarray(self.patterns[rows])
            except (OSError, ValueError, TypeError) as exc:
                raise DataError(f"{where}: cannot read patterns, file is truncated or corrupt ({exc})") from exc
            if self.intensities:
                amps = npz.intensities_to_amplitudes(block, where, self.metadata)
            else:
                if block.dtype.kind not in "fiu" or not np.all(np.isfinite(block)) or np.any(block < 0):
                    raise DataError(f"{where}: amplitudes must be finite real numbers >= 0")
                amps = block.astype(np.float32)
            yield rows, amps


@contextlib.contextmanager
def detector_source(path: Path, options: ReadOptions) -> Iterator[DetectorSource]:
    """Open a generic detector HDF5 file described by ``options`` (patterns, x, y, probe, units)."""
    _refuse_unused(options, ("intensities", "position_unit", "pixel_size_m", "patterns", "x", "y", "probe"), path,
                   "a generic detector HDF5 file")
    with open_h5(path) as f:
        pat = _h5(f, options.patterns, path, "--patterns")
        if pat.ndim != 3 or pat.shape[1] != pat.shape[2] or pat.shape[1] not in ALLOWED_N or pat.shape[0] == 0:
            raise DataError(f"{path}:{pat.name}: expected a stack of n square N x N patterns with N in {ALLOWED_N} "
                            f"(zero frequency at the centre), got shape {pat.shape}; crop the detector frames first")
        if pat.dtype.kind not in "fiu":
            raise DataError(f"{path}:{pat.name}: expected real numeric patterns, got dtype {pat.dtype}")
        n, N = pat.shape[0], pat.shape[1]
        coords = {}
        units = set()
        for axis, name in (("x", options.x), ("y", options.y)):
            ds = _h5(f, name, path, f"--{axis}")
            arr = np.asarray(ds[()])
            if arr.shape != (n,) or arr.dtype.kind not in "fiu":
                raise DataError(f"{path}:{ds.name}: expected {n} numbers (one {axis} position per pattern of "
                                f"{pat.name}), got {arr.dtype} {arr.shape}")
            unit, factor = _position_unit(ds, path)
            units.add(unit)
            coords[axis] = arr.astype(np.float64) * factor
        if len(units) > 1:
            raise DataError(f"{path}: {options.x} and {options.y} have different units attributes")
        file_unit = units.pop()
        unit, pixel = geometry.resolve_units(file_unit, None, options.position_unit, options.pixel_size_m, str(path))
        x, y = geometry.to_pixels(coords["x"], coords["y"], unit, pixel, f"{path}:{options.x}, {options.y}")
        geometry.check_scan_extent(x, y, N, f"{path}:{options.x}, {options.y}", assumed=unit is None)
        intensities = True if options.intensities is None else options.intensities
        if options.intensities is None:
            logger.info("%s:%s: detector frames assumed to be intensities (counts); taking the square root "
                        "(pass --no-intensities if they are amplitudes)", path, pat.name)
        probe = _read_probe(f, path, options.probe, N)
        meta = {"source": str(path), "pixel_size_m": pixel, "positions_read_as": unit or "px (assumed)",
                "intensities": intensities, "warnings": [], "format": "detector"}
        yield DetectorSource(patterns=pat, xcoords=x, ycoords=y, probe=probe, intensities=intensities, metadata=meta)


def read_detector_hdf5(path: Path, options: ReadOptions) -> Dataset:
    """A generic detector HDF5 file, read whole into a :class:`Dataset` (see :func:`detector_source`)."""
    with detector_source(path, options) as src:
        amps = np.empty(src.patterns.shape, dtype=np.float32)
        for rows, block in src.chunks():
            amps[rows] = block
        try:
            return Dataset(diffraction=amps, xcoords=src.xcoords, ycoords=src.ycoords, probe=src.probe,
                           metadata=dict(src.metadata))
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from exc
