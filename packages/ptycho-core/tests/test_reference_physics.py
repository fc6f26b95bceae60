"""Reference diffraction, normalisation and probe (docs/conventions.md s2)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_core import reference as R
from ptycho_core.errors import ConfigError, DataError


def _cplx(rng, *shape):
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def test_diffract_is_parseval_and_intensity_is_its_square():
    psi = _cplx(np.random.default_rng(0), 3, 32, 32)
    amp = R.diffract(psi)
    assert amp.shape == psi.shape and amp.dtype == np.float32
    np.testing.assert_allclose((amp.astype(np.float64) ** 2).sum(axis=(1, 2)),
                               (np.abs(psi.astype(np.complex128)) ** 2).sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(R.intensity(psi), amp.astype(np.float64) ** 2, rtol=1e-5)


def test_diffract_zero_frequency_at_centre_and_axis_orientation():
    N = 16
    flat = np.ones((N, N), np.complex64)
    amp = R.diffract(flat)
    assert np.unravel_index(np.argmax(amp), amp.shape) == (N // 2, N // 2)
    assert amp[N // 2, N // 2] == pytest.approx(N)
    assert amp.sum() == pytest.approx(N, rel=1e-5)  # all the energy is in one pixel
    c = np.arange(N)[None, :]
    tilt = np.exp(2j * np.pi * 3 * c / N) * np.ones((N, 1))  # 3 cycles along x (columns)
    assert np.unravel_index(np.argmax(R.diffract(tilt)), (N, N)) == (N // 2, N // 2 + 3)


def test_normalisation_factor_sets_mean_power():
    rng = np.random.default_rng(1)
    amps = rng.uniform(0, 5, size=(7, 16, 16)).astype(np.float32)
    k = R.normalisation_factor(amps)
    assert isinstance(k, float)
    power = np.mean(np.sum((k * amps.astype(np.float64)) ** 2, axis=(1, 2)))
    assert power == pytest.approx((16 / 2) ** 2, rel=1e-12)
    assert R.normalisation_factor(2 * amps) == pytest.approx(k / 2, rel=1e-12)


def test_normalisation_factor_errors():
    with pytest.raises(DataError, match="all patterns are zero"):
        R.normalisation_factor(np.zeros((2, 8, 8)))
    with pytest.raises(DataError, match="amplitudes"):
        R.normalisation_factor(np.ones((8, 8)))
    with pytest.raises(DataError, match="square"):
        R.normalisation_factor(np.ones((2, 8, 6)))
    bad = np.ones((2, 8, 8))
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        R.normalisation_factor(bad)


def test_physics_scale():
    assert R.physics_scale(1e6, 64) == pytest.approx(1000 / 32, rel=1e-15)
    assert R.physics_scale(1e9, 128) == pytest.approx(np.sqrt(1e9) / 64, rel=1e-15)
    with pytest.raises(ConfigError, match="nphotons"):
        R.physics_scale(0, 64)
    with pytest.raises(DataError, match="N"):
        R.physics_scale(1e6, 0)


def test_probe_disk_mask_by_hand():
    m = R.probe_disk_mask(8)  # centre (4, 4), radius 2: the 13 lattice points with d^2 <= 4
    assert m.shape == (8, 8) and m.dtype == np.float32
    assert m.sum() == 13
    assert m[4, 4] == m[2, 4] == m[4, 6] == m[5, 5] == 1
    assert m[5, 6] == m[3, 2] == m[1, 4] == 0


def test_gaussian_smooth_of_a_delta_is_a_gaussian():
    n, sigma = 64, 2.0
    delta = np.zeros((n, n), np.complex64)
    delta[32, 30] = 1 - 2j
    out = R.gaussian_smooth(delta, sigma)
    assert out.dtype == np.complex64
    r, c = np.arange(n)[:, None], np.arange(n)[None, :]
    g = np.exp(-((r - 32) ** 2 + (c - 30) ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    np.testing.assert_allclose(out, (1 - 2j) * g, atol=1e-6)
    assert out.sum() == pytest.approx(1 - 2j, abs=1e-5)  # the mean is preserved


def test_gaussian_smooth_real_and_identity():
    rng = np.random.default_rng(2)
    img = rng.normal(size=(2, 16, 20))
    out = R.gaussian_smooth(img, 1.5)
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out.mean(axis=(1, 2)), img.mean(axis=(1, 2)), atol=1e-6)
    assert out.std() < 0.5 * img.std()
    np.testing.assert_array_equal(R.gaussian_smooth(img, 0.0), img.astype(np.float32))
    with pytest.raises(ConfigError, match="sigma"):
        R.gaussian_smooth(img, -1.0)


@pytest.mark.parametrize(("probe_scale", "sigma"), [(4.0, 0.0), (2.5, 0.0), (4.0, 1.5)])
def test_normalize_probe_sets_mean_over_disk(probe_scale, sigma):
    rng = np.random.default_rng(3)
    probe = _cplx(rng, 32, 32)
    p_n = R.normalize_probe(probe, probe_scale=probe_scale, sigma=sigma)
    assert p_n.dtype == np.complex64 and p_n.shape == (32, 32)
    disk = R.probe_disk_mask(32)
    assert np.mean(np.abs(disk * p_n.astype(np.complex128))) == pytest.approx(1 / probe_scale, rel=1e-6)
    source = R.gaussian_smooth(probe, sigma).astype(np.complex128)
    ratio = p_n / source
    np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-5)  # P_n is proportional to (smoothed) P
    assert abs(ratio[0, 0].imag) < 1e-6 * abs(ratio[0, 0])  # ... by a real positive factor
    assert ratio[0, 0].real > 0


def test_normalize_probe_mask_and_errors():
    probe = _cplx(np.random.default_rng(4), 16, 16)
    plain = R.normalize_probe(probe)
    masked = R.normalize_probe(probe, probe_mask=True)
    disk = R.probe_disk_mask(16).astype(bool)
    np.testing.assert_array_equal(masked[~disk], 0)
    np.testing.assert_array_equal(masked[disk], plain[disk])
    outside_only = np.ones((16, 16), np.complex64)
    outside_only[disk] = 0
    with pytest.raises(DataError, match="disk"):
        R.normalize_probe(outside_only)
    with pytest.raises(ConfigError, match="probe_scale"):
        R.normalize_probe(probe, probe_scale=0.0)
    with pytest.raises(DataError, match="square"):
        R.normalize_probe(probe[:, :10])
