"""Lazy datasets: memory-mapped .npy directories, chunked HDF5, chunked writer, streaming normalisation."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from ptycho_core import reference
from ptycho_core.contracts import Dataset
from ptycho_core.errors import DataError
from ptycho_data.lazy import (
    LazyDatasetWriter,
    open_lazy_dataset,
    open_lazy_hdf5,
    save_lazy_dataset,
    save_lazy_hdf5,
)

N = 64


def make_dataset(n: int = 40, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(
        diffraction=rng.gamma(2.0, 1.5, size=(n, N, N)).astype(np.float32),
        xcoords=rng.uniform(30, 90, n),
        ycoords=rng.uniform(30, 90, n),
        probe=(rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N))).astype(np.complex64),
        object=np.exp(1j * rng.random((120, 120))).astype(np.complex64),
        scan_index=np.arange(n) // 10,
    )


@pytest.fixture
def stored(tmp_path):
    ds = make_dataset()
    return ds, save_lazy_dataset(ds, tmp_path / "lazy")


def test_directory_layout_and_memory_map(stored):
    ds, directory = stored
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        ["diffraction.npy", "xcoords.npy", "ycoords.npy", "scan_index.npy", "xcoords_start.npy",
         "ycoords_start.npy", "probeGuess.npy", "objectGuess.npy", "meta.json"])
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["format"] == "ptycho-lazy-dataset" and meta["n"] == ds.n and meta["N"] == N
    lazy = open_lazy_dataset(directory)
    assert isinstance(lazy.diffraction, np.memmap) and lazy.diffraction.mode == "r"
    assert (lazy.n, lazy.N) == (ds.n, N)
    for name in ("xcoords", "ycoords", "probe", "object", "scan_index", "xcoords_start", "ycoords_start"):
        np.testing.assert_array_equal(getattr(lazy, name), getattr(ds, name))
    np.testing.assert_array_equal(lazy.positions, ds.positions)


@pytest.mark.parametrize("batch_size", [1, 7, 40, 100])
def test_iter_batches_equals_eager(stored, batch_size):
    ds, directory = stored
    lazy = open_lazy_dataset(directory)
    batches = list(lazy.iter_batches(batch_size=batch_size))
    assert len(batches) == -(-ds.n // batch_size)
    assert all(b.dtype == np.float32 and b.flags.writeable for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), ds.diffraction)


def test_iter_batches_arbitrary_indices(stored):
    ds, directory = stored
    lazy = open_lazy_dataset(directory)
    idx = np.array([39, 3, 3, 0, 17, 18, 19, 5])
    np.testing.assert_array_equal(np.concatenate(list(lazy.iter_batches(idx, 3))), ds.diffraction[idx])
    np.testing.assert_array_equal(lazy.to_dataset().diffraction, ds.diffraction)


def test_normalisation_matches_reference(stored):
    ds, directory = stored
    lazy = open_lazy_dataset(directory)
    expected = reference.normalisation_factor(ds.diffraction)
    for batch_size in (1, 6, 64):
        assert lazy.normalisation_factor(batch_size) == pytest.approx(expected, rel=1e-12, abs=0)
    a = ds.diffraction.astype(np.float64)
    assert expected == pytest.approx(np.sqrt((N / 2) ** 2 / np.mean(np.sum(a * a, axis=(1, 2)))), rel=1e-12)


def test_writer_appends_chunks(tmp_path):
    ds = make_dataset(n=50)
    with LazyDatasetWriter(tmp_path / "chunked", ds.probe, object=ds.object) as writer:
        for start in range(0, ds.n, 16):
            sl = slice(start, start + 16)
            writer.append(ds.diffraction[sl].astype(np.float64), ds.xcoords[sl], ds.ycoords[sl],
                          scan_index=ds.scan_index[sl])
        assert writer.n == ds.n
    header_n = np.load(tmp_path / "chunked" / "diffraction.npy", mmap_mode="r").shape
    assert header_n == (ds.n, N, N)
    lazy = open_lazy_dataset(tmp_path / "chunked")
    np.testing.assert_array_equal(lazy.read(np.arange(ds.n)), ds.diffraction)
    np.testing.assert_array_equal(lazy.xcoords_start, ds.xcoords)
    assert lazy.normalisation_factor(9) == pytest.approx(reference.normalisation_factor(ds.diffraction), rel=1e-12)


def test_writer_failure_leaves_nothing(tmp_path):
    ds = make_dataset(n=8)
    with pytest.raises(RuntimeError, match="boom"):
        with LazyDatasetWriter(tmp_path / "partial", ds.probe) as writer:
            writer.append(ds.diffraction, ds.xcoords, ds.ycoords)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_chunks(tmp_path):
    ds = make_dataset(n=8)
    writer = LazyDatasetWriter(tmp_path / "w", ds.probe)
    with pytest.raises(DataError, match=r"diffraction chunk.*\(k, 64, 64\)"):
        writer.append(ds.diffraction[:, :32], ds.xcoords, ds.ycoords)
    negative = ds.diffraction.copy()
    negative[0, 0, 0] = -1
    with pytest.raises(DataError, match="finite and >= 0"):
        writer.append(negative, ds.xcoords, ds.ycoords)
    with pytest.raises(DataError, match=r"ycoords chunk: expected 8 numbers"):
        writer.append(ds.diffraction, ds.xcoords, ds.ycoords[:5])
    with pytest.raises(DataError, match="no patterns were appended"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_existing_directory(stored):
    ds, directory = stored
    with pytest.raises(DataError, match="already exists"):
        LazyDatasetWriter(directory, ds.probe)
    with pytest.raises(DataError, match="probeGuess"):
        LazyDatasetWriter(directory.parent / "other", np.ones((32, 32)))
    smaller = ds.subset(np.arange(5))
    save_lazy_dataset(smaller, directory, overwrite=True)
    assert open_lazy_dataset(directory).n == 5


def test_save_from_mapping(tmp_path):
    ds = make_dataset(n=6)
    arrays = {"diffraction": ds.diffraction, "xcoords": ds.xcoords, "ycoords": ds.ycoords, "probeGuess": ds.probe}
    lazy = open_lazy_dataset(save_lazy_dataset(arrays, tmp_path / "m"))
    np.testing.assert_array_equal(lazy.read([0, 5]), ds.diffraction[[0, 5]])
    assert lazy.object is None
    with pytest.raises(DataError, match="unknown keys"):
        save_lazy_dataset({**arrays, "diff3d": ds.diffraction}, tmp_path / "x")
    with pytest.raises(DataError, match="probeGuess"):
        save_lazy_dataset({k: v for k, v in arrays.items() if k != "probeGuess"}, tmp_path / "y")


def test_hdf5_round_trip_chunked(stored, tmp_path):
    ds, directory = stored
    path = save_lazy_hdf5(open_lazy_dataset(directory), tmp_path / "lazy.h5", chunk_patterns=8, batch_size=11)
    with h5py.File(path) as f:
        assert f["diffraction"].chunks == (8, N, N)
    with open_lazy_hdf5(path) as lazy:
        assert isinstance(lazy.diffraction, h5py.Dataset)
        idx = np.array([12, 1, 1, 39, 7])
        np.testing.assert_array_equal(lazy.read(idx), ds.diffraction[idx])
        np.testing.assert_array_equal(np.concatenate(list(lazy.iter_batches(batch_size=13))), ds.diffraction)
        np.testing.assert_array_equal(lazy.object, ds.object)
        assert lazy.normalisation_factor(16) == pytest.approx(reference.normalisation_factor(ds.diffraction),
                                                               rel=1e-12)
    assert not lazy.diffraction.id.valid
    eager = save_lazy_hdf5(ds, tmp_path / "eager.h5")
    with open_lazy_hdf5(eager) as lazy:
        np.testing.assert_array_equal(lazy.to_dataset().diffraction, ds.diffraction)


def test_bad_indices_and_batch_size(stored):
    _, directory = stored
    lazy = open_lazy_dataset(directory)
    with pytest.raises(DataError, match=r"indices: expected values in \[0, 40\)"):
        lazy.read([0, 40])
    with pytest.raises(DataError, match="indices: expected a 1-D integer array"):
        lazy.read([0.5])
    with pytest.raises(DataError, match="batch_size"):
        next(lazy.iter_batches(batch_size=0))


def test_nan_pattern_detected_on_read(stored):
    _, directory = stored
    data = np.load(directory / "diffraction.npy", mmap_mode="r+")
    data[4, 1, 1] = np.nan
    data.flush()
    del data
    lazy = open_lazy_dataset(directory)
    lazy.read([0, 1, 2])
    with pytest.raises(DataError, match=r"diffraction: patterns \[4\] hold NaN"):
        lazy.normalisation_factor()


def test_missing_meta_and_bad_meta(stored, tmp_path):
    _, directory = stored
    with pytest.raises(DataError, match="missing meta.json"):
        open_lazy_dataset(tmp_path)
    (directory / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match="meta.json: invalid JSON"):
        open_lazy_dataset(directory)
    (directory / "meta.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(DataError, match="meta.json: expected 'format'"):
        open_lazy_dataset(directory)


def test_truncated_diffraction_file(stored):
    _, directory = stored
    path = directory / "diffraction.npy"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="diffraction.npy: cannot read"):
        open_lazy_dataset(directory)


def test_pattern_count_disagrees_with_meta(stored):
    _, directory = stored
    meta = json.loads((directory / "meta.json").read_text())
    meta["n"] = 41
    (directory / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="incomplete or corrupt"):
        open_lazy_dataset(directory)


def test_missing_and_pickled_small_arrays(stored):
    _, directory = stored
    np.save(directory / "objectGuess.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="objectGuess.npy: cannot read"):
        open_lazy_dataset(directory)
    (directory / "objectGuess.npy").unlink()
    (directory / "xcoords.npy").unlink()
    with pytest.raises(DataError, match="missing required array 'xcoords'"):
        open_lazy_dataset(directory)


def test_wrong_length_coordinates(stored):
    _, directory = stored
    np.save(directory / "ycoords.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"ycoords: expected shape \(40,\)"):
        open_lazy_dataset(directory)


def test_hdf5_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        open_lazy_hdf5(tmp_path / "absent.h5")
    (tmp_path / "junk.h5").write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match="junk.h5: not a readable HDF5"):
        open_lazy_hdf5(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "nodiff.h5", "w") as f:
        f["xcoords"] = np.zeros(3)
    with pytest.raises(DataError, match=r"nodiff.h5:/diffraction: missing HDF5 dataset"):
        open_lazy_hdf5(tmp_path / "nodiff.h5")
    with h5py.File(tmp_path / "badn.h5", "w") as f:
        f["diffraction"] = np.zeros((2, 32, 32), np.float32)
        f["xcoords"] = f["ycoords"] = np.zeros(2)
        f["probeGuess"] = np.zeros((32, 32), np.complex64)
    with pytest.raises(DataError, match=r"badn.h5: diffraction: expected n >= 1 patterns of side N"):
        open_lazy_hdf5(tmp_path / "badn.h5")
