"""Ptychodus HDF5 product files <-> :class:`ptycho_core.contracts.Dataset`.

Product layout read and written (Ptychodus 1.x): root attributes ``name``, ``comments``,
``detector_object_distance_m``, ``probe_energy_eV``; datasets ``probe_position_indexes``,
``probe_position_x_m``, ``probe_position_y_m`` (n,); ``probe`` (modes, N, N) complex with
attributes ``pixel_width_m``/``pixel_height_m``; ``object`` (layers, H, W) complex with
attributes ``center_x_m``, ``center_y_m``, ``pixel_width_m``, ``pixel_height_m``; optional ``loss``.

Position convention (docs/conventions.md s1, object pixel centres at integer coordinates):
the object centre ``(center_x_m, center_y_m)`` lies at pixel coordinate ``((W-1)/2, (H-1)/2)``,
so ``x_px = (x_m - center_x_m) / pixel_width_m + (W - 1) / 2`` and likewise for y with H.
This is Ptychodus' centred-pixel convention (its ``ObjectGeometry.map_coordinates_probe_to_object``).

Diffraction patterns live in a separate file (NPZ or HDF5): ``diffraction`` (amplitudes) or
Ptychodus-style ``patterns``/``data`` (intensities, square-rooted with a log line), with an
optional ``indexes`` array matching ``probe_position_indexes``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ptycho_core.contracts import Dataset, Reconstruction
from ptycho_core.errors import DataError
from ptycho_data.hdf5_patterns import h5_dataset, h5_read, load_patterns, open_h5, write_patterns
from ptycho_data.npz import check_positions_in_object
from ptycho_data.npzformat import atomic_path

logger = logging.getLogger("ptycho_data.hdf5")

_MAX_BYTES = 32 * 2**30


def pixels_to_metres(px: np.ndarray, center_m: float, pixel_m: float, size: int) -> np.ndarray:
    """Object-pixel coordinates -> metres: ``center_m + pixel_m * (px - (size - 1) / 2)``."""
    return center_m + pixel_m * (np.asarray(px, dtype=np.float64) - (size - 1) / 2)


def metres_to_pixels(m: np.ndarray, center_m: float, pixel_m: float, size: int) -> np.ndarray:
    """Metres -> object-pixel coordinates: ``(m - center_m) / pixel_m + (size - 1) / 2``."""
    return (np.asarray(m, dtype=np.float64) - center_m) / pixel_m + (size - 1) / 2


def read_product(
    product_path: str | os.PathLike, diffraction_path: str | os.PathLike, *, max_array_bytes: int = _MAX_BYTES
) -> Dataset:
    """Read a Ptychodus product file and its diffraction patterns into a :class:`Dataset`.

    Parameters
    ----------
    product_path : str or os.PathLike
        The product ``.h5`` file (positions in metres, probe, object with pixel geometry).
    diffraction_path : str or os.PathLike
        NPZ or HDF5 file holding the patterns (see module docstring).
    max_array_bytes : int
        Refuse pattern arrays whose declared shape needs more bytes than this.

    Returns
    -------
    ptycho_core.contracts.Dataset
        Positions in object pixels of the product's object; ``object`` is its first layer,
        ``probe`` its first mode; ``metadata['ptychodus']`` keeps the product attributes.

    Raises
    ------
    ptycho_core.errors.DataError
        Naming the file and HDF5 path (``file:/dataset`` or ``file:/dataset@attribute``).
    """
    product_path = Path(product_path)
    with open_h5(product_path) as f:
        meta = _root_attrs(f, product_path)
        obj_ds = h5_dataset(f, "object", product_path)
        geometry = {
            key: _float_attr(obj_ds, key, product_path)
            for key in ("center_x_m", "center_y_m", "pixel_width_m", "pixel_height_m")
        }
        for key in ("pixel_width_m", "pixel_height_m"):
            if not geometry[key] > 0:
                raise DataError(f"{product_path}:/object@{key}: expected a positive pixel size, got {geometry[key]}")
        obj = _first_slices(h5_read(obj_ds, product_path), 2, "object", product_path)
        probe_ds = h5_dataset(f, "probe", product_path)
        for key in ("pixel_width_m", "pixel_height_m"):
            value = _float_attr(probe_ds, key, product_path, default=geometry[key])
            if not np.isclose(value, geometry[key], rtol=1e-6, atol=0.0):
                raise DataError(
                    f"{product_path}:/probe@{key}: probe pixel size {value} differs from the object's "
                    f"{geometry[key]}; the probe must be sampled on the object pixel grid"
                )
        probe = _first_slices(h5_read(probe_ds, product_path), 2, "probe", product_path)
        x_m = h5_read(h5_dataset(f, "probe_position_x_m", product_path), product_path)
        y_m = h5_read(h5_dataset(f, "probe_position_y_m", product_path), product_path)
        if "probe_position_indexes" in f:
            indexes = h5_read(h5_dataset(f, "probe_position_indexes", product_path), product_path)
        else:
            indexes = np.arange(np.size(x_m))
        for name, arr in (("probe_position_y_m", y_m), ("probe_position_indexes", indexes)):
            if np.ndim(arr) != 1 or np.ndim(x_m) != 1 or arr.shape != x_m.shape:
                raise DataError(
                    f"{product_path}:/{name}: expected shape {np.shape(x_m)} like /probe_position_x_m, got {arr.shape}"
                )
        if indexes.dtype.kind not in "iu":
            raise DataError(f"{product_path}:/probe_position_indexes: expected integers, got dtype {indexes.dtype}")
    amplitudes, pattern_indexes = load_patterns(diffraction_path, max_array_bytes=max_array_bytes)
    rows = _match_patterns(indexes, pattern_indexes, amplitudes.shape[0], Path(diffraction_path))
    height, width = obj.shape
    xcoords = metres_to_pixels(x_m, geometry["center_x_m"], geometry["pixel_width_m"], width)
    ycoords = metres_to_pixels(y_m, geometry["center_y_m"], geometry["pixel_height_m"], height)
    check_positions_in_object(xcoords, ycoords, obj.shape, probe.shape[-1],
                              (f"{product_path}:/probe_position_x_m", f"{product_path}:/probe_position_y_m"),
                              "/object (check the units, metres, and the pixel size)")
    meta.update(geometry, probe_position_indexes=indexes.astype(np.int64))
    try:
        return Dataset(
            diffraction=amplitudes[rows],
            xcoords=xcoords,
            ycoords=ycoords,
            probe=probe,
            object=obj,
            metadata={"source": str(product_path), "diffraction_source": str(diffraction_path), "ptychodus": meta},
        )
    except DataError as exc:
        raise DataError(f"{product_path} (patterns {diffraction_path}): {exc}") from exc


def write_product(
    path: str | os.PathLike,
    reconstruction_object: np.ndarray | Reconstruction,
    dataset: Dataset,
    pixel_size_m: float | tuple[float, float],
    *,
    origin: tuple[float, float] | None = None,
    probe: np.ndarray | None = None,
    center_m: tuple[float, float] = (0.0, 0.0),
    name: str = "ptycho reconstruction",
    comments: str = "",
    detector_object_distance_m: float = 0.0,
    probe_energy_eV: float = 0.0,
    loss: np.ndarray | None = None,
) -> Path:
    """Write a reconstruction as a Ptychodus product file (atomic).

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.h5`` file.
    reconstruction_object : numpy.ndarray or ptycho_core.contracts.Reconstruction
        (H, W) or (layers, H, W) complex object; a Reconstruction also gives ``origin``.
    dataset : ptycho_core.contracts.Dataset
        Supplies scan positions (object pixels) and, by default, the probe.
    pixel_size_m : float or (float, float)
        Object pixel size in metres, or ``(width, height)``.
    origin : (float, float), optional
        Object-pixel coordinate ``(x0, y0)`` of array pixel [0, 0]; default the
        Reconstruction's origin, else ``(0, 0)``. Positions are written relative to it.
    probe : numpy.ndarray, optional
        (N, N) or (modes, N, N) probe; default ``dataset.probe``.
    center_m : (float, float)
        ``center_x_m``, ``center_y_m`` of the object.
    name, comments, detector_object_distance_m, probe_energy_eV
        Root attributes.
    loss : numpy.ndarray, optional
        1-D loss history, written as dataset ``loss``.

    Returns
    -------
    pathlib.Path
    """
    if isinstance(reconstruction_object, Reconstruction):
        origin = reconstruction_object.origin if origin is None else origin
        reconstruction_object = reconstruction_object.object
    x0, y0 = (0.0, 0.0) if origin is None else (float(origin[0]), float(origin[1]))
    obj = np.asarray(reconstruction_object)
    if obj.dtype.kind not in "fciu" or obj.ndim not in (2, 3) or obj.size == 0:
        raise DataError(f"{path}: reconstruction_object: expected a numeric (H, W) or (layers, H, W) array, "
                        f"got {obj.dtype} {obj.shape}")
    obj = obj.reshape((-1, *obj.shape[-2:])).astype(np.complex64)
    pw, ph = (pixel_size_m, pixel_size_m) if np.isscalar(pixel_size_m) else tuple(pixel_size_m)
    if not (np.isfinite(pw) and np.isfinite(ph) and pw > 0 and ph > 0):
        raise DataError(f"{path}: pixel_size_m: expected positive finite metres, got {pixel_size_m!r}")
    probe_arr = np.asarray(dataset.probe if probe is None else probe).astype(np.complex64)
    probe_arr = probe_arr.reshape((-1, *probe_arr.shape[-2:]))
    loss_arr = None if loss is None else np.asarray(loss)
    if loss_arr is not None and (loss_arr.ndim != 1 or loss_arr.dtype.kind not in "fiu"):
        raise DataError(f"{path}: loss: expected a 1-D numeric array, got {loss_arr.dtype} {loss_arr.shape}")
    loss_arr = None if loss_arr is None else loss_arr.astype(np.float64)
    _, height, width = obj.shape
    x_m = pixels_to_metres(dataset.xcoords - x0, center_m[0], float(pw), width)
    y_m = pixels_to_metres(dataset.ycoords - y0, center_m[1], float(ph), height)
    with atomic_path(path, suffix=".h5.tmp") as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update({"name": name, "comments": comments, "detector_object_distance_m": float(
            detector_object_distance_m), "probe_energy_eV": float(probe_energy_eV)})
        f.create_dataset("probe_position_indexes", data=np.arange(dataset.n, dtype=np.int64))
        f.create_dataset("probe_position_x_m", data=x_m)
        f.create_dataset("probe_position_y_m", data=y_m)
        h5_probe = f.create_dataset("probe", data=probe_arr)
        h5_probe.attrs.update({"pixel_width_m": float(pw), "pixel_height_m": float(ph)})
        h5_obj = f.create_dataset("object", data=obj)
        h5_obj.attrs.update({"center_x_m": float(center_m[0]), "center_y_m": float(center_m[1]),
                             "pixel_width_m": float(pw), "pixel_height_m": float(ph)})
        f.create_dataset("object_layer_spacing_m", data=np.zeros(obj.shape[0] - 1, dtype=np.float64))
        if loss_arr is not None:
            f.create_dataset("loss", data=loss_arr)
    return Path(path)


def _float_attr(ds: h5py.Dataset, key: str, path: Path, default: float | None = None) -> float:
    if key not in ds.attrs:
        if default is not None:
            return default
        raise DataError(f"{path}:{ds.name}@{key}: missing required HDF5 attribute")
    try:
        value = float(np.asarray(ds.attrs[key]).reshape(()))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}:{ds.name}@{key}: expected a number, got {ds.attrs[key]!r}") from exc
    if not np.isfinite(value):
        raise DataError(f"{path}:{ds.name}@{key}: expected a finite number, got {value}")
    return value


def _first_slices(arr: np.ndarray, ndim: int, name: str, path: Path) -> np.ndarray:
    """Reduce (..., H, W) to (H, W) by taking index 0 of the leading axes (logged when they hold more)."""
    if arr.ndim < ndim or arr.ndim > ndim + 2 or 0 in arr.shape:
        raise DataError(f"{path}:/{name}: expected 2 to 4 dimensions (..., H, W), got shape {arr.shape}")
    if arr.ndim > ndim and int(np.prod(arr.shape[:-ndim])) > 1:
        logger.info("%s:/%s has shape %s; using the first mode/layer only", path, name, arr.shape)
    return arr.reshape((-1, *arr.shape[-ndim:]))[0]


def _match_patterns(indexes: np.ndarray, pattern_indexes: np.ndarray | None, n_patterns: int, path: Path) -> np.ndarray:
    if pattern_indexes is None:
        rows = indexes.astype(np.int64)
        bad = (rows < 0) | (rows >= n_patterns)
        if np.any(bad):
            raise DataError(
                f"{path}: probe_position_indexes {rows[bad][:5].tolist()} are outside the {n_patterns} patterns"
            )
        return rows
    lookup = {int(v): i for i, v in enumerate(pattern_indexes)}
    missing = [int(v) for v in indexes if int(v) not in lookup]
    if missing:
        raise DataError(f"{path}: indexes has no pattern for probe_position_indexes {missing[:5]}")
    return np.array([lookup[int(v)] for v in indexes], dtype=np.int64)


def _root_attrs(f: h5py.File, path: Path) -> dict[str, Any]:
    meta = {}
    for key in f.attrs:
        try:
            meta[key] = _plain(f.attrs[key])
        except (OSError, TypeError, ValueError) as exc:
            logger.info("%s:/@%s: attribute not readable, skipped (%s)", path, key, exc)
    return meta


def _plain(value: Any) -> Any:
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


__all__ = ["load_patterns", "metres_to_pixels", "pixels_to_metres", "read_product", "write_patterns", "write_product"]
