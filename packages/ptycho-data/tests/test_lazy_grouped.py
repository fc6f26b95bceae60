"""Lazily grouped data (GroupedData.X as a LazyArray) gives the same batches as the in-memory grouping."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_core.contracts import Dataset, GroupedData, LazyArray
from ptycho_core.errors import DataError
from ptycho_data import grouping
from ptycho_data.grouping import group_dataset
from ptycho_data.lazy import open_lazy_dataset, open_lazy_hdf5, save_lazy_dataset, save_lazy_hdf5


def _dataset(n: int = 40, N: int = 64, with_object: bool = True, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    obj = None
    if with_object:
        obj = (rng.random((140, 150)) * np.exp(1j * rng.random((140, 150)))).astype(np.complex64)
    return Dataset(diffraction=rng.gamma(2.0, 1.0, size=(n, N, N)).astype(np.float32),
                   xcoords=rng.uniform(40, 100, n), ycoords=rng.uniform(40, 90, n),
                   probe=np.ones((N, N), np.complex64), object=obj)


@pytest.fixture
def stored(tmp_path):
    ds = _dataset()
    save_lazy_dataset(ds, tmp_path / "scan")
    return ds, tmp_path / "scan"


@pytest.mark.parametrize("kwargs", [dict(gridsize=1), dict(gridsize=2, neighbor_count=5, seed=3),
                                    dict(gridsize=2, neighbor_count=6, n_groups=50, oversample=True, seed=5),
                                    dict(gridsize=1, normalise=False)])
def test_lazy_x_and_y_equal_in_memory_batches(stored, kwargs):
    ds, path = stored
    eager = group_dataset(ds, **kwargs)
    lazy = group_dataset(open_lazy_dataset(path), **kwargs)
    assert not eager.is_lazy and lazy.is_lazy
    assert isinstance(lazy.X, LazyArray) and isinstance(lazy.Y, LazyArray)
    assert lazy.X.shape == eager.X.shape and lazy.X.dtype == np.float32 and lazy.Y.dtype == np.complex64
    assert lazy.norm_factor == pytest.approx(eager.norm_factor, rel=1e-12)
    np.testing.assert_array_equal(lazy.indices, eager.indices)
    np.testing.assert_array_equal(lazy.offsets, eager.offsets)
    rng = np.random.default_rng(1)
    for rows in (slice(0, 7), rng.permutation(eager.n_groups)[:9], np.array([3, 3, 0])):
        np.testing.assert_allclose(lazy.X[rows], eager.X[rows], rtol=1e-6, atol=0)
        np.testing.assert_allclose(lazy.Y[rows], eager.Y[rows], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(lazy.X[2], eager.X[2], rtol=1e-6)


def test_norm_factor_of_streamed_pass_equals_reference(stored):
    ds, path = stored
    lazy = group_dataset(open_lazy_dataset(path))
    eager = group_dataset(ds)
    assert lazy.norm_factor == pytest.approx(eager.norm_factor, rel=1e-13)


def test_hdf5_source_gives_same_batches(stored, tmp_path):
    ds, _ = stored
    save_lazy_hdf5(ds, tmp_path / "scan.h5", chunk_patterns=8)
    eager = group_dataset(ds, gridsize=2, neighbor_count=5)
    with open_lazy_hdf5(tmp_path / "scan.h5") as source:
        lazy = group_dataset(source, gridsize=2, neighbor_count=5)
        rows = np.array([5, 1, 30, 2])
        np.testing.assert_allclose(lazy.X[rows], eager.X[rows], rtol=1e-6)


def test_max_fetch_refuses_materialising_everything(stored):
    _, path = stored
    lazy = group_dataset(open_lazy_dataset(path), max_fetch=8)
    assert lazy.X[:8].shape == (8, 64, 64, 1)
    with pytest.raises(DataError, match="at most 8 rows"):
        lazy.X[:9]
    with pytest.raises(DataError, match="max_fetch"):
        np.asarray(lazy.X)
    batches = list(lazy.X.iter_batches(8))
    assert sum(len(b) for b in batches) == lazy.n_groups


def test_batch_keeps_lazy_and_subsets_rows(stored):
    ds, path = stored
    eager = group_dataset(ds)
    lazy = group_dataset(open_lazy_dataset(path), max_fetch=4)
    part = lazy.batch(slice(10, 14))
    assert part.is_lazy and part.n_groups == 4
    np.testing.assert_allclose(np.asarray(part.X), eager.X[10:14], rtol=1e-6)
    np.testing.assert_array_equal(part.centroids, eager.centroids[10:14])
    again = part.batch(np.array([3, 0]))
    np.testing.assert_allclose(again.X[:], eager.X[[13, 10]], rtol=1e-6)


def test_lazy_array_rejects_bad_keys(stored):
    _, path = stored
    X = group_dataset(open_lazy_dataset(path)).X
    with pytest.raises(DataError, match="out of range"):
        X[np.array([0, 40])]
    with pytest.raises(DataError, match="first axis"):
        X[0, 1]
    with pytest.raises(DataError, match="out of range"):
        X[40]


def test_lazy_array_wrong_dtype_refused_by_grouped_data(stored):
    _, path = stored
    g = group_dataset(open_lazy_dataset(path))

    class Wrong(LazyArray):
        def fetch(self, rows):
            return np.zeros((len(rows), 64, 64, 1), np.float64)

    with pytest.raises(DataError, match="X: expected a lazy array"):
        GroupedData(X=Wrong((40, 64, 64, 1), np.float64), offsets=g.offsets, centroids=g.centroids,
                    indices=g.indices, probe=g.probe)
    bad = Wrong((40, 64, 64, 1), np.float32)
    with pytest.raises(DataError, match="lazy source returned float64"):
        bad[:2]


def test_large_in_memory_dataset_is_grouped_lazily(monkeypatch):
    ds = _dataset(n=12, with_object=False)
    eager = group_dataset(ds)
    monkeypatch.setattr(grouping, "LAZY_THRESHOLD_BYTES", 1000)
    lazy = group_dataset(ds)
    assert lazy.is_lazy and lazy.norm_factor == eager.norm_factor
    np.testing.assert_array_equal(lazy.X[:], eager.X)
    assert not group_dataset(ds, lazy=False).is_lazy


def test_reads_do_not_map_the_file(stored):
    """Rows come from positional reads, so the resident set does not grow with the file."""
    _, path = stored
    source = open_lazy_dataset(path)
    idx = np.array([7, 2, 2, 39, 0, 1])
    np.testing.assert_array_equal(source.read(idx), np.asarray(source.diffraction)[idx])
    view = source.diffraction[1:]
    from ptycho_data.lazy import _preadable

    assert _preadable(source.diffraction) and not _preadable(view)
