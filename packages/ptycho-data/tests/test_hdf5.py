"""Ptychodus HDF5 product files: round trips, position convention and malformed inputs."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from ptycho_core.contracts import Dataset, Reconstruction
from ptycho_core.errors import DataError
from ptycho_data.hdf5 import (
    load_patterns,
    metres_to_pixels,
    pixels_to_metres,
    read_product,
    write_patterns,
    write_product,
)
from ptycho_data.npz import save_dataset

N = 64
PIXEL = 7.5e-9


def make_dataset(n: int = 12, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(
        diffraction=rng.random((n, N, N), dtype=np.float32) * 2,
        xcoords=rng.uniform(40, 100, n),
        ycoords=rng.uniform(35, 90, n),
        probe=(rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N))).astype(np.complex64),
        object=(rng.random((130, 140)) * np.exp(1j * rng.random((130, 140)))).astype(np.complex64),
    )


@pytest.fixture
def product(tmp_path):
    ds = make_dataset()
    path = write_product(tmp_path / "product.h5", ds.object, ds, PIXEL, center_m=(1e-6, -2e-6), name="test",
                         probe_energy_eV=8000.0, detector_object_distance_m=2.0, loss=[3.0, 2.0, 1.5])
    patterns = write_patterns(tmp_path / "patterns.h5", ds)
    return ds, path, patterns


def expect_error(*words, **kwargs):
    return pytest.raises(DataError, match=".*".join(map(_escape, words)), **kwargs)


def _escape(word: str) -> str:
    import re

    return re.escape(word)


def test_round_trip_with_hdf5_intensities(product, caplog):
    ds, path, patterns = product
    with caplog.at_level(logging.INFO, logger="ptycho_data.hdf5"):
        back = read_product(path, patterns)
    np.testing.assert_allclose(back.xcoords, ds.xcoords, rtol=0, atol=1e-9)
    np.testing.assert_allclose(back.ycoords, ds.ycoords, rtol=0, atol=1e-9)
    np.testing.assert_allclose(back.diffraction, ds.diffraction, rtol=1e-6)
    np.testing.assert_array_equal(back.probe, ds.probe)
    np.testing.assert_array_equal(back.object, ds.object)
    assert back.diffraction.dtype == np.float32 and back.probe.dtype == np.complex64
    meta = back.metadata["ptychodus"]
    assert meta["name"] == "test" and meta["probe_energy_eV"] == 8000.0
    assert meta["pixel_width_m"] == PIXEL and meta["center_x_m"] == 1e-6
    assert any("sqrt" in r.getMessage() for r in caplog.records)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["loss"][()], [3.0, 2.0, 1.5])
        assert f["object"].shape == (1, 130, 140) and f["probe"].shape == (1, N, N)


def test_round_trip_with_npz_amplitudes(product, tmp_path):
    ds, path, _ = product
    save_dataset(ds, tmp_path / "amp.npz")
    back = read_product(path, tmp_path / "amp.npz")
    np.testing.assert_array_equal(back.diffraction, ds.diffraction)


def test_position_convention_centre_pixel():
    # W = 5: the object centre is pixel 2; W = 4: it lies between pixels 1 and 2.
    assert metres_to_pixels(np.array([0.0]), 0.0, 1e-8, 5)[0] == 2.0
    assert metres_to_pixels(np.array([0.0]), 0.0, 1e-8, 4)[0] == 1.5
    np.testing.assert_allclose(metres_to_pixels(np.array([3e-8]), 1e-8, 1e-8, 5), [4.0])
    px = np.array([0.0, 7.25, 139.0])
    back = metres_to_pixels(pixels_to_metres(px, 2e-6, PIXEL, 140), 2e-6, PIXEL, 140)
    np.testing.assert_allclose(back, px, rtol=0, atol=1e-9)


def test_written_metres_follow_convention(product):
    ds, path, _ = product
    with h5py.File(path) as f:
        x_m = f["probe_position_x_m"][()]
        y_m = f["probe_position_y_m"][()]
    np.testing.assert_allclose(x_m, 1e-6 + PIXEL * (ds.xcoords - (140 - 1) / 2))
    np.testing.assert_allclose(y_m, -2e-6 + PIXEL * (ds.ycoords - (130 - 1) / 2))


def test_reconstruction_origin_shifts_positions(tmp_path):
    ds = make_dataset()
    rec = Reconstruction(object=ds.object[10:, 20:], origin=(20.0, 10.0), metadata={"backend": "numpy"})
    path = write_product(tmp_path / "rec.h5", rec, ds, (PIXEL, 2 * PIXEL))
    back = read_product(path, write_patterns(tmp_path / "pat.h5", ds))
    np.testing.assert_allclose(back.xcoords, ds.xcoords - 20.0, atol=1e-9)
    np.testing.assert_allclose(back.ycoords, ds.ycoords - 10.0, atol=1e-9)
    np.testing.assert_array_equal(back.object, ds.object[10:, 20:])


def test_multi_mode_probe_and_layers_use_first(tmp_path, caplog):
    ds = make_dataset()
    probes = np.stack([ds.probe, 2 * ds.probe])
    layers = np.stack([ds.object, ds.object * 0.5])
    path = write_product(tmp_path / "m.h5", layers, ds, PIXEL, probe=probes)
    with caplog.at_level(logging.INFO, logger="ptycho_data.hdf5"):
        back = read_product(path, write_patterns(tmp_path / "pat.h5", ds))
    np.testing.assert_array_equal(back.probe, ds.probe)
    np.testing.assert_array_equal(back.object, ds.object)
    assert sum("first mode/layer" in r.getMessage() for r in caplog.records) == 2


def test_patterns_matched_by_indexes(product, tmp_path):
    ds, path, _ = product
    order = np.random.default_rng(4).permutation(ds.n)
    with h5py.File(tmp_path / "shuffled.h5", "w") as f:
        f["data"] = np.square(ds.diffraction[order])
        f["indexes"] = order
    back = read_product(path, tmp_path / "shuffled.h5")
    np.testing.assert_allclose(back.diffraction, ds.diffraction, rtol=1e-6)


def test_load_patterns_npz_intensities(tmp_path):
    counts = np.random.default_rng(0).poisson(20.0, size=(4, N, N))
    np.savez(tmp_path / "p.npz", data=counts, indexes=np.arange(4))
    amps, idx = load_patterns(tmp_path / "p.npz")
    np.testing.assert_allclose(amps, np.sqrt(counts), rtol=1e-6)
    np.testing.assert_array_equal(idx, np.arange(4))


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


@pytest.mark.parametrize("name", ["probe_position_x_m", "probe_position_y_m", "probe", "object"])
def test_missing_dataset_named(product, name):
    _, path, patterns = product
    _edit(path, lambda f: f.__delitem__(name))
    with expect_error(str(path), f":/{name}", "missing HDF5 dataset"):
        read_product(path, patterns)


@pytest.mark.parametrize("attr", ["center_x_m", "center_y_m", "pixel_width_m", "pixel_height_m"])
def test_missing_object_attribute(product, attr):
    _, path, patterns = product
    _edit(path, lambda f: f["object"].attrs.__delitem__(attr))
    with expect_error(str(path), f"/object@{attr}", "missing"):
        read_product(path, patterns)


def test_non_positive_pixel_size(product):
    _, path, patterns = product
    _edit(path, lambda f: f["object"].attrs.__setitem__("pixel_width_m", 0.0))
    with expect_error(str(path), "/object@pixel_width_m", "positive"):
        read_product(path, patterns)


def test_probe_pixel_size_mismatch(product):
    _, path, patterns = product
    _edit(path, lambda f: f["probe"].attrs.__setitem__("pixel_width_m", 2 * PIXEL))
    with expect_error(str(path), "/probe@pixel_width_m", "object pixel grid"):
        read_product(path, patterns)


def test_position_length_mismatch(product):
    _, path, patterns = product

    def shorten(f):
        y = f["probe_position_y_m"][()]
        del f["probe_position_y_m"]
        f["probe_position_y_m"] = y[:-1]

    _edit(path, shorten)
    with expect_error(str(path), "/probe_position_y_m", "expected shape"):
        read_product(path, patterns)


def test_group_instead_of_dataset(product):
    _, path, patterns = product

    def replace(f):
        del f["probe"]
        f.create_group("probe")

    _edit(path, replace)
    with expect_error(str(path), ":/probe", "expected an HDF5 dataset"):
        read_product(path, patterns)


def test_not_hdf5(product, tmp_path):
    _, _, patterns = product
    (tmp_path / "fake.h5").write_text("not hdf5")
    with expect_error(str(tmp_path / "fake.h5"), "not a readable HDF5 file"):
        read_product(tmp_path / "fake.h5", patterns)


def test_truncated_hdf5(product, tmp_path):
    _, path, patterns = product
    (tmp_path / "cut.h5").write_bytes(path.read_bytes()[:1000])
    with expect_error(str(tmp_path / "cut.h5"), "HDF5"):
        read_product(tmp_path / "cut.h5", patterns)


def test_missing_pattern_key(product, tmp_path):
    _, path, _ = product
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f["something"] = np.zeros(3)
    with expect_error(str(tmp_path / "empty.h5"), "'diffraction'", "'patterns'/'data'"):
        read_product(path, tmp_path / "empty.h5")


def test_negative_intensities(product, tmp_path):
    ds, path, _ = product
    with h5py.File(tmp_path / "neg.h5", "w") as f:
        f["data"] = np.square(ds.diffraction) - 1.0
    with expect_error(str(tmp_path / "neg.h5"), ":/data", ">= 0"):
        read_product(path, tmp_path / "neg.h5")


def test_position_index_without_pattern(product, tmp_path):
    ds, path, _ = product
    with h5py.File(tmp_path / "few.h5", "w") as f:
        f["data"] = np.square(ds.diffraction[:5])
    with expect_error(str(tmp_path / "few.h5"), "outside the 5 patterns"):
        read_product(path, tmp_path / "few.h5")
    with h5py.File(tmp_path / "idx.h5", "w") as f:
        f["data"] = np.square(ds.diffraction)
        f["indexes"] = np.arange(ds.n) + 100
    with expect_error(str(tmp_path / "idx.h5"), "no pattern for probe_position_indexes"):
        read_product(path, tmp_path / "idx.h5")


def test_pattern_shape_mismatch_with_probe(product, tmp_path):
    ds, path, _ = product
    big = Dataset(diffraction=np.ones((ds.n, 128, 128), np.float32), xcoords=ds.xcoords, ycoords=ds.ycoords,
                  probe=np.ones((128, 128), np.complex64))
    save_dataset(big, tmp_path / "big.npz")
    with expect_error(str(path), "big.npz", "probeGuess"):
        read_product(path, tmp_path / "big.npz")


def test_write_rejects_bad_inputs(tmp_path):
    ds = make_dataset()
    with expect_error("pixel_size_m"):
        write_product(tmp_path / "a.h5", ds.object, ds, -1.0)
    with expect_error("reconstruction_object"):
        write_product(tmp_path / "a.h5", np.zeros(5), ds, PIXEL)
    with expect_error("loss", "1-D numeric"):
        write_product(tmp_path / "a.h5", ds.object, ds, PIXEL, loss=["x", "y"])
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    ds = make_dataset()
    write_product(tmp_path / "keep.h5", ds.object, ds, PIXEL)
    before = (tmp_path / "keep.h5").read_bytes()
    real = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        if name == "object":
            raise OSError("disk full")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(OSError, match="disk full"):
        write_product(tmp_path / "new.h5", ds.object, ds, PIXEL)
    with pytest.raises(OSError, match="disk full"):
        write_product(tmp_path / "keep.h5", ds.object * 2, ds, PIXEL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.h5"]
    assert (tmp_path / "keep.h5").read_bytes() == before
