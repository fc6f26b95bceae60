"""Small, reproducible test fixtures cut from a larger dataset.

:func:`make_fixture` keeps ``n_positions`` scan positions spread evenly over the scanned
area, writes them in the canonical DATA-001 layout with byte-reproducible NPZ bytes
(fixed zip timestamps), and writes a JSON sidecar ``<output>.json`` recording where the
fixture came from. Same inputs -> identical bytes, on any day.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_core.contracts import Dataset
from ptycho_core.errors import DataError
from ptycho_data import __version__
from ptycho_data.npz import dataset_arrays, load_dataset
from ptycho_data.npzformat import atomic_path, write_npz

logger = logging.getLogger("ptycho_data.fixtures")

SIDECAR_FORMAT = "ptycho-fixture"
SIDECAR_VERSION = 1


def stratified_indices(positions: np.ndarray, n_positions: int, seed: int = 0) -> np.ndarray:
    """Choose ``n_positions`` scan positions covering the scanned area evenly.

    The bounding box of the positions is cut into a ``g x g`` grid with
    ``g = floor(sqrt(n_positions))`` (so there are never more occupied cells than
    positions wanted); one position is drawn from every occupied cell (cells in row-major
    order), and the remaining ones are drawn uniformly from the positions not yet chosen.
    All draws use ``numpy.random.default_rng(seed)``.

    Parameters
    ----------
    positions : numpy.ndarray
        (n, 2) scan positions (x, y).
    n_positions : int
        How many to keep, ``1 <= n_positions <= n``.
    seed : int
        Seed of the random draws.

    Returns
    -------
    numpy.ndarray
        Sorted int64 indices into ``positions``.
    """
    pos = np.asarray(positions, dtype=np.float64)
    n = pos.shape[0]
    if not isinstance(n_positions, (int, np.integer)) or not 1 <= n_positions <= n:
        raise DataError(f"n_positions: expected an integer in [1, {n}] (the dataset has {n} positions), "
                        f"got {n_positions!r}")
    g = max(1, math.isqrt(int(n_positions)))
    lo, span = pos.min(axis=0), np.ptp(pos, axis=0)
    scaled = np.divide(pos - lo, span, out=np.zeros_like(pos), where=span > 0)
    cells = np.clip(np.floor(scaled * g).astype(np.int64), 0, g - 1)
    cell_id = cells[:, 1] * g + cells[:, 0]
    rng = np.random.default_rng(seed)
    chosen = [int(rng.choice(np.flatnonzero(cell_id == c))) for c in np.unique(cell_id)]
    rest = np.setdiff1d(np.arange(n), chosen)
    extra = rng.choice(rest, size=int(n_positions) - len(chosen), replace=False)
    return np.sort(np.concatenate([np.asarray(chosen, dtype=np.int64), extra.astype(np.int64)]))


def make_fixture(source_path: str | os.PathLike, output_path: str | os.PathLike, n_positions: int,
                 seed: int = 0) -> Path:
    """Write a stratified subsample of a dataset as a canonical, reproducible NPZ fixture.

    Parameters
    ----------
    source_path : str or os.PathLike
        An NPZ dataset (any layout :func:`ptycho_data.npz.load_dataset` reads), a lazy
        dataset directory or a lazy HDF5 file (only the chosen patterns are read).
    output_path : str or os.PathLike
        The fixture ``.npz``; the sidecar goes to ``<output_path>.json``.
    n_positions : int
        Number of scan positions to keep (see :func:`stratified_indices`).
    seed : int
        Seed of the selection.

    Returns
    -------
    pathlib.Path
        ``output_path``. Sidecar keys: ``format``, ``version``, ``source``, ``source_sha256``,
        ``output``, ``output_sha256``, ``n_source``, ``n_positions``, ``seed``, ``method``,
        ``indices``, ``package``, ``package_version``.
    """
    source, output = Path(source_path), Path(output_path)
    if not source.exists():
        raise DataError(f"{source}: no such file or directory (fixture source)")
    if output.resolve() == source.resolve():
        raise DataError(f"{output}: the fixture output must differ from the source dataset")
    dataset, indices = _subsample(source, n_positions, seed)
    write_npz(output, dataset_arrays(dataset), compress=True)  # committed fixtures stay small
    sidecar = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "source": str(source),
        "source_sha256": sha256_path(source),
        "output": output.name,
        "output_sha256": sha256_path(output),
        "n_source": int(dataset.metadata["n_source"]),
        "n_positions": int(n_positions),
        "seed": int(seed),
        "method": f"stratified grid {math.isqrt(int(n_positions))}x{math.isqrt(int(n_positions))}, "
                  "one per occupied cell, rest uniform",
        "indices": [int(i) for i in indices],
        "package": "ptycho-data",
        "package_version": __version__,
    }
    with atomic_path(sidecar_path(output)) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    logger.info("%s: fixture of %d/%d positions from %s", output, len(indices), sidecar["n_source"], source)
    return output


def sidecar_path(output_path: str | os.PathLike) -> Path:
    """The JSON sidecar of a fixture: ``<output_path>.json`` (e.g. ``fixture.npz.json``)."""
    return Path(f"{output_path}.json")


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory (relative file names and contents, in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _subsample(source: Path, n_positions: Any, seed: int) -> tuple[Dataset, np.ndarray]:
    if source.is_dir() or source.suffix.lower() in (".h5", ".hdf5"):
        from ptycho_data.lazy import open_lazy_dataset, open_lazy_hdf5

        with (open_lazy_dataset(source) if source.is_dir() else open_lazy_hdf5(source)) as lazy:
            indices = _indices(lazy.positions, n_positions, seed, source)
            subset = Dataset(
                diffraction=lazy.read(indices), xcoords=lazy.xcoords[indices], ycoords=lazy.ycoords[indices],
                probe=lazy.probe, object=lazy.object, scan_index=lazy.scan_index[indices],
                xcoords_start=lazy.xcoords_start[indices], ycoords_start=lazy.ycoords_start[indices],
                metadata={"n_source": lazy.n},
            )
        return subset, indices
    full = load_dataset(source)
    indices = _indices(full.positions, n_positions, seed, source)
    subset = full.subset(indices)
    subset.metadata.update(n_source=full.n)
    return subset, indices


def _indices(positions: np.ndarray, n_positions: Any, seed: int, source: Path) -> np.ndarray:
    try:
        return stratified_indices(positions, n_positions, seed)
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from exc


#: How the committed canonical fixture was made (also in the package README)::
#:
#:     ptycho simulate --output canonical_source.npz --no-preview --seed 42 --nphotons 1e6 \
#:         --step 12 --probe-pupil-radius 8
#:     ptycho fixture canonical_source.npz canonical_fixture.npz --n-positions 64 --seed 0
#:
#: (step and pupil radius are the simulation defaults of version 0.1.0 when the fixture was made.)
CANONICAL_SIMULATION = {"seed": 42, "nphotons": 1e6, "step": 12.0, "probe_pupil_radius": 8.0}
CANONICAL_FIXTURE = {"n_positions": 64, "seed": 0}


def canonical_fixture_path() -> Path:
    """Path of the committed canonical fixture: 64 positions, N=64, from a seeded simulation.

    The integration and parity tests train and infer on it. Its sidecar
    (``canonical_fixture.npz.json`` next to it) records the indices and checksums.
    """
    path = Path(__file__).parent / "data" / "canonical_fixture.npz"
    if not path.is_file():
        raise DataError(f"{path}: the canonical fixture is missing from this ptycho-data installation")
    return path
