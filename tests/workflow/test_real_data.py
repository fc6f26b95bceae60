"""Real data through the commands (issue 18): units, photons from the data, facility formats, strict flags."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ptycho import workflow
from ptycho_core import cli
from ptycho_core.config import TrainingConfig
from ptycho_core.errors import ConfigError

PIXEL_M = 2.5e-8


@pytest.fixture(scope="module")
def scan():
    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    return simulate_dataset(SimulationConfig(n_positions=36, nphotons=1e6, seed=1), progress=False)


def _run(tmp_path, name, *args):
    out = tmp_path / name
    assert cli.main(["run", "--backend", "dummy", "--nepochs", "1", "--output-dir", str(out), *args]) == 0
    with np.load(out / "reconstruction.npz") as f:
        return f["object"], f["origin"]


def test_metres_with_pixel_size_reconstruct_like_pixels(installed_dummy, scan, tmp_path, capsys):
    pixels = tmp_path / "pixels.npz"
    arrays = {"diffraction": scan.diffraction, "probeGuess": scan.probe, "objectGuess": scan.object}
    np.savez(pixels, xcoords=scan.xcoords, ycoords=scan.ycoords, **arrays)
    metres = tmp_path / "metres.npz"
    np.savez(metres, xcoords=scan.xcoords * PIXEL_M, ycoords=scan.ycoords * PIXEL_M, **arrays)
    reference, origin = _run(tmp_path, "px", "--train-data", str(pixels))
    # without a pixel size: a clear error, exit 2, nothing reconstructed
    assert cli.main(["run", "--backend", "dummy", "--nepochs", "1", "--output-dir", str(tmp_path / "bad"),
                     "--train-data", str(metres)]) == 2
    err = capsys.readouterr().err
    assert "metres.npz" in err and "--position-unit m --pixel-size" in err
    assert not (tmp_path / "bad" / "reconstruction.npz").exists()
    converted, origin_m = _run(tmp_path, "m", "--train-data", str(metres), "--position-unit", "m",
                               "--pixel-size", str(PIXEL_M))
    np.testing.assert_allclose(converted, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(origin_m, origin)


def test_photons_come_from_the_data(installed_dummy, scan, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ptycho.workflow"):
        result = workflow.train(TrainingConfig(backend="dummy", nepochs=1, output_dir=tmp_path), dataset=scan)
    assert result.model.training_config.nphotons == pytest.approx(1e6, rel=1e-3)
    assert any("photons per pattern measured from the data" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ptycho.workflow"):
        result = workflow.train(TrainingConfig(backend="dummy", nepochs=1, output_dir=tmp_path, nphotons=1e9),
                                dataset=scan)
    assert result.model.training_config.nphotons == 1e9  # an explicit value is an override
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned and "overrides the 1e+06 photons per pattern" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ptycho.workflow"):
        workflow.train(TrainingConfig(backend="dummy", nepochs=1, output_dir=tmp_path, nphotons=1.5e6), dataset=scan)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]  # within 2x: no warning


def test_bundle_records_the_measured_photons(installed_dummy, scan, tmp_path):
    from ptycho_core.bundle import load_bundle
    from ptycho_data.npz import save_dataset

    save_dataset(scan, tmp_path / "scan.npz")
    assert cli.main(["train", "--backend", "dummy", "--nepochs", "1", "--train-data", str(tmp_path / "scan.npz"),
                     "--output-dir", str(tmp_path / "t")]) == 0
    assert load_bundle(tmp_path / "t" / "model").training_config.nphotons == pytest.approx(1e6, rel=1e-3)


def test_ptychodus_product_trains_and_infers_from_the_cli(installed_dummy, scan, tmp_path, capsys):
    from ptycho_data.hdf5 import write_patterns, write_product

    product, patterns = tmp_path / "product.h5", tmp_path / "patterns.h5"
    write_product(product, scan.object, scan, pixel_size_m=PIXEL_M)
    write_patterns(patterns, scan)
    # a product alone is not enough, and the error says what to pass
    assert cli.main(["train", "--backend", "dummy", "--train-data", str(product), "--nepochs", "1",
                     "--output-dir", str(tmp_path / "t")]) == 2
    assert "--diffraction-file" in capsys.readouterr().err
    assert cli.main(["train", "--backend", "dummy", "--train-data", str(product), "--diffraction-file",
                     str(patterns), "--nepochs", "1", "--output-dir", str(tmp_path / "t")]) == 0
    assert cli.main(["infer", "--model-path", str(tmp_path / "t" / "model"), "--test-data", str(product),
                     "--diffraction-file", str(patterns), "--output-dir", str(tmp_path / "r")]) == 0
    with np.load(tmp_path / "r" / "reconstruction.npz") as f:
        assert f["object"].shape == scan.object.shape  # stitched on the product's object grid
    assert (tmp_path / "r" / "metrics.json").is_file()


def test_unused_and_contradictory_flags_are_errors(installed_dummy, scan, tmp_path, capsys):
    from ptycho_data.npz import save_dataset

    data = tmp_path / "scan.npz"
    save_dataset(scan, data)
    assert cli.main(["train", "--backend", "dummy", "--train-data", str(data), "--test-data", "/nope/x.npz",
                     "--output-dir", str(tmp_path / "t")]) == 2
    assert "--test-data-file/--test-data: ptycho train does not reconstruct" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
    assert cli.main(["train", "--backend", "dummy", "--nepochs", "1", "--train-data", str(data),
                     "--output-dir", str(tmp_path / "t")]) == 0
    assert cli.main(["infer", "--model-path", str(tmp_path / "t" / "model"), "--test-data", str(data),
                     "--gridsize", "2", "--output-dir", str(tmp_path / "r")]) == 2
    assert "--gridsize: the model bundle (--model-path) fixes the model settings" in capsys.readouterr().err
    assert cli.main(["infer", "--model-path", str(tmp_path / "t" / "model"), "--test-data", str(data),
                     "--patterns", "/entry/data/data", "--output-dir", str(tmp_path / "r")]) == 2
    assert "needs --patterns, --x and --y together" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "--test-data" not in capsys.readouterr().out


def test_run_takes_the_stitching_flags(installed_dummy, scan, tmp_path):
    from ptycho_core.bundle import load_bundle
    from ptycho_data.npz import save_dataset

    save_dataset(scan, tmp_path / "scan.npz")
    _run(tmp_path, "o", "--train-data", str(tmp_path / "scan.npz"), "--stitch-crop", "16", "--flip-x")
    icfg = load_bundle(tmp_path / "o" / "model").metadata["inference_config"]
    assert icfg.stitch_crop == 16 and icfg.flip_x is True


def test_read_options_validation():
    from ptycho_core.config import ReadOptions

    with pytest.raises(ConfigError, match="position_unit"):
        ReadOptions(position_unit="mm")
    with pytest.raises(ConfigError, match="--diffraction-file .* describe different inputs"):
        ReadOptions(diffraction_file="p.h5", patterns="/a", x="/b", y="/c")


def test_imported_lazy_directory_trains_with_photons_from_the_data(installed_dummy, scan, tmp_path):
    from ptycho_core.bundle import load_bundle
    from ptycho_data.npz import save_dataset

    save_dataset(scan, tmp_path / "scan.npz")
    assert cli.main(["import", str(tmp_path / "scan.npz"), "-o", str(tmp_path / "lazy"), "--lazy"]) == 0
    assert (tmp_path / "lazy" / "meta.json").is_file()
    _run(tmp_path, "o", "--train-data", str(tmp_path / "lazy"))
    assert load_bundle(tmp_path / "o" / "model").training_config.nphotons == pytest.approx(1e6, rel=1e-3)
    # a lazy dataset is amplitudes in pixels by format: reading flags are an error, not ignored
    assert cli.main(["run", "--backend", "dummy", "--nepochs", "1", "--output-dir", str(tmp_path / "x"),
                     "--train-data", str(tmp_path / "lazy"), "--intensities"]) == 2


def test_training_says_how_much_of_the_probe_lies_outside_the_object_support(installed_dummy, scan, tmp_path,
                                                                             caplog):
    from ptycho_core.config import ModelConfig
    from ptycho_data.simulate import SimulationConfig, make_probe

    grid2 = ModelConfig(gridsize=2)
    with caplog.at_level(logging.INFO, logger="ptycho.workflow"):
        workflow.train(TrainingConfig(backend="dummy", nepochs=1, output_dir=tmp_path, model=grid2), dataset=scan)
    said = [r for r in caplog.records if r.getMessage().startswith("probe: ")]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert "0.78 % of its energy lies outside the central 32 x 32 window" in said[0].getMessage()
    assert "biases the network's amplitude" in said[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ptycho.workflow"):
        wide = make_probe(SimulationConfig(probe_kind="gaussian", probe_sigma=12.8))  # 15 % outside
        assert workflow.report_probe_support(wide, grid2) == pytest.approx(0.148, abs=1e-3)
        narrow = make_probe(SimulationConfig(probe_kind="gaussian", probe_sigma=6.4))  # 0.09 % outside
        assert workflow.report_probe_support(narrow, grid2) == pytest.approx(8.6e-4, abs=1e-5)
        assert workflow.report_probe_support(wide, ModelConfig(gridsize=1)) is None  # the whole patch is modelled
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "15 %" in warned[0] and "a wider object_window" in warned[0]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "0.086 %" in infos[0] and "biases" not in infos[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ptycho.workflow"):  # a wider window holds more of the same probe
        assert workflow.report_probe_support(wide, ModelConfig(gridsize=2, object_window=0.75)) == pytest.approx(
            0.0153, abs=1e-4)
        assert workflow.report_probe_support(wide, ModelConfig(gridsize=2, object_window=1.0)) == 0.0
    said = [r.getMessage() for r in caplog.records]
    assert "central 48 x 48 window" in said[0] and "object_window 0.75" in said[0] and "central 64 x 64" in said[1]
