"""One reader for every input (ptycho_data.readers), position units, aliases, and ``ptycho import``."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from ptycho_core import cli
from ptycho_core.config import ReadOptions
from ptycho_core.errors import ConfigError, DataError
from ptycho_data import geometry, readers
from ptycho_data.cli_import import import_dataset
from ptycho_data.hdf5 import write_patterns, write_product
from ptycho_data.lazy import open_lazy_dataset
from ptycho_data.npz import load_dataset, save_dataset
from ptycho_data.simulate import SimulationConfig, simulate_dataset

PIXEL_M = 2.5e-8


@pytest.fixture(scope="module")
def scan():
    """A small simulated scan: 1e6 photons per pattern, positions in object pixels."""
    return simulate_dataset(SimulationConfig(n_positions=25, nphotons=1e6, seed=4), progress=False)


def _arrays(ds, **changes):
    arrays = {"diffraction": ds.diffraction, "xcoords": ds.xcoords, "ycoords": ds.ycoords, "probeGuess": ds.probe}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


# -- units ----------------------------------------------------------------------------------------------

def test_metres_without_pixel_size_is_a_clear_error(scan, tmp_path):
    path = tmp_path / "metres.npz"
    np.savez(path, **_arrays(scan, xcoords=scan.xcoords * PIXEL_M, ycoords=scan.ycoords * PIXEL_M),
             position_unit=np.array("m"))
    with pytest.raises(DataError) as info:
        readers.open_dataset(path)
    text = str(info.value)
    assert str(path) in text and "metres" in text and "pixel_size_m" in text and "--pixel-size" in text


def test_undeclared_metres_are_refused_not_stacked(scan, tmp_path):
    """The issue's case: metres in a file that says nothing; every pattern would land on one spot."""
    path = tmp_path / "silent_metres.npz"
    np.savez(path, **_arrays(scan, xcoords=scan.xcoords * PIXEL_M, ycoords=scan.ycoords * PIXEL_M))
    with pytest.raises(DataError) as info:
        readers.open_dataset(path)
    text = str(info.value)
    assert "pixels assumed" in text and "all lie within" in text and "--position-unit m --pixel-size" in text


def test_far_beyond_any_object_is_refused(scan, tmp_path):
    path = tmp_path / "nanometres.npz"
    np.savez(path, **_arrays(scan, xcoords=scan.xcoords * 1e5, ycoords=scan.ycoords * 1e5))
    with pytest.raises(DataError, match="far beyond"):
        readers.open_dataset(path)


def test_metres_with_pixel_size_equal_pixels(scan, tmp_path):
    in_file = tmp_path / "with_key.npz"
    np.savez(in_file, **_arrays(scan, xcoords=scan.xcoords * PIXEL_M, ycoords=scan.ycoords * PIXEL_M),
             position_unit=np.array("m"), pixel_size_m=np.array(PIXEL_M))
    by_flag = tmp_path / "by_flag.npz"
    np.savez(by_flag, **_arrays(scan, xcoords=scan.xcoords * PIXEL_M, ycoords=scan.ycoords * PIXEL_M))
    for ds in (readers.open_dataset(in_file),
               readers.open_dataset(by_flag, ReadOptions(position_unit="m", pixel_size_m=PIXEL_M))):
        np.testing.assert_allclose(ds.xcoords, scan.xcoords, rtol=1e-12)
        np.testing.assert_allclose(ds.ycoords, scan.ycoords, rtol=1e-12)
        assert ds.metadata["pixel_size_m"] == PIXEL_M
    # the canonical output keeps the pixel size (positions stored in pixels)
    save_dataset(readers.open_dataset(in_file), tmp_path / "canonical.npz")
    with np.load(tmp_path / "canonical.npz") as f:
        assert str(f["position_unit"]) == "px" and float(f["pixel_size_m"]) == PIXEL_M
    np.testing.assert_allclose(load_dataset(tmp_path / "canonical.npz").xcoords, scan.xcoords)


def test_contradicting_unit_or_pixel_size_is_an_error(scan, tmp_path):
    path = tmp_path / "declared.npz"
    np.savez(path, **_arrays(scan, xcoords=scan.xcoords * PIXEL_M, ycoords=scan.ycoords * PIXEL_M),
             position_unit=np.array("m"), pixel_size_m=np.array(PIXEL_M))
    with pytest.raises(DataError, match="pixel size is 2.5e-08 m, --pixel-size says 1e-08"):
        readers.open_dataset(path, ReadOptions(pixel_size_m=1e-8))
    with pytest.raises(DataError, match="file says the positions are in 'm', --position-unit says 'px'"):
        readers.open_dataset(path, ReadOptions(position_unit="px"))
    with pytest.raises(DataError, match="key 'position_unit'"):
        np.savez(tmp_path / "bad_unit.npz", **_arrays(scan), position_unit=np.array(3))
        readers.open_dataset(tmp_path / "bad_unit.npz")
    with pytest.raises(ConfigError, match="--pixel-size converts metres"):
        ReadOptions(position_unit="px", pixel_size_m=1e-8)


# -- aliases and formats -------------------------------------------------------------------------------

def test_aliases_are_read_and_logged(scan, tmp_path, caplog):
    path = tmp_path / "aliases.npz"
    np.savez(path, diff=scan.diffraction, positions=scan.positions, probe=scan.probe, object=scan.object)
    with caplog.at_level(logging.INFO, logger="ptycho_data.npz"):
        ds = readers.open_dataset(path)
    np.testing.assert_array_equal(ds.diffraction, scan.diffraction)
    np.testing.assert_array_equal(ds.xcoords, scan.xcoords)
    np.testing.assert_array_equal(ds.ycoords, scan.ycoords)
    np.testing.assert_array_equal(ds.probe, scan.probe)
    assert ds.object is not None
    said = " | ".join(r.getMessage() for r in caplog.records)
    for alias, key in (("'probe'", "'probeGuess'"), ("'diff'", "'diffraction'"), ("'object'", "'objectGuess'")):
        assert f"key {alias} read as {key} (alias)" in said
    assert "key 'positions' (25, 2) read as columns (x, y)" in said


def test_missing_key_names_the_aliases(scan, tmp_path):
    np.savez(tmp_path / "noprobe.npz", **_arrays(scan, probeGuess=None))
    with pytest.raises(DataError, match="missing required key 'probeGuess'.*'probe'"):
        readers.open_dataset(tmp_path / "noprobe.npz")


def test_format_is_chosen_by_content_not_extension(scan, tmp_path):
    npz_named_h5 = tmp_path / "scan.h5"
    save_dataset(scan, tmp_path / "tmp.npz")
    (tmp_path / "tmp.npz").rename(npz_named_h5)
    assert readers.detect_format(npz_named_h5) == "npz"
    assert readers.open_dataset(npz_named_h5).n == scan.n
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY" + b"\0" * 20)
    with pytest.raises(DataError, match="single .npy array"):
        readers.open_dataset(tmp_path / "x.npy")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="not a supported data file"):
        readers.open_dataset(tmp_path / "notes.txt")


def test_unused_options_are_errors(scan, tmp_path):
    save_dataset(scan, tmp_path / "scan.npz")
    with pytest.raises(DataError, match="NPZ dataset, which does not use --diffraction-file"):
        readers.open_dataset(tmp_path / "scan.npz", ReadOptions(diffraction_file=tmp_path / "p.h5"))
    with pytest.raises(DataError, match="not HDF5"):
        readers.open_dataset(tmp_path / "scan.npz", ReadOptions(patterns="/a", x="/b", y="/c"))
    with pytest.raises(ConfigError, match="needs --patterns, --x and --y together"):
        ReadOptions(patterns="/entry/data/data")


def test_ptychodus_product_needs_its_patterns_file(scan, tmp_path):
    product, patterns = tmp_path / "product.h5", tmp_path / "patterns.h5"
    write_product(product, scan.object, scan, pixel_size_m=PIXEL_M)
    write_patterns(patterns, scan)
    assert readers.detect_format(product) == "ptychodus-product"
    with pytest.raises(DataError, match="Ptychodus product file.*--diffraction-file"):
        readers.open_dataset(product)
    ds = readers.open_dataset(product, ReadOptions(diffraction_file=patterns))
    np.testing.assert_allclose(ds.xcoords, scan.xcoords, atol=1e-9)
    np.testing.assert_allclose(ds.diffraction, scan.diffraction, rtol=1e-5)
    assert ds.metadata["pixel_size_m"] == PIXEL_M and ds.metadata["format"] == "ptychodus-product"
    with pytest.raises(DataError, match="does not use --pixel-size"):
        readers.open_dataset(product, ReadOptions(diffraction_file=patterns, pixel_size_m=1e-8))


def _detector_file(path, scan, *, units="m", probe=True, counts=None):
    """A generic detector layout: NeXus-like /entry/data/data counts, positions in /entry/sample."""
    counts = np.rint(np.square(scan.diffraction.astype(np.float64))).astype(np.uint32) if counts is None else counts
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=counts, chunks=(4, 64, 64))
        scale = {"m": PIXEL_M, "um": PIXEL_M * 1e6, "px": 1.0}[units]
        for axis, values in (("x", scan.xcoords), ("y", scan.ycoords)):
            ds = f.create_dataset(f"/entry/sample/{axis}", data=values * scale)
            ds.attrs["units"] = units
        if probe:
            f.create_dataset("/entry/instrument/probe", data=scan.probe[None])
    return counts


def test_generic_detector_hdf5_reads(scan, tmp_path):
    path = tmp_path / "detector.h5"
    counts = _detector_file(path, scan, units="um")
    options = ReadOptions(patterns="/entry/data/data", x="/entry/sample/x", y="/entry/sample/y",
                          probe="/entry/instrument/probe", pixel_size_m=PIXEL_M)
    ds = readers.open_dataset(path, options)
    np.testing.assert_allclose(ds.xcoords, scan.xcoords, rtol=1e-9)
    np.testing.assert_allclose(ds.diffraction, np.sqrt(counts), rtol=1e-6)
    np.testing.assert_array_equal(ds.probe, scan.probe)
    assert ds.metadata["format"] == "detector" and ds.metadata["intensities"] is True
    without_pixel = ReadOptions(patterns="/entry/data/data", x="/entry/sample/x", y="/entry/sample/y",
                                probe="/entry/instrument/probe")
    with pytest.raises(DataError, match="in metres .* no pixel size"):
        readers.open_dataset(path, without_pixel)
    no_probe = ReadOptions(patterns="/entry/data/data", x="/entry/sample/x", y="/entry/sample/y",
                           pixel_size_m=PIXEL_M)
    with pytest.raises(DataError, match="holds no probe.*--probe"):
        readers.open_dataset(path, no_probe)
    wrong_path = ReadOptions(patterns="/entry/data/frames", x="/entry/sample/x", y="/entry/sample/y")
    with pytest.raises(DataError, match=r"/entry/data/frames: no such HDF5 dataset.*/entry/data/data \(25, 64, 64\)"):
        readers.open_dataset(path, wrong_path)
    with pytest.raises(DataError, match="HDF5 file of no known layout.*--patterns"):
        readers.open_dataset(path)


def test_import_generic_detector_from_the_cli(scan, tmp_path, capsys):
    path = tmp_path / "detector.h5"
    _detector_file(path, scan, units="m")
    np.save(tmp_path / "probe.npy", scan.probe)
    out = tmp_path / "imported.npz"
    argv = ["import", str(path), "-o", str(out), "--patterns", "/entry/data/data", "--x", "/entry/sample/x",
            "--y", "/entry/sample/y", "--probe", str(tmp_path / "probe.npy"), "--pixel-size", str(PIXEL_M)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    for words in ("patterns             25 of 64 x 64", "photons per pattern", "px", "m (pixel size 2.5e-08 m)",
                  "probe in support", "overlap"):
        assert words in text
    back = load_dataset(out)
    np.testing.assert_allclose(back.xcoords, scan.xcoords, rtol=1e-9)
    assert back.metadata["pixel_size_m"] == PIXEL_M
    # lazy output, streamed chunk by chunk
    lazy_out = tmp_path / "imported_lazy"
    assert cli.main([*argv[:3], str(lazy_out), *argv[4:], "--lazy"]) == 0
    lazy = open_lazy_dataset(lazy_out)
    np.testing.assert_allclose(lazy.read(np.arange(25)), back.diffraction)


def test_import_warnings(scan, tmp_path):
    counts = np.rint(np.square(scan.diffraction.astype(np.float64))).astype(np.uint16)
    counts[:, 5, 7] = 60000                       # a hot pixel
    counts[:, 32, 30:34] = 65535                  # saturated at the 16-bit limit
    counts[0, 0, 0] = 0
    path = tmp_path / "detector.h5"
    _detector_file(path, scan, units="px", counts=counts)
    wide = np.zeros((64, 64), np.complex64)
    wide[::8, ::8] = 1.0                          # energy spread far outside the support disk
    np.save(tmp_path / "probe.npy", wide)
    sparse_x = scan.xcoords * 6                   # steps of ~48 px for a 32 px support: low overlap
    with h5py.File(path, "a") as f:
        f["/entry/sample/x"][...] = sparse_x
        f["/entry/sample/y"][...] = scan.ycoords * 6
    options = ReadOptions(patterns="/entry/data/data", x="/entry/sample/x", y="/entry/sample/y",
                          probe=str(tmp_path / "probe.npy"))
    summary = import_dataset(path, tmp_path / "out.npz", options)
    text = " | ".join(summary["warnings"])
    assert "of the probe's energy lies inside the model's support disk" in text
    assert "low overlap" in text
    assert "hot detector pixel" in text and "(5, 7)" in text
    assert "saturated" in text and "65535" in text


def test_negative_values_warned(scan, tmp_path):
    counts = np.square(scan.diffraction.astype(np.float64))
    counts[2, 0, :4] = -3.0
    path = tmp_path / "negative.h5"
    _detector_file(path, scan, units="px", counts=counts)
    options = ReadOptions(patterns="/entry/data/data", x="/entry/sample/x", y="/entry/sample/y",
                          probe="/entry/instrument/probe")
    summary = import_dataset(path, tmp_path / "out.npz", options)
    assert any("4 negative intensities" in w for w in summary["warnings"])


def test_import_leaves_nothing_half_written(scan, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, **_arrays(scan, xcoords=scan.xcoords * PIXEL_M, ycoords=scan.ycoords * PIXEL_M))
    out = tmp_path / "out.npz"
    with pytest.raises(DataError):
        import_dataset(bad, out, ReadOptions())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]
    out.write_bytes(b"previous")
    with pytest.raises(DataError, match="already exists"):
        import_dataset(bad, out, ReadOptions(position_unit="m", pixel_size_m=PIXEL_M))
    with pytest.raises(DataError):
        import_dataset(bad, out, ReadOptions(), overwrite=True)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "out.npz"]
    with pytest.raises(DataError):
        import_dataset(bad, tmp_path / "lazy_out", ReadOptions(), lazy=True)
    assert not (tmp_path / "lazy_out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "out.npz"]


def test_import_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["import", "--help"])
    text = capsys.readouterr().out
    for flag in ("-o OUT, --output OUT", "--lazy", "--overwrite", "--intensities, --no-intensities",
                 "--position-unit {px,m}", "--pixel-size METRES", "--diffraction-file FILE", "--patterns H5PATH",
                 "--x H5PATH", "--y H5PATH", "--probe H5PATH|FILE"):
        assert flag in text, flag


def test_summary_figures(scan):
    summary = geometry.summarize(scan)
    assert summary["photons_per_pattern"] == pytest.approx(1e6, rel=1e-3)
    assert summary["probe_in_support"] > 0.9
    assert summary["overlap"] == pytest.approx(1 - geometry.nearest_step(scan.positions) / 32)
    assert summary["warnings"] == []
