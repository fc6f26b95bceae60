"""Neighbour grouping: turn a scan into network-ready groups of C = gridsize**2 patterns.

physics.md section 6 and docs/conventions.md:

- gridsize 1: every group is one pattern, its centroid is the scan position and its
  offset is zero. ``n_groups=None`` keeps every pattern once, in scan order; a smaller
  ``n_groups`` draws that many distinct patterns (seeded) and keeps them in scan order.
- gridsize > 1: a KD-tree (:class:`scipy.spatial.cKDTree`) gives the K = ``neighbor_count``
  nearest *other* scan positions of each seed point (the seed itself not counted). Every
  group is the seed plus C - 1 of those K others drawn at random (seeded), so with K > C - 1
  neighbouring seeds give groups of different shapes. Channel order: the seed first, then the
  other members by increasing distance to the seed (ties in the KD-tree's order).
  ``n_groups=None`` uses every scan position once as a seed (in scan order); a smaller
  ``n_groups`` draws distinct seeds. Requires C - 1 <= K <= n - 1. The default K = 8 is the
  4 side and 4 diagonal neighbours on a raster: "8 choose 3" = 56 possible groups per seed
  at gridsize 2, inside the raster each within one diagonal step of the seed (at its edges
  the 8 nearest reach two steps along the edge).
- ``oversample=True`` (gridsize > 1, with ``n_groups`` given) draws the groups from all
  distinct groups of the form seed + (C - 1 of its K others), over every seed, instead, so
  there can be more groups than scan positions; no group (as a set of patterns) appears
  twice. Channel order as above (the seed of the first listing of that set first). With
  ``n_groups=None`` it changes nothing.

Relative offsets are ``position - group centroid`` as (x, y), so they sum to zero per group.
The same seed always gives the same groups. Amplitudes are multiplied by the dataset
normalisation factor of :func:`ptycho_core.reference.normalisation_factor` (computed over
the whole dataset, not per group), stored in ``GroupedData.norm_factor``.

Several datasets (:func:`group_datasets`): each is grouped on its own (no group spans two
scans), with its own normalisation factor (physics.md s3: a mix of photon levels then trains one
physics scale), and the groups are concatenated into one ``GroupedData`` (``dataset_index``
says which dataset each group came from; ``indices`` count through the datasets one after the
other). The backends shuffle the concatenated groups, so batches mix datasets. The datasets
must share N and, up to a positive scale factor, the probe (the physics layer has one probe).

Data larger than memory: grouping needs the coordinates only. A
:class:`~ptycho_data.lazy.LazyDataset` (or an in-memory dataset whose grouped ``X`` would
exceed :data:`LAZY_THRESHOLD_BYTES`) gives ``GroupedData`` whose ``X`` (and ``Y``) are
:class:`~ptycho_core.contracts.LazyArray` sources that gather and normalise the patterns of the
requested groups on each read; the normalisation factor then comes from one streamed pass.
"""

from __future__ import annotations

from itertools import combinations
from math import comb
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.spatial import cKDTree

from ptycho_core import reference
from ptycho_core.config import DEFAULT_GRIDSIZE, DEFAULT_NEIGHBOR_COUNT, DEFAULT_SEED
from ptycho_core.contracts import Dataset, GroupedData, LazyArray
from ptycho_core.errors import ConfigError, DataError
from ptycho_data.lazy import LazyDataset

if TYPE_CHECKING:
    from ptycho_core.config import InferenceConfig, TrainingConfig

ENUMERATE_LIMIT = 2_000_000
"""Above this many candidate combinations, oversampling draws combinations at random instead
of listing them all (duplicates are still rejected)."""

LAZY_THRESHOLD_BYTES = 1 << 30
"""An in-memory dataset whose grouped ``X`` would exceed this many bytes is grouped lazily."""

MAX_FETCH_BYTES = 1 << 28
"""Default cap on one read of a lazy ``X``/``Y`` (``LazyArray.max_fetch`` = this / bytes per group)."""


class LazyGroupedPatterns(LazyArray):
    """``X`` of lazily grouped data: (B, N, N, C) float32, patterns read per request and multiplied by ``k``.

    Row ``b`` holds the patterns ``indices[b]`` of ``source`` (a :class:`LazyDataset`) times
    ``norm_factor``, computed like the in-memory path (float64 product cast to float32), so the
    values equal those of :func:`group_dataset` on the loaded dataset.
    """

    def __init__(self, source: LazyDataset, indices: np.ndarray, norm_factor: float, normalise: bool, *,
                 max_fetch: int | None = None):
        B, C = indices.shape
        super().__init__((B, source.N, source.N, C), np.float32, name="X", max_fetch=max_fetch)
        self.source, self.indices = source, indices
        self.norm_factor, self.normalise = float(norm_factor), bool(normalise)

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        idx = self.indices[rows]  # (k, C)
        patterns = self.source.read(idx.reshape(-1)).reshape(*idx.shape, self.source.N, self.source.N)
        X = np.moveaxis(patterns, 1, -1)  # (k, C, N, N) -> (k, N, N, C)
        if self.normalise:
            X = (X.astype(np.float64) * self.norm_factor).astype(np.float32)
        return np.ascontiguousarray(X, dtype=np.float32)


class LazyGroundTruth(LazyArray):
    """``Y`` of lazily grouped data: (B, N, N, C) complex64 object patches cut on request."""

    def __init__(self, obj: np.ndarray, positions: np.ndarray, indices: np.ndarray, N: int, *,
                 max_fetch: int | None = None):
        B, C = indices.shape
        super().__init__((B, N, N, C), np.complex64, name="Y", max_fetch=max_fetch)
        self.object, self.positions, self.indices, self.N = obj, positions, indices, int(N)

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        idx = self.indices[rows]
        used, where = np.unique(idx, return_inverse=True)
        patches = np.asarray(reference.extract_patches(self.object, self.positions[used], self.N))
        return np.ascontiguousarray(np.moveaxis(patches[where.reshape(idx.shape)], 1, -1), dtype=np.complex64)


def _default_max_fetch(N: int, C: int, itemsize: int) -> int:
    return max(1, MAX_FETCH_BYTES // (N * N * C * itemsize))


def _lazy_source(dataset: Dataset | LazyDataset) -> LazyDataset:
    """``dataset`` itself when lazy, else a :class:`LazyDataset` over its in-memory arrays."""
    if isinstance(dataset, LazyDataset):
        return dataset
    small = {"xcoords": dataset.xcoords, "ycoords": dataset.ycoords, "scan_index": dataset.scan_index,
             "xcoords_start": dataset.xcoords_start, "ycoords_start": dataset.ycoords_start,
             "probeGuess": dataset.probe, "objectGuess": dataset.object}
    return LazyDataset(dataset.diffraction, small, "in-memory dataset")


def _group_lazily(source: LazyDataset, indices: np.ndarray, centroids: np.ndarray, offsets: np.ndarray,
                  k: float, normalise: bool, max_fetch: int | None) -> GroupedData:
    N, C = source.N, indices.shape[1]
    X = LazyGroupedPatterns(source, indices, k, normalise,
                            max_fetch=max_fetch if max_fetch is not None else _default_max_fetch(N, C, 4))
    Y = None
    if source.object is not None:
        Y = LazyGroundTruth(source.object, source.positions, indices, N,
                            max_fetch=max_fetch if max_fetch is not None else _default_max_fetch(N, C, 8))
    return GroupedData(X=X, offsets=offsets, centroids=centroids, indices=indices, probe=source.probe,
                       norm_factor=k, Y=Y, object_shape=None if source.object is None else source.object.shape)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _neighbours(points: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of the k nearest *other* points of every point, nearest first.

    The point itself is never listed, also when other points share its position (those
    then come first, at distance 0).
    """
    n = len(points)
    _, idx = cKDTree(points).query(points, k=k + 1)
    idx = np.asarray(idx, dtype=np.int64).reshape(n, k + 1)
    own = np.arange(n)[:, None]
    is_self = idx == own
    missing = ~is_self.any(axis=1)  # self lost among duplicates at distance 0: drop the last column
    is_self[missing, -1] = True
    return idx[~is_self].reshape(n, k)


def _draw_seeds(n: int, n_groups: int | None, rng: np.random.Generator) -> np.ndarray:
    if n_groups is None or n_groups == n:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=n_groups, replace=False)).astype(np.int64)


def _with_seed(seeds: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Rows ``[seed, *others]``: (B,) and (B, C - 1) -> (B, C)."""
    return np.concatenate([seeds[:, None], others], axis=1)


def _oversampled(nbrs: np.ndarray, c: int, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """``n_groups`` distinct groups seed + (C - 1 of its K others) over every seed of ``nbrs``.

    Distinct means distinct as sets of patterns. Rows keep the channel order of
    :func:`group_coordinates` (seed first, then by distance to it).
    """
    n, k = nbrs.shape
    per_seed = comb(k, c - 1)
    seeds = np.arange(n, dtype=np.int64)
    if n * per_seed <= ENUMERATE_LIMIT:
        choose = np.asarray(list(combinations(range(k), c - 1)), dtype=np.int64)  # (per_seed, c-1), sorted
        rows = _with_seed(np.repeat(seeds, per_seed), nbrs[:, choose].reshape(-1, c - 1))
        _, first = np.unique(np.sort(rows, axis=1), axis=0, return_index=True)
        pool = rows[np.sort(first)]  # one row per distinct set, in seed order
        if n_groups > len(pool):
            raise ConfigError(
                f"n_groups: expected at most {len(pool)} (the distinct groups of a seed and {c - 1} of "
                f"its {k} nearest neighbours over {n} scan positions), got {n_groups}; "
                "lower n_groups or raise neighbor_count"
            )
        pick = rng.choice(len(pool), size=n_groups, replace=False)
        return pool[np.sort(pick)]
    seen: set[tuple[int, ...]] = set()
    found: list[np.ndarray] = []
    attempts = 0
    while len(found) < n_groups:
        attempts += 1
        if attempts > 50 * n_groups:
            raise ConfigError(
                f"n_groups: could not draw {n_groups} distinct groups of a seed and {c - 1} of its {k} "
                f"nearest neighbours over {n} scan positions; lower n_groups or raise neighbor_count"
            )
        seed = int(rng.integers(n))
        row = np.array([seed, *nbrs[seed, np.sort(rng.choice(k, size=c - 1, replace=False))]], dtype=np.int64)
        key = tuple(sorted(row.tolist()))
        if key not in seen:
            seen.add(key)
            found.append(row)
    return np.stack(found)


def group_coordinates(
    xcoords: Any,
    ycoords: Any,
    *,
    gridsize: int = DEFAULT_GRIDSIZE,
    n_groups: int | None = None,
    neighbor_count: int = DEFAULT_NEIGHBOR_COUNT,
    seed: int = DEFAULT_SEED,
    oversample: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group scan positions from coordinates only (works for lazy datasets too).

    Parameters
    ----------
    xcoords, ycoords : array_like, shape (n,)
        Scan centres in object pixels (x = column, y = row).
    gridsize : int
        Patterns per group along one side; each group has C = gridsize**2 patterns.
    n_groups : int or None
        Number of groups; None means one group per scan position.
    neighbor_count : int
        K: the number of nearest *other* positions (the seed not counted) from which the C - 1
        members besides the seed are drawn; C - 1 <= K <= n - 1 (ignored at gridsize 1).
        Default 8: on a raster the 4 side and 4 diagonal neighbours.
    seed : int
        Seed of the :func:`numpy.random.default_rng` generator that picks seeds and members.
    oversample : bool
        Draw from all distinct groups seed + (C - 1 of its K others), allowing more groups
        than positions.

    Returns
    -------
    indices : ndarray, shape (B, C), int64
        Pattern indices of every group: the seed first, then by distance to the seed.
    centroids : ndarray, shape (B, 2), float64
        Group centroids (x, y).
    offsets : ndarray, shape (B, C, 2), float64
        Relative offsets (x, y) = position - centroid.

    Raises
    ------
    ConfigError
        If ``neighbor_count`` < C - 1 or > the number of positions - 1 (gridsize > 1), or
        ``n_groups`` exceeds the number of possible groups.
    """
    x = np.asarray(xcoords, dtype=np.float64).ravel()
    y = np.asarray(ycoords, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size == 0:
        raise DataError(f"xcoords/ycoords: expected two non-empty arrays of equal length, got {x.size} and {y.size}")
    gridsize = _check_int("gridsize", gridsize, 1)
    k = _check_int("neighbor_count", neighbor_count, 1)
    seed = _check_int("seed", seed, 0)
    if n_groups is not None:
        n_groups = _check_int("n_groups", n_groups, 1)
    n, c = x.size, gridsize * gridsize
    points = np.stack([x, y], axis=1)
    rng = np.random.default_rng(seed)
    if c > n:
        raise ConfigError(f"gridsize: groups of {c} patterns need at least {c} scan positions, got {n}")
    if c > 1 and k < c - 1:
        raise ConfigError(
            f"neighbor_count: expected an integer >= gridsize**2 - 1 = {c - 1} (K nearest other positions "
            f"to draw the {c - 1} members besides the seed from), got {k}"
        )
    if c > 1 and k > n - 1:
        raise ConfigError(
            f"neighbor_count: expected at most the number of scan positions - 1 = {n - 1} "
            f"(K counts the other positions, not the seed), got {k}"
        )
    if oversample and c > 1 and n_groups is not None:
        indices = _oversampled(_neighbours(points, k), c, n_groups, rng)
    else:
        if n_groups is not None and n_groups > n:
            hint = " or pass oversample=True" if c > 1 else ""
            raise ConfigError(
                f"n_groups: expected at most {n} (one group per scan position){hint}, got {n_groups}"
            )
        seeds = _draw_seeds(n, n_groups, rng)
        if c == 1:
            indices = seeds[:, None]
        else:
            nbrs = _neighbours(points, k)[seeds]
            cols = np.sort(np.stack([rng.choice(k, size=c - 1, replace=False) for _ in seeds]), axis=1)
            indices = _with_seed(seeds, np.take_along_axis(nbrs, cols, axis=1))
    group_pos = points[indices]  # (B, C, 2)
    centroids = group_pos.mean(axis=1)
    offsets = group_pos - centroids[:, None, :]
    return indices.astype(np.int64), centroids, offsets


def group_dataset(
    dataset: Dataset | LazyDataset,
    *,
    gridsize: int = DEFAULT_GRIDSIZE,
    n_groups: int | None = None,
    neighbor_count: int = DEFAULT_NEIGHBOR_COUNT,
    seed: int = DEFAULT_SEED,
    oversample: bool = False,
    normalise: bool = True,
    lazy: bool | None = None,
    max_fetch: int | None = None,
) -> GroupedData:
    """Group a dataset into :class:`~ptycho_core.contracts.GroupedData`.

    Parameters
    ----------
    dataset : Dataset or LazyDataset
        A DATA-001 dataset; with an ``object`` the ground-truth patches ``Y`` are extracted
        (:func:`ptycho_core.reference.extract_patches` at each pattern's position).
    gridsize, n_groups, neighbor_count, seed, oversample
        See :func:`group_coordinates`.
    normalise : bool
        Multiply the amplitudes by the dataset normalisation factor (so the mean over patterns
        of sum(X^2) is (N/2)^2); with False the factor is 1.
    lazy : bool, optional
        Give ``X``/``Y`` as :class:`~ptycho_core.contracts.LazyArray` sources read per batch.
        Default: lazy for a :class:`LazyDataset`, or when the in-memory ``X`` would exceed
        :data:`LAZY_THRESHOLD_BYTES`. ``False`` with a lazy dataset reads all patterns.
    max_fetch : int, optional
        Largest number of groups one read of a lazy ``X``/``Y`` may return (default: what
        fits in :data:`MAX_FETCH_BYTES`).

    Returns
    -------
    GroupedData
        ``X`` (B, N, N, C), offsets, centroids, indices, probe, ``norm_factor``, ``Y`` and
        ``object_shape`` (None without an object).
    """
    if not isinstance(dataset, (Dataset, LazyDataset)):
        raise DataError(f"dataset: expected a ptycho_core.contracts.Dataset or ptycho_data.lazy.LazyDataset, "
                        f"got {type(dataset).__name__}")
    indices, centroids, offsets = group_coordinates(
        dataset.xcoords, dataset.ycoords, gridsize=gridsize, n_groups=n_groups,
        neighbor_count=neighbor_count, seed=seed, oversample=oversample,
    )
    if lazy is None:
        lazy = isinstance(dataset, LazyDataset) or indices.size * dataset.N**2 * 4 > LAZY_THRESHOLD_BYTES
    if lazy:
        source = _lazy_source(dataset)
        if not normalise:
            k = 1.0
        elif isinstance(dataset, LazyDataset):
            k = source.normalisation_factor()
        else:
            k = float(reference.normalisation_factor(dataset.diffraction))
        return _group_lazily(source, indices, centroids, offsets, k, normalise, max_fetch)
    if isinstance(dataset, LazyDataset):
        dataset = dataset.to_dataset()
    k = float(reference.normalisation_factor(dataset.diffraction)) if normalise else 1.0
    X = np.moveaxis(dataset.diffraction[indices], 1, -1)  # (B, C, N, N) -> (B, N, N, C)
    X = (X.astype(np.float64) * k).astype(np.float32) if normalise else X
    Y = None
    shape = None
    if dataset.object is not None:
        used, where = np.unique(indices, return_inverse=True)
        patches = reference.extract_patches(dataset.object, dataset.positions[used], dataset.N)
        Y = np.moveaxis(np.asarray(patches)[where.reshape(indices.shape)], 1, -1)
        shape = dataset.object.shape
    return GroupedData(X=X, offsets=offsets, centroids=centroids, indices=indices, probe=dataset.probe,
                       norm_factor=k, Y=Y, object_shape=shape)


PROBE_RTOL = 1e-3
"""Largest relative difference ``|p - c q| / |p|`` (best positive scale ``c``) between the probes of
datasets trained on together."""


class ConcatenatedRows(LazyArray):
    """The rows of several arrays (NumPy or lazy) one after the other, read part by part on request."""

    def __init__(self, parts: list[Any], *, name: str):
        lazy_caps = [p.max_fetch for p in parts if isinstance(p, LazyArray) and p.max_fetch is not None]
        super().__init__((sum(len(p) for p in parts), *parts[0].shape[1:]), parts[0].dtype, name=name,
                         max_fetch=min(lazy_caps) if lazy_caps else None)
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self._base_shape[1:]), dtype=self.dtype)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        for d in np.unique(part):
            sel = part == d
            out[sel] = self.parts[d][rows[sel] - self.starts[d]]
        return out


def _split_groups(n_groups: int | None, sizes: list[int]) -> list[int | None]:
    """``n_groups`` shared by the datasets in proportion to their pattern counts (each at least 1)."""
    if n_groups is None:
        return [None] * len(sizes)
    if n_groups < len(sizes):
        raise ConfigError(f"n_groups: expected at least one group per dataset ({len(sizes)} datasets), got {n_groups}")
    total = sum(sizes)
    exact = np.asarray(sizes, dtype=np.float64) * n_groups / total
    counts = np.maximum(np.floor(exact).astype(int), 1)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    i = 0
    while counts.sum() < n_groups:
        counts[order[i % len(sizes)]] += 1
        i += 1
    while counts.sum() > n_groups:  # the minimum of 1 overshot: take back from the largest
        counts[int(np.argmax(counts))] -= 1
    return [int(c) for c in counts]


def check_same_probe(probes: list[np.ndarray], names: list[str]) -> None:
    """The probes of datasets trained on together must agree up to a positive scale factor.

    Raises
    ------
    DataError
        Naming the two datasets and the relative difference (above :data:`PROBE_RTOL`).
    """
    ref = np.asarray(probes[0], dtype=np.complex128)
    for probe, name in zip(probes[1:], names[1:]):
        p = np.asarray(probe, dtype=np.complex128)
        scale = max(float(np.vdot(ref, p).real / max(np.vdot(ref, ref).real, 1e-300)), 0.0)
        diff = float(np.linalg.norm(p - scale * ref) / max(np.linalg.norm(p), 1e-300))
        if diff > PROBE_RTOL:
            raise DataError(
                f"{name}: probeGuess differs from that of {names[0]} (relative difference {diff:.3g} after the best "
                f"positive scale, more than {PROBE_RTOL:g}); datasets trained together share one probe in the "
                "physics layer: train on datasets of the same probe, or train on this one separately"
            )


def group_datasets(
    datasets: list[Dataset | LazyDataset],
    *,
    names: list[str] | None = None,
    gridsize: int = 1,
    n_groups: int | None = None,
    neighbor_count: int = DEFAULT_NEIGHBOR_COUNT,
    seed: int = 42,
    oversample: bool = False,
    lazy: bool | None = None,
    max_fetch: int | None = None,
) -> GroupedData:
    """Group several datasets, each on its own, and concatenate the groups.

    Dataset ``d`` is grouped by :func:`group_dataset` with seed ``seed + d`` and its own
    normalisation factor; ``n_groups`` (the total) is shared in proportion to the pattern counts.
    One dataset gives exactly :func:`group_dataset`'s result.

    Parameters
    ----------
    datasets : list of Dataset or LazyDataset
        Same N and (up to a positive scale) the same probe.
    names : list of str, optional
        Names (file paths) used in error messages.
    gridsize, n_groups, neighbor_count, seed, oversample, lazy, max_fetch
        See :func:`group_dataset`.

    Returns
    -------
    GroupedData
        ``dataset_index`` (B,), ``norm_factors`` (one per dataset), ``indices`` into the
        concatenation of the datasets' patterns, the first dataset's probe, ``Y`` when every
        dataset has an object, ``object_shape`` None. ``X`` is lazy when any part is.

    Raises
    ------
    DataError
        For no datasets, datasets of different N or different probes.
    """
    datasets = list(datasets)
    if not datasets:
        raise DataError("datasets: expected at least one dataset to group")
    names = list(names) if names is not None else [f"dataset {i}" for i in range(len(datasets))]
    kw = dict(gridsize=gridsize, neighbor_count=neighbor_count, oversample=oversample, lazy=lazy,
              max_fetch=max_fetch)
    if len(datasets) == 1:
        return group_dataset(datasets[0], n_groups=n_groups, seed=seed, **kw)
    for ds, name in zip(datasets[1:], names[1:]):
        if ds.N != datasets[0].N:
            raise DataError(f"{name}: patterns of side N = {ds.N}, but {names[0]} has N = {datasets[0].N}; "
                            "datasets trained together must have the same N")
    check_same_probe([ds.probe for ds in datasets], names)
    counts = _split_groups(n_groups, [int(len(ds.xcoords)) for ds in datasets])
    parts = []
    for d, (ds, count, name) in enumerate(zip(datasets, counts, names)):
        try:
            parts.append(group_dataset(ds, n_groups=count, seed=seed + d, **kw))
        except (ConfigError, DataError) as exc:
            raise type(exc)(f"{name}: {exc}") from exc
    starts = np.cumsum([0] + [int(len(ds.xcoords)) for ds in datasets])[:-1]

    def joined(arrays: list[Any], name: str) -> Any:
        if any(isinstance(a, LazyArray) for a in arrays):
            return ConcatenatedRows(arrays, name=name)
        return np.concatenate(arrays)

    with_y = all(p.Y is not None for p in parts)
    return GroupedData(
        X=joined([p.X for p in parts], "X"),
        offsets=np.concatenate([p.offsets for p in parts]),
        centroids=np.concatenate([p.centroids for p in parts]),
        indices=np.concatenate([p.indices + start for p, start in zip(parts, starts)]),
        probe=parts[0].probe,
        norm_factor=parts[0].norm_factor,
        Y=joined([p.Y for p in parts], "Y") if with_y else None,
        dataset_index=np.concatenate([np.full(p.n_groups, d, dtype=np.int64) for d, p in enumerate(parts)]),
        norm_factors=[p.norm_factor for p in parts],
    )


def group_for_training(dataset: Dataset | LazyDataset | list[Dataset | LazyDataset], config: TrainingConfig, *,
                       oversample: bool = False, lazy: bool | None = None,
                       names: list[str] | None = None) -> GroupedData:
    """Group ``dataset`` (or a list of datasets, :func:`group_datasets`) with a training config's settings."""
    kw = dict(gridsize=config.model.gridsize, n_groups=config.n_groups, neighbor_count=config.neighbor_count,
              seed=config.seed, oversample=oversample, lazy=lazy)
    if isinstance(dataset, (list, tuple)):
        return group_datasets(list(dataset), names=names, **kw)
    return group_dataset(dataset, **kw)


def group_for_inference(dataset: Dataset | LazyDataset, config: InferenceConfig, *, oversample: bool = False,
                        lazy: bool | None = None) -> GroupedData:
    """Group ``dataset`` with the gridsize, n_groups, groups_per_position, neighbor_count and seed of an
    inference config.

    ``groups_per_position`` k > 1 (gridsize > 1) draws k times as many distinct groups as there are scan
    positions (``oversample``), so that every position is predicted in about k groups of different
    neighbours (``k * C`` patches cover each position on average) and the stitch averages them.
    """
    n, k, c = dataset.n, config.groups_per_position, config.model.gridsize ** 2
    n_groups = config.n_groups
    if k > 1:
        if c == 1:
            raise ConfigError(f"InferenceConfig.groups_per_position: {k} needs a model with gridsize > 1 (at "
                              f"gridsize 1 a group is one pattern, predicted once); got gridsize 1")
        n_groups, oversample = k * n, True
    elif n_groups is not None and n_groups > n and c > 1 and not oversample:
        raise ConfigError(f"InferenceConfig.n_groups: expected at most {n} (one group per scan position), got "
                          f"{n_groups}; to predict every position in several groups set groups_per_position")
    try:
        return group_dataset(dataset, gridsize=config.model.gridsize, n_groups=n_groups,
                             neighbor_count=config.neighbor_count, seed=config.seed, oversample=oversample, lazy=lazy)
    except ConfigError as exc:
        if k > 1 and str(exc).startswith("n_groups"):
            raise ConfigError(f"InferenceConfig.groups_per_position: {k} x {n} positions = {n_groups} groups: "
                              f"{exc}") from None
        raise
