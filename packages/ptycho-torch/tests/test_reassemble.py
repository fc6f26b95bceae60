"""Native torch stitching against the NumPy reference, and the orientation contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptycho_core.errors import DataError
from ptycho_torch.reassemble import reassemble_torch


def _random_patches(rng, P, N):
    return (rng.normal(size=(P, N, N)) + 1j * rng.normal(size=(P, N, N))).astype(np.complex64)


@pytest.mark.parametrize("crop", [8, 20, 15])
def test_matches_reference_with_subpixel_and_off_canvas_positions(crop):
    from ptycho_core import reference

    rng = np.random.default_rng(crop)
    P, N = 24, 64
    patches = _random_patches(rng, P, N)
    positions = rng.uniform(-6.0, 50.0, size=(P, 2))  # some patches hang off the canvas on every side
    positions[0] = (10.0, 12.0)  # an integer position
    shape, origin = (40, 44), (2, -3)
    ours = reassemble_torch(patches, positions, crop, shape, origin, device="cpu")
    ref = reference.reassemble(patches, positions, crop, shape, origin)
    assert ours.dtype == np.complex64 and ours.shape == shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_nothing_landed_is_zero_and_integer_positions_copy_exactly():
    N, M = 64, 10
    patch = np.zeros((1, N, N), np.complex64)
    patch[0, N // 2 - M // 2:N // 2 - M // 2 + M, N // 2 - M // 2:N // 2 - M // 2 + M] = 2 + 3j
    out = reassemble_torch(patch, np.array([[20.0, 30.0]]), M, (64, 64), (0, 0), device="cpu")
    expected = np.zeros((64, 64), np.complex64)
    expected[30 - M // 2:30 - M // 2 + M, 20 - M // 2:20 - M // 2 + M] = 2 + 3j
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_orientation_round_trip_with_a_marker():
    """An asymmetric 'F' extracted with the reference and stitched natively comes back in place."""
    from ptycho_core import reference

    H = W = 96
    obj = np.full((H, W), 0.2, np.float32)
    obj[30:70, 35:41] = 1.0  # stem of the F
    obj[30:36, 35:62] = 1.0  # top bar
    obj[47:52, 35:55] = 1.0  # middle bar
    obj = obj.astype(np.complex64) * np.exp(1j * 0.3).astype(np.complex64)
    N, M = 64, 20
    grid = np.arange(20.0, 77.0, 6.0)
    xs, ys = np.meshgrid(grid + 0.25, grid - 0.4)
    positions = np.stack([xs.ravel(), ys.ravel()], axis=1)
    patches = reference.extract_patches(obj, positions, N)
    out = reassemble_torch(patches, positions, M, (H, W), (0, 0), device="cpu")
    ref = reference.reassemble(patches, positions, M, (H, W), (0, 0))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    region = (slice(24, 72), slice(24, 72))
    a = np.abs(out[region]) - np.abs(out[region]).mean()
    b = np.abs(obj[region]) - np.abs(obj[region]).mean()
    corr = np.real(np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))))
    peak = np.unravel_index(np.argmax(corr), corr.shape)
    assert peak == (0, 0), f"marker displaced by {peak}"
    np.testing.assert_allclose(np.abs(out[40:45, 37:39]), 1.0, atol=0.05)
    assert np.abs(out[40, 58]) < 0.3  # right of the stem, between the bars: background


def test_accepts_torch_tensors_and_rejects_bad_shapes():
    rng = np.random.default_rng(0)
    patches = torch.from_numpy(_random_patches(rng, 3, 64))
    out = reassemble_torch(patches, torch.zeros(3, 2, dtype=torch.float64) + 30, 20, (60, 60), (0, 0), device="cpu")
    assert out.shape == (60, 60)
    with pytest.raises(DataError, match="positions"):
        reassemble_torch(patches, np.zeros((2, 2)), 20, (60, 60), (0, 0))
    with pytest.raises(DataError, match="crop_size"):
        reassemble_torch(patches, np.zeros((3, 2)), 65, (60, 60), (0, 0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu():
    rng = np.random.default_rng(5)
    patches = _random_patches(rng, 50, 64)
    positions = rng.uniform(0, 100, size=(50, 2))
    cpu = reassemble_torch(patches, positions, 20, (120, 120), (0, 0), device="cpu")
    gpu = reassemble_torch(patches, positions, 20, (120, 120), (0, 0), device="cuda")
    np.testing.assert_allclose(gpu, cpu, rtol=1e-6, atol=1e-6)
