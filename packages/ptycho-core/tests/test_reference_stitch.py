"""Reference stitching: geometry, flips, crops and reassembly (docs/conventions.md s4)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_core import reference as R
from ptycho_core import reference_stitch
from ptycho_core.errors import DataError


def _cplx(rng, *shape):
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def test_canvas_geometry_by_hand():
    positions = np.array([[10.5, 20.0], [30.2, 25.7]])
    # x0 = floor(10.5) - 10 = 0, W = ceil(30.2) - 10 + 20 + 1 - 0 = 42
    # y0 = floor(20.0) - 10 = 10, H = ceil(25.7) - 10 + 20 + 1 - 10 = 27
    assert R.canvas_geometry(positions, 20) == ((27, 42), (0, 10))
    assert R.canvas_geometry(positions, 20, object_shape=(100, 120)) == ((100, 120), (0, 0))
    shape, origin = R.canvas_geometry(np.array([[-5.5, 3.0]]), 7)
    assert origin == (-6 - 3, 3 - 3) and shape == (3 - 3 + 7 + 1 - 0, -5 - 3 + 7 + 1 - (-9))


def test_default_canvas_holds_every_contribution():
    rng = np.random.default_rng(0)
    positions = rng.uniform(-30, 80, size=(40, 2))
    M = 12
    shape, origin = R.canvas_geometry(positions, M)
    patches = np.ones((40, 32, 32), np.complex64)
    _, cov = R.reassemble(patches, positions, M, shape, origin, return_coverage=True)
    assert cov.sum() == pytest.approx(40 * M * M, rel=1e-6)  # nothing dropped at the borders


def test_apply_flips_as_documented():
    a = np.arange(9).reshape(3, 3)
    np.testing.assert_array_equal(R.apply_flips(a), a)
    np.testing.assert_array_equal(R.apply_flips(a, transpose=True), [[0, 3, 6], [1, 4, 7], [2, 5, 8]])
    np.testing.assert_array_equal(R.apply_flips(a, flip_x=True), [[2, 1, 0], [5, 4, 3], [8, 7, 6]])
    np.testing.assert_array_equal(R.apply_flips(a, flip_y=True), [[6, 7, 8], [3, 4, 5], [0, 1, 2]])
    # transpose first, then flip_x: not the same as flip_x then transpose
    np.testing.assert_array_equal(R.apply_flips(a, flip_x=True, transpose=True), [[6, 3, 0], [7, 4, 1], [8, 5, 2]])
    np.testing.assert_array_equal(R.apply_flips(a, True, True, True), [[8, 5, 2], [7, 4, 1], [6, 3, 0]])
    stack = np.stack([a, 10 * a])
    out = R.apply_flips(stack, flip_x=True)
    np.testing.assert_array_equal(out[1], 10 * a[:, ::-1])
    out[0, 0, 0] = -1
    assert stack[0, 0, 2] == 2  # a copy, not a view


def test_crop_center():
    p = np.arange(64).reshape(8, 8)
    np.testing.assert_array_equal(R.crop_center(p, 4), p[2:6, 2:6])
    np.testing.assert_array_equal(R.crop_center(p, 3), p[3:6, 3:6])  # start = 8//2 - 3//2 = 3
    np.testing.assert_array_equal(R.crop_center(p, 8), p)
    assert R.crop_center(p, 1)[0, 0] == p[4, 4]  # the patch centre N//2
    with pytest.raises(DataError, match="crop_size"):
        R.crop_center(p, 9)


def test_single_integer_patch_lands_exactly():
    N, M = 16, 6
    rng = np.random.default_rng(1)
    patch = _cplx(rng, 1, N, N)
    obj, cov = R.reassemble(patch, np.array([[20.0, 11.0]]), M, (30, 40), (2, -1), return_coverage=True)
    assert obj.dtype == np.complex64 and cov.dtype == np.float32 and obj.shape == (30, 40)
    expected = np.zeros((30, 40), np.complex64)
    r0, c0 = 11 - (-1) - M // 2, 20 - 2 - M // 2
    expected[r0:r0 + M, c0:c0 + M] = patch[0, 5:11, 5:11]
    np.testing.assert_allclose(obj, expected, rtol=1e-6, atol=0)
    assert cov[r0:r0 + M, c0:c0 + M].min() == 1.0 and cov.sum() == M * M


def test_half_pixel_position_splits_coverage():
    patch = np.full((1, 8, 8), 2 + 1j, np.complex64)
    obj, cov = R.reassemble(patch, np.array([[20.5, 30.0]]), 4, (64, 64), (0, 0), return_coverage=True)
    np.testing.assert_allclose(cov[28:32, 18:23], np.tile([0.5, 1, 1, 1, 0.5], (4, 1)))
    assert cov.sum() == pytest.approx(16)
    np.testing.assert_allclose(obj[28:32, 18:23], 2 + 1j, rtol=1e-6)
    assert np.count_nonzero(obj) == 20


@pytest.mark.parametrize(
    ("crop", "positions", "shape", "origin"),
    [
        (20, [[40.3, 35.8]], (80, 80), (0, 0)),  # single patch
        (20, [[2.2, 5.9], [70.7, 40.1], [35.5, -3.25], [20.0, 20.0]], (60, 64), (0, 0)),  # partly off-canvas
        (32, [[30.4, 28.6], [44.1, 31.9], [37.0, 45.5]], (90, 80), (5, -4)),  # crop_size = N
        (15, [[30.4, 28.6], [41.7, 33.2], [22.9, 40.3]], (70, 70), (0, 0)),  # odd crop size
    ],
)
def test_constant_object_is_stitched_to_the_constant(crop, positions, shape, origin):
    positions = np.array(positions)
    patches = np.full((len(positions), 32, 32), 0.7 - 0.4j, np.complex64)
    obj, cov = R.reassemble(patches, positions, crop, shape, origin, return_coverage=True)
    covered = cov > 1e-3
    assert covered.sum() > 0.8 * min(crop * crop, shape[0] * shape[1]) / 4
    np.testing.assert_allclose(obj[covered], 0.7 - 0.4j, rtol=2e-6)
    np.testing.assert_array_equal(obj[cov == 0], 0)


@pytest.mark.parametrize("crop", [8, 15, 32])
def test_vectorised_equals_loop(crop):
    rng = np.random.default_rng(crop)
    P, N = 30, 32
    patches = _cplx(rng, P, N, N)
    positions = rng.uniform(-10, 70, size=(P, 2))
    positions[:3] = np.round(positions[:3])
    a, ca = R.reassemble(patches, positions, crop, (50, 60), (3, -2), return_coverage=True)
    b, cb = R.reassemble_loop(patches, positions, crop, (50, 60), (3, -2), return_coverage=True)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ca, cb, rtol=1e-6, atol=1e-6)
    assert cb.max() > 1 and cb.sum() < P * crop * crop - 1  # overlaps, and some contributions fell off


def test_vectorised_equals_loop_across_chunks(monkeypatch):
    rng = np.random.default_rng(9)
    P = 200
    patches = _cplx(rng, P, 8, 8)
    positions = rng.uniform(-2, 40, size=(P, 2))
    monkeypatch.setattr(reference_stitch, "_CHUNK_PIXELS", 9 * 5 ** 2)  # chunks of 9 patches
    a = R.reassemble(patches, positions, 4, (40, 40), (0, 0))
    b = R.reassemble_loop(patches, positions, 4, (40, 40), (0, 0))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_stitching_validation_errors():
    patches = np.zeros((3, 16, 16), np.complex64)
    pos = np.zeros((3, 2)) + 8
    with pytest.raises(DataError, match="positions"):
        R.reassemble(patches, np.zeros((2, 2)), 8, (20, 20), (0, 0))
    with pytest.raises(DataError, match="positions"):
        R.reassemble(patches, np.zeros((3, 3)), 8, (20, 20), (0, 0))
    with pytest.raises(DataError, match="crop_size"):
        R.reassemble(patches, pos, 17, (20, 20), (0, 0))
    with pytest.raises(DataError, match="patches"):
        R.reassemble(patches[0], pos, 8, (20, 20), (0, 0))
    with pytest.raises(DataError, match="canvas_shape"):
        R.reassemble(patches, pos, 8, (0, 20), (0, 0))
    with pytest.raises(DataError, match="origin"):
        R.reassemble_loop(patches, pos, 8, (20, 20), (0.5, 0))
    with pytest.raises(DataError, match="positions"):
        R.canvas_geometry(np.zeros((0, 2)), 8)
    with pytest.raises(DataError, match="NaN"):
        R.canvas_geometry(np.array([[np.nan, 1.0]]), 8)


def test_probe_stitch_weight_is_the_floored_relative_intensity():
    probe = np.zeros((8, 8), np.complex64)
    probe[4, 4], probe[4, 5], probe[3, 4] = 2j, 1.0, 0.02  # intensities 4, 1, 4e-4
    w = R.probe_stitch_weight(probe)
    assert w.dtype == np.float64 and w.shape == (8, 8)
    assert w[4, 4] == 1.0 and w[4, 5] == pytest.approx(0.25)
    assert w[3, 4] == R.STITCH_WEIGHT_FLOOR and w.min() == R.STITCH_WEIGHT_FLOOR  # 1e-4 and 0 are floored
    assert R.probe_stitch_weight(probe, floor=0.5)[4, 5] == 0.5
    with pytest.raises(DataError, match="probe: expected a finite probe with some non-zero pixel"):
        R.probe_stitch_weight(np.zeros((8, 8)))
    with pytest.raises(DataError, match="floor"):
        R.probe_stitch_weight(probe, floor=0.0)


def test_weighted_stitching_is_the_weighted_mean_of_the_crops():
    # two 4 x 4 crops at integer positions, overlapping in a 4 x 2 strip: there the value is the weighted mean
    N, M = 8, 4
    patches = np.stack([np.full((N, N), 1.0 + 1j), np.full((N, N), 3.0 - 1j)]).astype(np.complex64)
    weight = np.ones((N, N))
    weight[:, N // 2:] = 3.0  # the crop's right half (columns 2, 3) weighs 3, its left half 1
    positions = np.array([[10.0, 10.0], [12.0, 10.0]])
    obj = R.reassemble_weighted(patches, weight, positions, M, (20, 20), (0, 0))
    assert obj.dtype == np.complex64
    # overlap: canvas columns 10, 11 = columns 2, 3 of the first crop (weight 3), columns 0, 1 of the second (1)
    np.testing.assert_allclose(obj[8:12, 10:12], (3 * (1 + 1j) + 1 * (3 - 1j)) / 4, rtol=1e-6)
    np.testing.assert_allclose(obj[8:12, 8:10], 1 + 1j, rtol=1e-6)  # the first crop alone
    np.testing.assert_allclose(obj[8:12, 12:14], 3 - 1j, rtol=1e-6)  # the second crop alone
    assert np.count_nonzero(obj) == 4 * 6  # the same region as the equal-weight stitch
    equal = R.reassemble(patches, positions, M, (20, 20), (0, 0))
    np.testing.assert_array_equal(obj != 0, equal != 0)


def test_weighted_stitching_with_equal_weights_is_reassemble():
    rng = np.random.default_rng(4)
    patches = _cplx(rng, 25, 16, 16)
    positions = rng.uniform(0, 40, size=(25, 2))
    a = R.reassemble_weighted(patches, np.full((16, 16), 0.3), positions, 10, (50, 50), (-2, 0))
    b = R.reassemble(patches, positions, 10, (50, 50), (-2, 0))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="weight: expected a positive real array of the patch shape"):
        R.reassemble_weighted(patches, np.zeros((16, 16)), positions, 10, (50, 50), (0, 0))
    with pytest.raises(DataError, match="weight"):
        R.reassemble_weighted(patches, np.ones((8, 8)), positions, 10, (50, 50), (0, 0))
