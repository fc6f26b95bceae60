"""Reconstruction metrics (physics.md s7): perfect scores, registration, phase plane, PSNR, FRC."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from ptycho_core.errors import ConfigError, DataError
from ptycho_data.metrics import (
    PSNR_CAP,
    align_to_truth,
    covered_box,
    crop_box,
    evaluate_reconstruction,
    evaluated_box,
    frc_crossing,
    frc_curve,
    psnr,
    remove_phase_plane,
    upstream_psnr_to_unit,
)

KEYS = {"mae", "psnr", "ssim", "frc50", "frc17", "frc50_px", "frc17_px"}


def smooth_object(shape=(96, 96), seed=0, sigma=2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    amp = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    phase = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    amp = 0.5 + 0.5 * (amp - amp.min()) / np.ptp(amp)
    phase = (phase - phase.mean()) / np.ptp(phase) * 2.0
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def test_identical_images_score_perfectly_and_result_is_strict_json():
    obj = smooth_object()
    m = evaluate_reconstruction(obj, obj)
    for part in ("amplitude", "phase"):
        assert set(m[part]) == KEYS
        assert m[part]["ssim"] == pytest.approx(1.0, abs=1e-9)
        assert m[part]["psnr"] == PSNR_CAP
        assert m[part]["mae"] == pytest.approx(0.0, abs=1e-6)
        assert m[part]["frc50"] == 1.0 and m[part]["frc17"] == 1.0
        assert m[part]["frc50_px"] == 2.0
    assert m["shift"] is None
    assert m["amplitude_scale"] == pytest.approx(1.0)
    json.loads(json.dumps(m, allow_nan=False))


def test_frc_of_an_image_with_itself_is_one_and_of_independent_noise_is_low():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((64, 64))
    freqs, frc = frc_curve(a, a)
    np.testing.assert_allclose(frc, 1.0, atol=1e-12)
    assert freqs[-1] == pytest.approx(1.0) and freqs[0] == pytest.approx(2 / 64)
    _, frc_noise = frc_curve(a, rng.standard_normal((64, 64)))
    assert np.mean(frc_noise) < 0.3


def test_frc_of_blurred_copy_drops_at_high_frequency():
    a = np.random.default_rng(2).standard_normal((80, 80))
    b = ndimage.gaussian_filter(a, 1.5) + 0.05 * np.random.default_rng(3).standard_normal((80, 80))
    freqs, frc = frc_curve(a, b)
    f50, f17 = frc_crossing(freqs, frc, 0.5), frc_crossing(freqs, frc, 1 / 7)
    assert 0.0 < f50 < f17 < 1.0
    assert frc[0] > 0.9


def test_frc_crossing_interpolates_between_rings():
    freqs = np.array([0.25, 0.5, 0.75, 1.0])
    assert frc_crossing(freqs, np.array([1.0, 0.8, 0.2, 0.1]), 0.5) == pytest.approx(0.625)
    assert frc_crossing(freqs, np.array([0.9, 0.9, 0.9, 0.9]), 0.5) == 1.0


def test_three_pixel_shift_is_found_by_registration():
    obj = smooth_object((96, 96), seed=4)
    moved = np.roll(obj, 3, axis=1)  # content moved 3 columns right (x + 3)
    m = evaluate_reconstruction(moved, obj, register=True)
    dx, dy = m["shift"]
    assert dx == pytest.approx(-3.0, abs=0.06) and dy == pytest.approx(0.0, abs=0.06)
    assert m["amplitude"]["ssim"] > 0.999 and m["phase"]["ssim"] > 0.999
    unregistered = evaluate_reconstruction(moved, obj)
    assert unregistered["amplitude"]["ssim"] < 0.9


def test_subpixel_shift_is_found_by_registration():
    obj = smooth_object((96, 96), seed=5, sigma=3.0)
    moved = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(obj), (-1.5, 2.25)))
    m = evaluate_reconstruction(moved, obj, register=True, upsample=20)
    assert m["shift"] == pytest.approx([-2.25, 1.5], abs=0.06)


def test_phase_plane_removal_makes_a_ramp_only_difference_vanish():
    obj = smooth_object((80, 90), seed=6)
    yy, xx = np.mgrid[0:80, 0:90]
    ramp = 0.35 * xx - 0.2 * yy + 2.5  # several wraps across the image
    m = evaluate_reconstruction(obj * np.exp(1j * ramp), obj)
    assert m["phase"]["mae"] < 1e-5
    assert m["phase"]["ssim"] > 0.99999
    assert m["amplitude"]["mae"] < 1e-6
    assert m["phase_plane"]["slope_x"] == pytest.approx(0.35, abs=1e-6)
    assert m["phase_plane"]["slope_y"] == pytest.approx(-0.2, abs=1e-6)
    uniform = evaluate_reconstruction(obj * np.exp(1j * ramp), obj, phase_weighting="uniform")
    assert uniform["phase"]["mae"] < 1e-5


def test_remove_phase_plane_rejects_unknown_weighting():
    obj = smooth_object((16, 16))
    with pytest.raises(ConfigError, match="phase_weighting"):
        remove_phase_plane(obj, obj, "cubic")


def test_amplitude_is_scaled_by_the_ratio_of_means():
    obj = smooth_object(seed=7)
    m = evaluate_reconstruction(obj * 3.0, obj)
    assert m["amplitude_scale"] == pytest.approx(1 / 3.0, rel=1e-6)
    assert m["amplitude"]["mae"] < 1e-6


def test_psnr_matches_the_formula_for_known_noise():
    rng = np.random.default_rng(8)
    truth = rng.uniform(0, 1, (128, 128))
    sigma = 0.05
    noisy = truth + sigma * rng.standard_normal(truth.shape)
    mse = np.mean((noisy - truth) ** 2)
    assert psnr(truth, noisy, 1.0) == pytest.approx(10 * math.log10(1.0 / mse), rel=1e-12)
    assert psnr(truth, noisy, 1.0) == pytest.approx(-20 * math.log10(sigma), abs=0.15)
    assert psnr(truth, truth, 1.0) == PSNR_CAP


def test_phase_psnr_uses_two_pi_range():
    obj = smooth_object((128, 128), seed=9)
    sigma = 0.05
    noise = sigma * np.random.default_rng(10).standard_normal(obj.shape)
    m = evaluate_reconstruction(obj * np.exp(1j * noise), obj)
    expected = 10 * math.log10((2 * np.pi) ** 2 / sigma**2)
    assert m["phase"]["psnr"] == pytest.approx(expected, abs=0.2)
    assert m["phase"]["mae"] == pytest.approx(sigma * math.sqrt(2 / math.pi), rel=0.05)


def test_upstream_psnr_conversion():
    assert upstream_psnr_to_unit(60.0) == pytest.approx(60.0 - 48.1308, abs=1e-4)
    a = np.random.default_rng(11).uniform(0, 1, (32, 32))
    b = np.clip(a + 0.02, 0, 1)
    assert upstream_psnr_to_unit(psnr(a * 255, b * 255, 255.0) + 48.1308) == pytest.approx(
        psnr(a * 255, b * 255, 255.0), abs=1e-3)
    assert psnr(a, b, 1.0) == pytest.approx(psnr(a * 255, b * 255, 255.0), abs=1e-9)


def test_crop_to_scanned_region_ignores_everything_outside():
    obj = smooth_object((100, 100), seed=12)
    rec = obj.copy()
    rec[:20] = 0.0  # unscanned garbage
    rec[:, 85:] = 5.0
    positions = np.array([[30.2, 25.0], [70.0, 40.5], [50.0, 75.9]])
    m = evaluate_reconstruction(rec, obj, positions, crop_margin=2, coverage_radius=None)
    assert m["crop"] == {"x0": 28, "x1": 73, "y0": 23, "y1": 79}
    assert m["amplitude"]["ssim"] == pytest.approx(1.0, abs=1e-9)
    assert crop_box((100, 100), positions, 0) == (25, 77, 30, 71)
    assert crop_box((100, 100), None) == (0, 100, 0, 100)
    damaged = evaluate_reconstruction(rec, obj, positions, crop_margin=30, coverage_radius=None)
    assert damaged["amplitude"]["ssim"] < 0.9


def test_bad_inputs_are_clear_errors():
    obj = smooth_object((32, 32))
    with pytest.raises(DataError, match="shape"):
        evaluate_reconstruction(obj[:, :30], obj)
    with pytest.raises(DataError, match="positions"):
        evaluate_reconstruction(obj, obj, np.zeros((3, 3)))
    with pytest.raises(DataError, match="smaller than 7"):
        evaluate_reconstruction(obj, obj, np.array([[10.0, 10.0]]), crop_margin=1)
    with pytest.raises(ConfigError, match="coverage_radius"):
        evaluate_reconstruction(obj, obj, np.array([[10.0, 10.0]]), crop_margin=8, coverage_radius=-1.0)
    bad = obj.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="reconstruction"):
        evaluate_reconstruction(bad, obj)


def test_coverage_radius_drops_the_unscanned_corners_of_the_box():
    obj = smooth_object((120, 120), seed=13)
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    ring = np.concatenate([np.stack([60 + r * np.cos(angles), 60 + r * np.sin(angles)], 1) for r in (0, 8, 16, 24, 32)])
    box = crop_box(obj.shape, ring)
    y0, y1, x0, x1 = covered_box(box, ring, 10.0)
    assert (y0, y1, x0, x1) != box and y0 > box[0] and x1 < box[3]
    rows, cols = np.mgrid[y0:y1, x0:x1]
    dist = np.min(np.hypot(cols.ravel()[:, None] - ring[:, 0], rows.ravel()[:, None] - ring[:, 1]), axis=1)
    assert dist.max() <= 10.0
    assert (y1 - y0) * (x1 - x0) > 0.4 * (box[1] - box[0]) * (box[3] - box[2])
    rec = obj.copy()
    far = np.min(np.hypot(*(np.mgrid[0:120, 0:120][::-1, :, :, None] - ring.T[:, None, None, :])), axis=-1) > 10
    rec[far] = 0.0  # what stitching leaves outside the covered disc
    assert evaluate_reconstruction(rec, obj, ring)["amplitude"]["ssim"] == pytest.approx(1.0, abs=1e-9)
    whole_box = evaluate_reconstruction(rec, obj, ring, coverage_radius=None)["amplitude"]
    assert whole_box["ssim"] < 0.995 and whole_box["mae"] > 1e-3


def test_stitched_true_patches_of_a_simulated_raster_score_perfectly():
    from ptycho_core import reference
    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    ds = simulate_dataset(SimulationConfig(n_positions=25, nphotons=1e4, seed=2), progress=False)
    patches = reference.extract_patches(ds.object, ds.positions, ds.N)
    shape, origin = reference.canvas_geometry(ds.positions, 20, ds.object.shape)
    rec = reference.reassemble(patches, ds.positions, 20, shape, origin)
    m = evaluate_reconstruction(rec, ds.object, ds.positions)
    assert m["amplitude"]["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["phase"]["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["crop"] == {"x0": int(ds.xcoords.min()), "x1": int(ds.xcoords.max()) + 1,
                         "y0": int(ds.ycoords.min()), "y1": int(ds.ycoords.max()) + 1}


def test_align_to_truth_applies_the_metrics_alignment_to_every_pixel():
    obj = smooth_object((80, 90), seed=6)
    yy, xx = np.mgrid[0:80, 0:90]
    rec = 0.5 * obj * np.exp(1j * (0.05 * xx - 0.03 * yy + 2.0))
    positions = np.array([[20.0, 15.0], [70.0, 15.0], [20.0, 60.0], [70.0, 60.0]])
    m = evaluate_reconstruction(rec, obj, positions, coverage_radius=None)
    aligned = align_to_truth(rec, m)
    assert aligned.shape == obj.shape
    np.testing.assert_allclose(aligned, obj, atol=1e-5)  # the plane fitted inside the box holds outside it
    assert evaluated_box(m) == (15, 61, 20, 71)


def test_align_to_truth_undoes_the_registration_shift():
    obj = smooth_object((64, 64), seed=4)
    moved = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(obj), (-1.5, 2.25)))
    m = evaluate_reconstruction(moved, obj, register=True, upsample=20)
    y0, y1, x0, x1 = evaluated_box(m)
    assert (y0, x0) == (3, 3) and (y1, x1) == (61, 61)  # ceil(2.25) border pixels dropped
    aligned = align_to_truth(moved, m)
    assert np.abs(aligned - obj)[y0:y1, x0:x1].max() < 0.05
