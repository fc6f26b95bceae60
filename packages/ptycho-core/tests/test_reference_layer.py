"""Reference physics layer: merge, extract, forward and loss (docs/conventions.md s3)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_core import reference as R
from ptycho_core.errors import ConfigError, DataError


def _cplx(rng, *shape):
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def _smooth_object(n, seed):
    rng = np.random.default_rng(seed)
    a, p = R.gaussian_smooth(rng.normal(size=(2, n, n)), 5.0)
    amp = 1.0 + 0.2 * a / a.std()
    phase = 0.5 * p / p.std()
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def _group_from_object(obj, centroids, offsets, N):
    """Patches (B, N, N, C) cut from ``obj`` at centroid + offset."""
    B, C, _ = offsets.shape
    pos = (centroids[:, None, :] + offsets).reshape(-1, 2)
    return R.extract_patches(obj, pos, N).reshape(B, C, N, N).transpose(0, 2, 3, 1)


def test_canvas_side():
    assert [R.merge_canvas_side(64, g) for g in (1, 2, 3)] == [74, 78, 82]
    assert R.merge_canvas_side(128, 2) == 142


def test_merge_of_identical_unshifted_patches_by_hand():
    rng = np.random.default_rng(0)
    N = 16
    o = _cplx(rng, N, N)
    patches = np.repeat(o[None, :, :, None], 4, axis=3)
    canvas, obj = R.merge_patches(patches, np.zeros((1, 4, 2)), 2)
    S = R.merge_canvas_side(N, 2)
    assert canvas.shape == (1, S, S) and obj.shape == (1, N, N) and canvas.dtype == np.complex64
    expected = np.zeros((N, N), np.complex128)
    expected[4:12, 4:12] = o[4:12, 4:12] * 4 / (4 + 1e-3)  # window [N/4, 3N/4), 4 patches / (4 + eps)
    np.testing.assert_allclose(obj[0], expected, rtol=1e-6, atol=1e-7)
    lo = (S - N) // 2
    np.testing.assert_array_equal(canvas[0, lo:lo + N, lo:lo + N], obj[0])
    assert np.count_nonzero(canvas[0]) == 64


def test_merge_and_extract_follow_the_translate_formula():
    rng = np.random.default_rng(1)
    B, N, g = 2, 16, 2
    patches = _cplx(rng, B, N, N, g * g)
    offsets = rng.uniform(-3, 3, size=(B, g * g, 2))
    canvas, _ = R.merge_patches(patches, offsets, g)
    S = R.merge_canvas_side(N, g)
    lo = (S - N) // 2
    w = np.zeros((N, N))
    w[N // 4:3 * N // 4, N // 4:3 * N // 4] = 1
    for b in range(B):
        num = np.zeros((S, S), np.complex128)
        den = np.zeros((S, S))
        for c in range(g * g):
            pad_o = np.zeros((S, S), np.complex128)
            pad_o[lo:lo + N, lo:lo + N] = patches[b, :, :, c] * w
            pad_w = np.zeros((S, S))
            pad_w[lo:lo + N, lo:lo + N] = w
            num += R.translate(pad_o, offsets[b, c, 0], offsets[b, c, 1])
            den += R.translate(pad_w, offsets[b, c, 0], offsets[b, c, 1])
        np.testing.assert_allclose(canvas[b], num / (den + 1e-3), rtol=1e-5, atol=1e-5)
    extracted = R.extract_from_canvas(canvas, offsets, N)
    assert extracted.shape == (B, N, N, g * g)
    for b in range(B):
        for c in range(g * g):
            moved = R.translate(canvas[b], -offsets[b, c, 0], -offsets[b, c, 1])
            np.testing.assert_allclose(extracted[b, :, :, c], moved[lo:lo + N, lo:lo + N], atol=1e-6)


def test_merge_then_extract_reproduces_central_windows_of_a_common_object():
    N, g = 32, 2
    obj = _smooth_object(96, 2)
    centroids = np.array([[40.0, 45.0], [55.0, 50.0]])
    offsets = np.array([[[-3, -2], [3, -2], [-3, 2], [3, 2]], [[-1, -4], [4, 0], [0, 3], [-4, 1]]], np.float64)
    patches = _group_from_object(obj, centroids, offsets, N)
    canvas, merged = R.merge_patches(patches, offsets, g)
    back = R.extract_from_canvas(canvas, offsets, N)
    win = (slice(None), slice(N // 4, 3 * N // 4), slice(N // 4, 3 * N // 4))
    # every window pixel is covered by its own window (den >= 1): only the 1e-3 epsilon remains
    np.testing.assert_allclose(back[win], patches[win], rtol=1.1e-3)
    core = slice(N // 4 + 4, 3 * N // 4 - 4)  # covered by all four windows
    centre = R.extract_patches(obj, centroids, N)
    np.testing.assert_allclose(merged[:, core, core], centre[:, core, core], rtol=1.1e-3)


def test_merge_extract_subpixel_offsets_within_interpolation_error():
    N, g = 32, 2
    obj = _smooth_object(96, 3)
    centroids = np.array([[47.3, 44.8]])
    offsets = np.array([[[-2.6, -1.7], [2.2, -2.4], [-1.9, 2.8], [2.4, 1.3]]])
    patches = _group_from_object(obj, centroids, offsets, N)
    back = R.extract_from_canvas(R.merge_patches(patches, offsets, g)[0], offsets, N)
    core = (slice(None), slice(N // 4 + 2, 3 * N // 4 - 2), slice(N // 4 + 2, 3 * N // 4 - 2))
    err = np.abs(back[core] - patches[core]) / np.abs(patches[core])
    assert err.max() < 0.05 and np.median(err) < 0.01


def test_groups_never_mix():
    rng = np.random.default_rng(4)
    B, N, g = 3, 16, 2
    patches = _cplx(rng, B, N, N, 4)
    offsets = rng.uniform(-3, 3, size=(B, 4, 2))
    probe = R.normalize_probe(_cplx(rng, N, N))
    kw = {"gridsize": g, "object_big": True, "scale": 3.0}
    before = R.physics_forward(patches, offsets, probe, **kw)
    changed = patches.copy()
    changed[1] = _cplx(rng, N, N, 4) * 10
    offsets2 = offsets.copy()
    offsets2[1] = -offsets[1]
    after = R.physics_forward(changed, offsets2, probe, **kw)
    for key in ("lam", "amplitude", "patches", "object"):
        np.testing.assert_array_equal(after[key][[0, 2]], before[key][[0, 2]])
        assert not np.allclose(after[key][1], before[key][1])
    alone = R.physics_forward(patches[2:3], offsets[2:3], probe, **kw)
    np.testing.assert_allclose(alone["lam"], before["lam"][2:3], rtol=1e-6)


@pytest.mark.parametrize(("gridsize", "object_big"), [(1, True), (1, False), (2, False)])
def test_no_merge_is_the_identity(gridsize, object_big):
    rng = np.random.default_rng(5)
    B, N, C = 2, 16, gridsize * gridsize
    patches = _cplx(rng, B, N, N, C)
    offsets = rng.uniform(-3, 3, size=(B, C, 2)) if C > 1 else np.zeros((B, 1, 2))
    probe = _cplx(rng, N, N)
    out = R.physics_forward(patches, offsets, probe, gridsize=gridsize, object_big=object_big, scale=2.0)
    np.testing.assert_array_equal(out["patches"], patches)
    np.testing.assert_array_equal(out["object"], patches[..., 0])
    psi = np.moveaxis(patches, -1, 1) * probe
    expected = 4.0 * np.moveaxis(R.intensity(psi), 1, -1)
    np.testing.assert_allclose(out["lam"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["amplitude"].astype(np.float64) ** 2, out["lam"], rtol=1e-5, atol=1e-6)


def test_physics_forward_with_merge_uses_merged_object():
    rng = np.random.default_rng(6)
    B, N, g = 2, 16, 2
    patches = _cplx(rng, B, N, N, 4)
    offsets = rng.uniform(-3, 3, size=(B, 4, 2))
    probe = R.normalize_probe(_cplx(rng, N, N))
    out = R.physics_forward(patches, offsets, probe, gridsize=g, object_big=True, scale=1.5)
    canvas, merged = R.merge_patches(patches, offsets, g)
    np.testing.assert_allclose(out["object"], merged, atol=1e-6)
    o_prime = R.extract_from_canvas(canvas, offsets, N)
    np.testing.assert_allclose(out["patches"], o_prime, atol=1e-6)
    lam = 1.5**2 * np.moveaxis(R.intensity(np.moveaxis(o_prime, -1, 1) * probe), 1, -1)
    np.testing.assert_allclose(out["lam"], lam, rtol=1e-4, atol=1e-6)
    assert out["lam"].dtype == np.float32 and out["patches"].dtype == np.complex64


def test_physics_forward_errors():
    p = np.zeros((1, 16, 16, 4), np.complex64)
    with pytest.raises(DataError, match="gridsize"):
        R.physics_forward(p, np.zeros((1, 4, 2)), np.ones((16, 16)), gridsize=3, object_big=True, scale=1.0)
    with pytest.raises(DataError, match="offsets"):
        R.physics_forward(p, np.zeros((1, 3, 2)), np.ones((16, 16)), gridsize=2, object_big=True, scale=1.0)
    with pytest.raises(DataError, match="probe_n"):
        R.physics_forward(p, np.zeros((1, 4, 2)), np.ones((8, 8)), gridsize=2, object_big=True, scale=1.0)
    with pytest.raises(DataError, match="patches"):
        R.merge_patches(np.zeros((16, 16, 4)), np.zeros((1, 4, 2)), 2)
    with pytest.raises(DataError, match="N"):
        R.extract_from_canvas(np.zeros((1, 10, 10)), np.zeros((1, 1, 2)), 16)


def test_poisson_nll_by_hand():
    out = R.poisson_nll(np.array([1.0, np.e, 4.0]), np.array([0.0, 2.0, 4.0]))
    np.testing.assert_allclose(out, [1.0, np.e - 2.0, 4.0 - 4.0 * np.log(4.0)], rtol=1e-10)
    assert out.dtype == np.float64


def test_total_loss_by_hand():
    lam = np.array([[1.0, 9.0]])
    X = np.array([[0.5, 1.0]])  # s0 = 2: target amplitudes [1, 2], counts [1, 4]
    O = np.array([[1 + 1j, 0]])
    Y = np.array([[1, 2j]])  # |O - Y| = [1, 2]
    # deviance = ((1 - 1 - 1 ln(1/1)) + (9 - 4 - 4 ln(9/4))) / 2 = (5 - 3.243720864865315) / 2
    assert R.total_loss(lam, X, 2.0) == pytest.approx(0.8781395675673425, rel=1e-9)
    # mae = (|1 - 1| + |3 - 2|) / 2 = 0.5; realspace = (1 + 2) / 2 = 1.5
    got = R.total_loss(lam, X, 2.0, patches=O, Y=Y, nll_weight=1.0, mae_weight=0.5, realspace_weight=0.25)
    assert got == pytest.approx(0.8781395675673425 + 0.25 + 0.375, rel=1e-9)
    assert R.total_loss(lam, X, 2.0, nll_weight=0.0, mae_weight=1.0) == pytest.approx(0.5, rel=1e-9)


def test_poisson_deviance_and_misfit_by_hand():
    lam, k = np.array([1.0, 9.0, 2.0]), np.array([1.0, 4.0, 0.0])
    # lam - k - k ln(lam / k); 0 where lam = k; lam where k = 0
    np.testing.assert_allclose(R.poisson_deviance(lam, k), [0.0, 5.0 - 4.0 * np.log(2.25), 2.0], rtol=1e-9, atol=1e-9)
    # the deviance is the nll minus its value at lam = k
    np.testing.assert_allclose(R.poisson_deviance(lam, k), R.poisson_nll(lam, k) - R.poisson_nll(k, k), rtol=1e-9,
                               atol=1e-9)
    # (0 + (3 - 2)^2 + (sqrt 2 - 0)^2) / (1 + 4 + 0)
    assert R.amplitude_misfit(lam, k) == pytest.approx(3.0 / 5.0, rel=1e-12)
    assert R.amplitude_misfit(k, k) == 0.0


def test_total_loss_errors():
    lam = np.ones((1, 4, 4, 1))
    with pytest.raises(ConfigError, match="realspace_weight"):
        R.total_loss(lam, lam, 1.0, patches=lam, realspace_weight=1.0)
    with pytest.raises(DataError, match="X"):
        R.total_loss(lam, np.ones((1, 4, 4, 2)), 1.0)


def test_probe_outside_window_is_the_energy_fraction_outside_the_merge_window():
    N = 16
    inside = np.zeros((N, N), dtype=np.complex64)
    inside[4:12, 4:12] = 1.0 + 1.0j
    assert R.probe_outside_window(inside) == 0.0
    probe = inside.copy()
    probe[0, 0] = 4.0  # |4|^2 = 16 against 64 * |1 + 1j|^2 = 128 inside
    assert R.probe_outside_window(probe) == pytest.approx(16.0 / 144.0)
    probe[3, 4] = 1.0  # row 3 is outside rows [N//4, 3N//4) = [4, 12)
    assert R.probe_outside_window(probe) == pytest.approx(17.0 / 145.0)
    with pytest.raises(DataError, match="non-zero intensity"):
        R.probe_outside_window(np.zeros((N, N)))
    with pytest.raises(DataError, match="probe"):
        R.probe_outside_window(np.ones((N, N + 1)))
    bad = inside.copy()
    bad[5, 5] = np.nan
    with pytest.raises(DataError, match="probe"):
        R.probe_outside_window(bad)
    assert R.probe_outside_window(probe, 10) == pytest.approx(16.0 / 145.0)  # rows [3, 13) now hold (3, 4)
    assert R.probe_outside_window(probe, 16) == 0.0


def test_the_merge_window_is_configurable_and_checked():
    assert R.window_bounds(64) == (16, 48) and R.window_bounds(64, 48) == (8, 56) and R.window_bounds(64, 64) == (0, 64)
    w = R.merge_window(8, 6)
    assert w.sum() == 36 and w[1:7, 1:7].all()
    for bad in (7, 0, 66, 2.0, True):
        with pytest.raises(DataError, match="window"):
            R.window_bounds(64, bad)
    rng = np.random.default_rng(3)
    patches = rng.normal(size=(2, 16, 16, 4)) + 1j * rng.normal(size=(2, 16, 16, 4))
    offsets = rng.uniform(-2, 2, size=(2, 4, 2))
    whole, whole_object = R.merge_patches(patches, offsets, 2, 16)
    # with the whole patch kept, the count is the number of patches covering each pixel: the merge of a
    # constant is that constant wherever every patch covers the canvas
    const = R.merge_patches(np.full((2, 16, 16, 4), 2.0 + 1.0j), offsets, 2, 16)[0]
    # the canvas widens with the window, 16 + 4 + 10 + (16 - 8) = 38, so a window moves as far before leaving it
    assert whole.shape == const.shape == (2, 38, 38) and R.merge_canvas_side(16, 2, 16) == 38
    inner = slice(19 - 5, 19 + 5)  # every patch covers the centre +- (8 - 2) less its shift
    np.testing.assert_allclose(const[:, inner, inner], 2.0 + 1.0j, rtol=2e-3)
    assert np.abs(whole_object - R.merge_patches(patches, offsets, 2)[1]).max() > 0.1
