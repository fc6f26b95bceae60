"""Native TensorFlow stitching against the NumPy reference, and the orientation contract (physics.md s6)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_core import reference
from ptycho_core.errors import DataError
from ptycho_tf.reassemble import reassemble_tf


def _random(rng, P, N):
    return (rng.normal(size=(P, N, N)) + 1j * rng.normal(size=(P, N, N))).astype(np.complex64)


@pytest.mark.parametrize(("M", "shape", "origin"), [(20, (128, 128), (0, 0)), (33, (90, 100), (5, -7)),
                                                    (64, (40, 50), (30, 30))])
def test_matches_reference_subpixel_and_off_canvas(M, shape, origin):
    rng = np.random.default_rng(M)
    patches = _random(rng, 200, 64)
    positions = rng.uniform(-20, 150, size=(200, 2))  # many crops lie partly or fully off the canvas
    ours = reassemble_tf(patches, positions, M, shape, origin)
    ref = reference.reassemble(patches, positions, M, shape, origin)
    assert ours.dtype == np.complex64 and ours.shape == shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_chunked_equals_single_chunk(monkeypatch):
    import ptycho_tf.reassemble as mod

    rng = np.random.default_rng(1)
    patches, positions = _random(rng, 50, 64), rng.uniform(10, 100, size=(50, 2))
    whole = reassemble_tf(patches, positions, 20, (120, 120), (0, 0))
    monkeypatch.setattr(mod, "CHUNK_ELEMENTS", 7 * 400)
    np.testing.assert_allclose(reassemble_tf(patches, positions, 20, (120, 120), (0, 0)), whole, rtol=1e-6,
                               atol=1e-7)


def _letter_f(size: int = 96) -> np.ndarray:
    obj = np.full((size, size), 0.2, np.float32)
    obj[20:76, 30:38] = 1.0  # stem
    obj[20:28, 30:66] = 1.0  # top bar
    obj[44:52, 30:58] = 1.0  # middle bar
    return (obj * np.exp(1j * 0.5 * obj)).astype(np.complex64)


def _round_trip(obj, positions):
    patches = reference.extract_patches(obj, positions, 64)
    shape, origin = reference.canvas_geometry(positions, 20, obj.shape)
    ours = reassemble_tf(patches, positions, 20, shape, origin)
    np.testing.assert_allclose(ours, reference.reassemble(patches, positions, 20, shape, origin), atol=1e-5)
    return ours


def test_orientation_marker_round_trip_integer_positions_is_exact():
    obj = _letter_f()
    g = np.arange(24.0, 73.0, 6.0)
    xs, ys = np.meshgrid(g, g)
    ours = _round_trip(obj, np.stack([xs.ravel(), ys.ravel()], axis=1))
    interior = (slice(16, 80), slice(16, 80))  # covered by the central 20 x 20 crops
    np.testing.assert_allclose(ours[interior], obj[interior], atol=1e-6)


def test_orientation_marker_round_trip_subpixel_peak_at_zero_shift():
    obj = _letter_f()
    g = np.arange(24.0, 73.0, 6.0)
    xs, ys = np.meshgrid(g + 0.3, g - 0.4)
    ours = _round_trip(obj, np.stack([xs.ravel(), ys.ravel()], axis=1))
    a = np.abs(ours)[20:76, 20:76] - np.abs(ours)[20:76, 20:76].mean()
    b = np.abs(obj)[20:76, 20:76] - np.abs(obj)[20:76, 20:76].mean()
    corr = np.real(np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))))
    assert np.unravel_index(np.argmax(corr), corr.shape) == (0, 0)


def test_far_away_positions_are_dropped():
    rng = np.random.default_rng(2)
    patches = _random(rng, 3, 64)
    positions = np.array([[40.0, 40.0], [1e12, 30.0], [-3e9, -7e10]])
    ours = reassemble_tf(patches, positions, 20, (80, 80), (0, 0))
    np.testing.assert_allclose(ours, reassemble_tf(patches[:1], positions[:1], 20, (80, 80), (0, 0)), atol=0)


def test_bad_inputs_name_the_argument():
    p = np.zeros((3, 64, 64), np.complex64)
    with pytest.raises(DataError, match="positions"):
        reassemble_tf(p, np.zeros((2, 2)), 20, (10, 10), (0, 0))
    with pytest.raises(DataError, match="crop_size"):
        reassemble_tf(p, np.zeros((3, 2)), 65, (10, 10), (0, 0))
