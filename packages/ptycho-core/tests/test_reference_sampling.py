"""Reference sampling, translation and patch extraction (docs/conventions.md s1)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_core import reference as R
from ptycho_core import reference_sampling
from ptycho_core.errors import DataError


def _cplx(rng, *shape):
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def _shift_int(img, dx, dy):
    """Integer shift with zero fill, written with plain slicing."""
    out = np.zeros_like(img)
    H, W = img.shape[-2:]
    if abs(dx) >= W or abs(dy) >= H:
        return out
    out[..., max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
        img[..., max(-dy, 0):H - max(dy, 0), max(-dx, 0):W - max(dx, 0)]
    return out


def test_translate_moves_content_dx_right_and_dy_down():
    img = np.zeros((8, 9), np.float32)
    img[2, 3] = 5.0
    out = R.translate(img, 2, 1)
    assert out.dtype == np.float32
    assert list(map(tuple, np.argwhere(out))) == [(3, 5)]
    assert out[3, 5] == 5.0
    out = R.translate(img, -3, -2)
    assert list(map(tuple, np.argwhere(out))) == [(0, 0)]


@pytest.mark.parametrize(("dx", "dy"), [(0, 0), (3, -2), (-5, 4), (1, 0), (0, -7), (20, 1)])
def test_integer_translate_is_exact(dx, dy):
    img = _cplx(np.random.default_rng(0), 12, 15)
    out = R.translate(img, dx, dy)
    assert out.dtype == np.complex64
    np.testing.assert_array_equal(out, _shift_int(img, dx, dy))


def test_subpixel_translate_splits_a_point_between_neighbours():
    img = np.zeros((6, 6), np.float64)
    img[2, 2] = 1.0
    out = R.translate(img, 0.25, 0.5)
    expected = np.zeros((6, 6))
    expected[2, 2], expected[2, 3] = 0.5 * 0.75, 0.5 * 0.25
    expected[3, 2], expected[3, 3] = 0.5 * 0.75, 0.5 * 0.25
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_translate_agrees_with_sample_bilinear():
    rng = np.random.default_rng(1)
    img = _cplx(rng, 20, 24)
    rows, cols = np.arange(20)[:, None], np.arange(24)[None, :]
    for dx, dy in rng.uniform(-6, 6, size=(5, 2)):
        expected = R.sample_bilinear(img, rows - dy, cols - dx)
        np.testing.assert_allclose(R.translate(img, dx, dy), expected, atol=1e-6)


def test_translate_stack_with_per_image_shifts():
    rng = np.random.default_rng(2)
    imgs = _cplx(rng, 3, 2, 16, 16)
    dx = rng.uniform(-4, 4, size=(3, 2))
    dy = rng.uniform(-4, 4, size=(3, 1))  # broadcast over the second axis
    out = R.translate(imgs, dx, dy)
    assert out.shape == imgs.shape
    for i in range(3):
        for j in range(2):
            np.testing.assert_allclose(out[i, j], R.translate(imgs[i, j], dx[i, j], dy[i, 0]), atol=1e-6)
    same = R.translate(imgs, 1.5, -0.5)  # scalar shifts apply to every image
    np.testing.assert_allclose(same[2, 1], R.translate(imgs[2, 1], 1.5, -0.5), atol=1e-6)


def test_subpixel_translate_matches_fourier_shift_of_band_limited_image():
    """Bilinear translation of a smooth periodic image vs the exact Fourier shift."""
    n = 64
    rng = np.random.default_rng(3)
    spec = np.zeros((n, n), np.complex128)
    for _ in range(6):  # a few low frequencies (<= 3 cycles per 64 px)
        ky, kx = rng.integers(-3, 4, size=2)
        spec[ky % n, kx % n] += rng.normal() + 1j * rng.normal()
    img = np.fft.ifft2(spec) * n * n
    dx, dy = 2.37, -1.61
    fy, fx = np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]
    exact = np.fft.ifft2(np.fft.fft2(img) * np.exp(-2j * np.pi * (fx * dx + fy * dy)))
    out = R.translate(img.astype(np.complex64), dx, dy)
    inner = (slice(6, n - 6), slice(6, n - 6))  # away from the zero-filled borders
    err = np.linalg.norm(out[inner] - exact[inner]) / np.linalg.norm(exact[inner])
    assert err < 0.02
    assert np.abs(out[inner] - img[inner]).max() > 10 * np.abs(out[inner] - exact[inner]).max()


def test_sample_bilinear_zero_outside_and_broadcasting():
    img = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.testing.assert_allclose(R.sample_bilinear(img, -0.5, 0.0), 0.5 * img[0, 0])
    np.testing.assert_allclose(R.sample_bilinear(img, 2.5, 3.0), 0.5 * img[2, 3])
    assert R.sample_bilinear(img, -1.0, 0.0) == 0.0
    assert R.sample_bilinear(img, 0.0, 4.0) == 0.0
    np.testing.assert_allclose(R.sample_bilinear(img, 1.5, 2.25), 0.5 * (6.25 + 10.25))
    out = R.sample_bilinear(img, np.array([[0.0], [1.0]]), np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(out, img[:2, :3])


def test_extract_patches_integer_positions_are_exact_slices():
    rng = np.random.default_rng(4)
    obj = _cplx(rng, 40, 50)
    N = 8
    positions = np.array([[10.0, 12.0], [30.0, 20.0], [2.0, 3.0], [49.0, 39.0]])  # last two hang off the edge
    patches = R.extract_patches(obj, positions, N)
    padded = np.zeros((40 + 2 * N, 50 + 2 * N), np.complex64)
    padded[N:N + 40, N:N + 50] = obj
    for (x, y), p in zip(positions.astype(int), patches):
        r0, c0 = y - N // 2 + N, x - N // 2 + N
        np.testing.assert_array_equal(p, padded[r0:r0 + N, c0:c0 + N])
    assert patches[0][N // 2, N // 2] == obj[12, 10]  # the position sits at patch index N//2
    far = R.extract_patches(obj, np.array([[-100.0, 5.0], [500.5, 500.2], [25.0, -8.6], [-3.5, 20.0]]), N)
    np.testing.assert_array_equal(far[:2], 0)  # entirely outside the object
    assert np.count_nonzero(far[2]) == 0  # rows -12.6 .. -5.6: nothing reaches row 0
    np.testing.assert_allclose(far[3][:, 7], 0.5 * obj[16:24, 0], rtol=1e-6)  # half a pixel into column 0
    assert np.count_nonzero(far[3][:, :7]) == 0


def test_extract_patches_subpixel_agrees_with_translate_and_chunks(monkeypatch):
    rng = np.random.default_rng(5)
    obj = rng.normal(size=(30, 30)).astype(np.float32)
    N = 4
    positions = rng.uniform(-2, 32, size=(60, 2))
    whole = R.extract_patches(obj, positions, N)
    monkeypatch.setattr(reference_sampling, "_CHUNK_PIXELS", 7 * (N + 1) ** 2)  # chunks of 7 patches
    patches = R.extract_patches(obj, positions, N)
    assert patches.shape == (60, N, N) and patches.dtype == np.float32
    np.testing.assert_array_equal(patches, whole)
    for i in (0, 1, 7, 59):
        x, y = positions[i]
        expected = R.translate(obj, -(x - N // 2), -(y - N // 2))[:N, :N]
        np.testing.assert_allclose(patches[i], expected, atol=1e-5)


def test_validation_errors():
    img = np.zeros((5, 5))
    with pytest.raises(DataError, match="positions"):
        R.extract_patches(img, np.zeros((3, 3)), 4)
    with pytest.raises(DataError, match="N"):
        R.extract_patches(img, np.zeros((3, 2)), 0)
    with pytest.raises(DataError, match="obj"):
        R.extract_patches(np.zeros(5), np.zeros((3, 2)), 4)
    with pytest.raises(DataError, match="dx"):
        R.translate(np.zeros((2, 5, 5)), np.zeros(3), 0.0)
    with pytest.raises(DataError, match="dy"):
        R.translate(img, 0.0, np.nan)
    with pytest.raises(DataError, match="img"):
        R.translate(np.zeros(5), 1, 1)
    with pytest.raises(DataError, match="rows"):
        R.sample_bilinear(img, np.array([np.inf]), np.array([0.0]))
    with pytest.raises(DataError, match="broadcast"):
        R.sample_bilinear(img, np.zeros(3), np.zeros(4))
