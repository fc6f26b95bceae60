"""The Ptychodus adapter (ptycho.ptychodus) against ptychodus==1.7.0 (nox session ``ptychodus``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ptychodus", reason="ptychodus is installed only in the nox session 'ptychodus'")
pytest.importorskip("ptycho_torch", reason="the adapter tests reconstruct with the pytorch backend")

from ptychodus.api.io import StandardFileLayout, load_product, save_diffraction_data, save_product  # noqa: E402
from ptychodus.api.object import Object, ObjectGeometry  # noqa: E402
from ptychodus.api.probe import ProbeGeometry, ProbeSequence  # noqa: E402
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence  # noqa: E402
from ptychodus.api.product import Product, ProductMetadata  # noqa: E402
from ptychodus.api.reconstruct import (  # noqa: E402
    ReconstructInput,
    TrainableReconstructor,
    prepare_reconstruct_input,
)
from ptychodus.api.simulate.diffraction import generate_diffraction_data  # noqa: E402
from ptychodus.api.simulate.object import generate_uniform_object  # noqa: E402
from ptychodus.api.simulate.probe import generate_super_gaussian_probe, rescale_probe_intensity  # noqa: E402

from ptycho import ptychodus as adapter  # noqa: E402
from ptycho.ptychodus_data import to_dataset  # noqa: E402
from ptycho_core.errors import ConfigError, DataError  # noqa: E402

N = 64
GRID = 9
STEP_PX = 4
SIZE_PX = 112


def _metadata() -> ProductMetadata:
    return ProductMetadata(name="synthetic", comments="", detector_distance_m=2.0, photon_energy_eV=8000.0,
                           probe_photon_count=0.0, exposure_time_s=1.0, mass_attenuation_m2_per_kg=0.0,
                           tomography_angle_deg=0.0)


def _truth_phase() -> np.ndarray:
    yy, xx = np.mgrid[:SIZE_PX, :SIZE_PX] / SIZE_PX
    return 0.8 * np.sin(2 * np.pi * 3 * xx) * np.cos(2 * np.pi * 2 * yy)


def _scan(pixel_m: float) -> ProbePositionSequence:
    # Ptychodus centres pixel (W-1)/2 at the object centre (0 m); offsets of k*STEP_PX put every
    # scan point on Ptychodus's half-integer pixel centres, i.e. on integer ptycho positions.
    offsets = (np.arange(GRID) - (GRID - 1) / 2) * STEP_PX
    points = [ProbePosition(index=i * GRID + j, x_m=float(ox * pixel_m), y_m=float(oy * pixel_m))
              for i, oy in enumerate(offsets) for j, ox in enumerate(offsets)]
    return ProbePositionSequence(points)


@pytest.fixture(scope="module")
def synthetic():
    """Patterns simulated by Ptychodus from a phase object; input product has a uniform guess."""
    metadata = _metadata()
    detector_pixel = 75e-6
    wavelength = metadata.photon_wavelength_m
    pixel_m = wavelength * metadata.detector_distance_m / (N * detector_pixel)
    probe_geometry = ProbeGeometry(width_px=N, height_px=N, pixel_width_m=pixel_m, pixel_height_m=pixel_m)
    probe = generate_super_gaussian_probe(probe_geometry, annular_radius_m=0.0, fwhm_m=14 * pixel_m,
                                          order_parameter=1.0)
    geometry = ObjectGeometry(width_px=SIZE_PX, height_px=SIZE_PX, pixel_width_m=pixel_m, pixel_height_m=pixel_m,
                              center_x_m=0.0, center_y_m=0.0)
    truth = Object(array=np.exp(1j * _truth_phase())[None], pixel_geometry=geometry.get_pixel_geometry(),
                   center=geometry.get_center())
    positions = _scan(pixel_m)

    def product(obj: Object, probe_) -> Product:
        return Product(metadata=metadata, probe_positions=positions, probes=ProbeSequence.from_probe(probe_),
                       object_=obj, losses=[])

    unit = generate_diffraction_data(product(truth, probe)).get_patterns().sum(axis=(1, 2)).mean()
    probe = rescale_probe_intensity(probe, float(np.sum(np.abs(probe.get_array()) ** 2)) * 1e6 / unit)
    data = generate_diffraction_data(product(truth, probe), rng=np.random.default_rng(0))
    initial = product(generate_uniform_object(geometry), probe)
    return {"data": data, "initial": initial, "truth": truth, "geometry": geometry,
            "input": prepare_reconstruct_input(data, initial)}


def _phase_error(obj: np.ndarray, truth_phase: np.ndarray) -> float:
    """RMS phase error over the scanned region after removing the best global phase offset."""
    lo, hi = SIZE_PX // 2 - 14, SIZE_PX // 2 + 14
    diff = np.angle(obj[lo:hi, lo:hi] * np.exp(-1j * truth_phase[lo:hi, lo:hi]))
    offset = np.angle(np.mean(np.exp(1j * diff)))
    return float(np.sqrt(np.mean(np.angle(np.exp(1j * (diff - offset))) ** 2)))


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    """The pytorch reconstructor trained briefly through the adapter's own train API."""
    work = tmp_path_factory.mktemp("ptychodus_train")
    library = adapter.PtychoReconstructorLibrary()
    library.settings.epochs.set_value(6)
    library.settings.filter_scale.set_value(1)
    library.settings.batch_size.set_value(8)
    reconstructor = {r.name: r for r in library}["pytorch"]
    reconstructor.export_training_data(work / "train.npz", synthetic["input"])
    outputs = list(reconstructor.train(work, work))
    return {"reconstructor": reconstructor, "outputs": outputs, "bundle": work / "model.zip", "library": library}


def test_library_name_and_reconstructors_follow_ptychodus_rules():
    library = adapter.PtychoReconstructorLibrary()
    assert library.name == "ptycho" and "_" not in library.name
    names = [r.name for r in library]
    assert "pytorch" in names
    assert all(isinstance(r, TrainableReconstructor) for r in library)
    rec = next(iter(library))
    assert rec.get_model_file_extension() == ".zip" and "*.zip" in rec.get_model_file_filter()
    assert "*.npz" in rec.get_training_data_file_filter()


def test_import_does_not_load_a_framework():
    code = ("import sys, ptycho.ptychodus as p; list(p.PtychoReconstructorLibrary()); "
            "bad=[m for m in ('torch','tensorflow','keras','lightning') if m in sys.modules]; "
            "sys.exit(f'framework imported: {bad}' if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_conversion_to_dataset(synthetic):
    inp: ReconstructInput = synthetic["input"]
    bad = np.zeros((N, N), dtype=bool)
    bad[3, 5] = True
    patterns = np.array(inp.diffraction_patterns, copy=True)
    patterns[:, 3, 5] = 1e9
    ds = to_dataset(ReconstructInput(patterns, bad, inp.product))
    assert ds.n == GRID * GRID and ds.N == N
    assert np.all(ds.diffraction[:, 3, 5] < 1e3)  # inpainted, not sqrt(1e9)
    np.testing.assert_allclose(ds.diffraction[:, 10, 10], np.sqrt(inp.diffraction_patterns[:, 10, 10]), rtol=1e-6)
    # Positions: integer ptycho pixels symmetric about the object centre SIZE_PX/2.
    np.testing.assert_allclose(ds.xcoords.reshape(GRID, GRID)[0], SIZE_PX / 2 + (np.arange(GRID) - 4) * STEP_PX)
    assert ds.object.shape == (SIZE_PX, SIZE_PX)


def test_bad_input_names_the_field(synthetic):
    inp = synthetic["input"]
    with pytest.raises(DataError, match="bad_pixels"):
        to_dataset(ReconstructInput(inp.diffraction_patterns, np.zeros((N, N + 1), bool), inp.product))
    with pytest.raises(DataError, match="diffraction_patterns"):
        to_dataset(ReconstructInput(inp.diffraction_patterns[:, :48, :48], np.zeros((48, 48), bool),
                                            inp.product))
    rec = {r.name: r for r in adapter.PtychoReconstructorLibrary()}["pytorch"]
    with pytest.raises(ConfigError, match="no model loaded"):
        list(rec.reconstruct(inp))


def test_train_reports_losses_and_saves_a_bundle(trained):
    (out,) = trained["outputs"]
    assert len(out.training_loss) == 6 and all(np.isfinite(v.value) for v in out.training_loss)
    assert len(out.validation_loss) == 1 and np.isfinite(out.validation_loss[0].value)
    assert trained["bundle"].is_file() and trained["reconstructor"].is_model_loaded()


def test_direct_reconstruct_improves_phase_over_initial_guess(synthetic, trained):
    inp = synthetic["input"]
    (result,) = list(trained["reconstructor"].reconstruct(inp))
    out = result.product
    guess = inp.product.object_
    assert out.object_.get_pixel_geometry() == guess.get_pixel_geometry()
    assert out.object_.get_center() == guess.get_center()
    assert out.object_.get_array().shape == guess.get_array().shape
    assert out.probes is inp.product.probes and out.probe_positions is inp.product.probe_positions
    assert "ptycho_pytorch" in out.metadata.comments
    truth = _truth_phase()
    before = _phase_error(guess.get_layer(0), truth)
    after = _phase_error(out.object_.get_layer(0), truth)
    assert after < before, (after, before)


def test_refine_iterations_setting_lowers_the_phase_error(synthetic, trained):
    library, reconstructor = trained["library"], trained["reconstructor"]
    truth = _truth_phase()
    plain = next(iter(reconstructor.reconstruct(synthetic["input"]))).product.object_.get_layer(0)
    library.settings.refine_iterations.set_value(10)
    try:
        refined = next(iter(reconstructor.reconstruct(synthetic["input"]))).product.object_.get_layer(0)
    finally:
        library.settings.refine_iterations.set_value(0)
    assert _phase_error(refined, truth) < 0.5 * _phase_error(plain, truth)


def test_save_and_load_model_round_trip(trained, synthetic, tmp_path):
    rec = trained["reconstructor"]
    rec.save_model(tmp_path / "copy")
    fresh = {r.name: r for r in adapter.PtychoReconstructorLibrary()}["pytorch"]
    fresh.load_model_from_file(tmp_path / "copy.zip")
    a = next(iter(rec.reconstruct(synthetic["input"]))).product.object_.get_array()
    b = next(iter(fresh.reconstruct(synthetic["input"]))).product.object_.get_array()
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_batch_reconstruct_through_ptychodus_model_core(synthetic, trained, tmp_path):
    """Ptychodus's own batch path: settings.ini picks ptycho_pytorch, model.zip is loaded from the input dir."""
    inp_dir, out_dir = tmp_path / "in", tmp_path / "out"
    inp_dir.mkdir()
    save_diffraction_data(inp_dir / StandardFileLayout.DIFFRACTION, synthetic["data"])
    save_product(inp_dir / StandardFileLayout.PRODUCT, synthetic["initial"])
    (inp_dir / StandardFileLayout.SETTINGS).write_text("[Processing]\nAlgorithm = ptycho_pytorch\n")
    (inp_dir / "model.zip").write_bytes(trained["bundle"].read_bytes())
    with adapter.create_model_core() as core:
        assert "ptycho_pytorch" in list(core.processing_core.processing_api.available_reconstructors())
        code = core.batch_mode_execute("reconstruct", inp_dir, out_dir)
        current = core.processing_core.algorithm_parameter.get_current_reconstructor()
    assert int(code) == 0
    assert isinstance(current, adapter.PtychoReconstructor) and current.name == "pytorch"
    (written,) = sorted(out_dir.glob("product*.h5"))
    product = load_product(written)
    assert "ptycho_pytorch" in product.metadata.comments
    truth = _truth_phase()
    after = _phase_error(product.object_.get_layer(0), truth)
    assert after < _phase_error(synthetic["initial"].object_.get_layer(0), truth)
