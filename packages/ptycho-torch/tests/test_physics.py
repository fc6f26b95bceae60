"""The torch physics layer against the NumPy reference (ptycho_core.reference) and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import shift as nd_shift

from ptycho_torch.physics import (
    PhysicsLayer,
    canvas_side,
    diffract_intensity,
    extract,
    extract_translated,
    losses,
    merge,
    merge_translated,
    translate,
)

RTOL = 1e-5


def _cplx(rng, *shape):
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def _cf(a):
    """(B, N, N, C) NumPy -> (B, C, N, N) torch."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 1)))


def _cl(t):
    """(B, C, N, N) torch -> (B, N, N, C) NumPy."""
    return np.moveaxis(t.detach().numpy(), 1, -1)


def _close(actual, expected, rtol=RTOL):
    scale = max(float(np.max(np.abs(expected))), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize(("dx", "dy"), [(1.3, -2.7), (0.0, 0.0), (3.0, 2.0), (-0.5, 0.25), (30.0, 1.0)])
def test_translate_matches_scipy_grid_constant(dx, dy):
    img = np.random.default_rng(0).normal(size=(20, 24)).astype(np.float32)
    ours = translate(torch.from_numpy(img), torch.tensor(dx), torch.tensor(dy)).numpy()
    expected = nd_shift(img.astype(np.float64), (dy, dx), order=1, mode="grid-constant", cval=0.0, prefilter=False)
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_translate_moves_content_right_and_down():
    img = torch.zeros(8, 8, dtype=torch.complex64)
    img[2, 3] = 1 + 1j
    out = translate(img, torch.tensor(2.0), torch.tensor(1.0))
    assert out[3, 5] == 1 + 1j and out.abs().sum() == pytest.approx(np.sqrt(2))


def test_translate_matches_reference_per_image_offsets():
    from ptycho_core import reference

    rng = np.random.default_rng(1)
    imgs = _cplx(rng, 5, 30, 30)
    shifts = rng.uniform(-6, 6, size=(5, 2))
    ours = translate(torch.from_numpy(imgs), torch.from_numpy(shifts[:, 0]).float(),
                     torch.from_numpy(shifts[:, 1]).float()).numpy()
    for i in range(5):
        _close(ours[i], reference.translate(imgs[i], shifts[i, 0], shifts[i, 1]))


@pytest.mark.parametrize("gridsize", [2, 3])
def test_merge_and_extract_match_reference(gridsize):
    from ptycho_core import reference

    rng = np.random.default_rng(gridsize)
    B, N, C = 3, 64, gridsize * gridsize
    patches = _cplx(rng, B, N, N, C)
    offsets = rng.uniform(-5, 5, size=(B, C, 2))
    off_t = torch.from_numpy(offsets).float()
    canvas = merge(_cf(patches), off_t, gridsize)
    assert canvas.shape == (B, canvas_side(N, gridsize), canvas_side(N, gridsize))
    ref_canvas, ref_object = reference.merge_patches(patches, offsets, gridsize)
    _close(canvas.numpy(), ref_canvas)
    start = (canvas.shape[-1] - N) // 2
    _close(canvas[:, start:start + N, start:start + N].numpy(), ref_object)
    ours = _cl(extract(canvas, off_t, N))
    _close(ours, reference.extract_from_canvas(ref_canvas, offsets, N))


@pytest.mark.parametrize("window", [40, 48, 64])
def test_merge_with_a_wider_window_matches_reference(window):
    """``ModelConfig.object_window`` > 0.5: the merge keeps the central ``window`` pixels of each patch."""
    from ptycho_core import reference

    rng = np.random.default_rng(window)
    B, N, gridsize = 3, 64, 2
    patches = _cplx(rng, B, N, N, 4)
    offsets = rng.uniform(-5, 5, size=(B, 4, 2))
    canvas = merge(_cf(patches), torch.from_numpy(offsets).float(), gridsize, window)
    ref_canvas, ref_object = reference.merge_patches(patches, offsets, gridsize, window)
    assert canvas.shape[-1] == canvas_side(N, gridsize) + window - N // 2
    _close(canvas.numpy(), ref_canvas)
    narrow = reference.merge_patches(patches, offsets, gridsize)[1]
    assert np.abs(ref_object - narrow).max() > 0.1  # the window matters: pixels outside N/2 now merge
    gen = torch.Generator().manual_seed(window)
    _same_values_and_gradients(lambda q: merge(q, torch.from_numpy(offsets).float(), gridsize, window),
                               lambda q: merge_translated(q, torch.from_numpy(offsets).float(), gridsize, window),
                               _cf(patches), gen)


def _same_values_and_gradients(fast_fn, plain_fn, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Apply both forms to copies of ``x``; assert equal outputs and equal gradients of a random linear
    functional of them (non-zero); return the output."""
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    fast, plain = fast_fn(a), plain_fn(b)
    assert fast.shape == plain.shape
    torch.testing.assert_close(fast, plain, rtol=1e-6, atol=1e-6)
    weights = torch.randn(fast.shape, dtype=torch.complex64, generator=gen)
    (fast * weights).real.sum().backward()
    (plain * weights).real.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-6)
    assert float(b.grad.abs().max()) > 0
    return plain.detach()


@pytest.mark.parametrize(("gridsize", "N", "spread"), [(2, 64, 8.0), (3, 128, 30.0), (2, 64, 90.0)])
def test_merge_splat_equals_translated_patches_with_gradients(gridsize, N, spread):
    """The splat form of ``merge`` is the translation of the padded patches (the definition), values and
    gradients, also when offsets push a window partly or wholly off the canvas (spread 90 on a 78 px canvas)."""
    gen = torch.Generator().manual_seed(gridsize)
    B, C = 4, gridsize * gridsize
    patches = torch.randn(B, C, N, N, dtype=torch.complex64, generator=gen)
    offsets = (torch.rand(B, C, 2, generator=gen) - 0.5) * spread
    out = _same_values_and_gradients(lambda p: merge(p, offsets, gridsize),
                                     lambda p: merge_translated(p, offsets, gridsize), patches, gen)
    assert out.shape == (B, canvas_side(N, gridsize), canvas_side(N, gridsize))
    assert float(out.abs().max()) > 0.5  # something was merged


@pytest.mark.parametrize(("gridsize", "N", "spread"), [(2, 64, 8.0), (3, 128, 30.0), (2, 64, 90.0)])
def test_extract_two_taps_equals_translated_canvas_with_gradients(gridsize, N, spread):
    """``extract`` gathers only the rows and columns the crop reads; values and gradients equal the crop of the
    translated canvas (the definition), also when offsets move the crop partly or wholly off the canvas."""
    gen = torch.Generator().manual_seed(10 + gridsize)
    B, C, S = 3, gridsize * gridsize, canvas_side(N, gridsize)
    canvas = torch.randn(B, S, S, dtype=torch.complex64, generator=gen)
    offsets = (torch.rand(B, C, 2, generator=gen) - 0.5) * spread
    out = _same_values_and_gradients(lambda c: extract(c, offsets, N), lambda c: extract_translated(c, offsets, N),
                                     canvas, gen)
    assert out.shape == (B, C, N, N)


@pytest.mark.parametrize(("gridsize", "object_big", "window"), [(1, True, None), (2, True, None), (2, False, None),
                                                                (2, True, 64)])
def test_physics_forward_matches_reference(gridsize, object_big, window):
    from ptycho_core import reference

    rng = np.random.default_rng(10 + gridsize)
    B, N, C = 2, 64, gridsize * gridsize
    patches = _cplx(rng, B, N, N, C) * np.float32(0.3)
    offsets = rng.uniform(-4, 4, size=(B, C, 2)) if C > 1 else np.zeros((B, 1, 2))
    probe = reference.normalize_probe(_cplx(rng, N, N))
    scale = 37.5
    layer = PhysicsLayer(N=N, gridsize=gridsize, object_big=object_big, scale=scale, scale_trainable=True,
                         probe_trainable=False, window=window)
    layer.set_probe(torch.from_numpy(probe))
    lam, obj = layer(_cf(patches), torch.from_numpy(offsets).float())
    ref = reference.physics_forward(patches, offsets, probe, gridsize=gridsize, object_big=object_big, scale=scale,
                                    window=window)
    _close(_cl(lam), ref["lam"])
    _close(_cl(obj), ref["patches"])


def test_gridsize1_is_identity_merge_and_plain_diffraction():
    rng = np.random.default_rng(3)
    patches = _cplx(rng, 2, 64, 64, 1)
    probe = _cplx(rng, 64, 64)
    layer = PhysicsLayer(N=64, gridsize=1, object_big=True, scale=2.0, scale_trainable=False, probe_trainable=False)
    layer.set_probe(torch.from_numpy(probe))
    lam, obj = layer(_cf(patches), torch.zeros(2, 1, 2))
    psi = patches[..., 0] * probe
    expected = 4.0 * np.abs(np.fft.fftshift(np.fft.fft2(psi), axes=(-2, -1)) / 64) ** 2
    _close(lam[:, 0].numpy(), expected)
    np.testing.assert_array_equal(_cl(obj), patches)


def test_groups_never_mix():
    rng = np.random.default_rng(4)
    patches = _cf(_cplx(rng, 4, 64, 64, 4))
    offsets = torch.from_numpy(rng.uniform(-4, 4, size=(4, 4, 2))).float()
    layer = PhysicsLayer(N=64, gridsize=2, object_big=True, scale=1.0, scale_trainable=False, probe_trainable=False)
    layer.set_probe(torch.ones(64, 64, dtype=torch.complex64))
    together, _ = layer(patches, offsets)
    for b in range(4):
        alone, _ = layer(patches[b:b + 1], offsets[b:b + 1])
        torch.testing.assert_close(together[b:b + 1], alone, rtol=1e-6, atol=1e-6)


def test_diffraction_is_parseval():
    psi = torch.from_numpy(_cplx(np.random.default_rng(5), 3, 64, 64))
    intensity = diffract_intensity(psi)
    torch.testing.assert_close(intensity.sum(dim=(-2, -1)), psi.abs().square().sum(dim=(-2, -1)), rtol=1e-5, atol=0)


def test_losses_match_reference_and_conventions():
    from ptycho_core import reference

    rng = np.random.default_rng(6)
    lam = rng.uniform(0.1, 50.0, size=(2, 1, 8, 8)).astype(np.float32)
    X = rng.uniform(0.0, 3.0, size=(2, 1, 8, 8)).astype(np.float32)
    O = _cplx(rng, 2, 1, 8, 8)
    Y = _cplx(rng, 2, 1, 8, 8)
    s0 = 2.5
    out = losses(torch.from_numpy(lam), torch.from_numpy(X), s0, patches=torch.from_numpy(O), Y=torch.from_numpy(Y),
                 nll_weight=1.0, mae_weight=0.5, realspace_weight=0.25)
    k = (s0 * X.astype(np.float64)) ** 2
    nll = np.mean(lam - k * np.log(lam + 1e-12))
    mae = np.mean(np.abs(np.sqrt(lam + 1e-12) - s0 * X))
    real = np.mean(np.abs(O - Y))
    assert float(out["nll"]) == pytest.approx(nll, rel=RTOL)
    assert float(out["nll"]) == pytest.approx(float(np.mean(reference.poisson_nll(lam, k))), rel=RTOL)
    assert float(out["mae"]) == pytest.approx(mae, rel=RTOL)
    assert float(out["realspace"]) == pytest.approx(real, rel=RTOL)
    deviance = np.mean(lam - k - k * (np.log(lam + 1e-12) - np.log(k + 1e-12)))
    assert float(out["deviance"]) == pytest.approx(deviance, rel=RTOL)
    assert float(out["deviance"]) == pytest.approx(float(np.mean(reference.poisson_deviance(lam, k))), rel=RTOL)
    assert float(out["misfit"]) == pytest.approx(reference.amplitude_misfit(lam, k), rel=RTOL)
    assert float(out["loss"]) == pytest.approx(deviance + 0.5 * mae + 0.25 * real, rel=RTOL)
    cl = (np.moveaxis(a, 1, -1) for a in (lam, X, O, Y))
    lam_l, X_l, O_l, Y_l = cl
    ref_total = reference.total_loss(lam_l, X_l, s0, patches=O_l, Y=Y_l, nll_weight=1.0, mae_weight=0.5,
                                     realspace_weight=0.25)
    assert float(out["loss"]) == pytest.approx(ref_total, rel=RTOL)


def test_deviance_is_zero_at_the_data_and_has_the_nll_gradient():
    rng = np.random.default_rng(8)
    X = torch.from_numpy(rng.uniform(0.0, 3.0, size=(2, 1, 8, 8)).astype(np.float32))
    s0 = 2.5
    at_data = losses((s0 * X).square(), X, s0)
    assert float(at_data["deviance"]) == pytest.approx(0.0, abs=1e-5)
    assert float(at_data["misfit"]) == pytest.approx(0.0, abs=1e-6)
    lam = torch.from_numpy(rng.uniform(0.1, 50.0, size=(2, 1, 8, 8)).astype(np.float32)).requires_grad_(True)
    out = losses(lam, X, s0)
    assert float(out["deviance"].detach()) > 0 and torch.equal(out["loss"], out["deviance"])
    (g_dev,) = torch.autograd.grad(out["deviance"], lam, retain_graph=True)
    (g_nll,) = torch.autograd.grad(out["nll"], lam)
    torch.testing.assert_close(g_dev, g_nll, rtol=1e-5, atol=1e-7)


def test_epsilons_match_reference():
    from ptycho_core import reference
    from ptycho_torch import physics

    assert physics.MERGE_EPS == reference.MERGE_EPS
    assert physics.LOG_EPS == reference.LOG_EPS


def test_gradients_reach_scale_probe_and_patches():
    rng = np.random.default_rng(7)
    layer = PhysicsLayer(N=64, gridsize=2, object_big=True, scale=3.0, scale_trainable=True, probe_trainable=True)
    layer.set_probe(torch.from_numpy(_cplx(rng, 64, 64)))
    patches = _cf(_cplx(rng, 2, 64, 64, 4)).requires_grad_(True)
    lam, _ = layer(patches, torch.from_numpy(rng.uniform(-3, 3, size=(2, 4, 2))).float())
    X = torch.from_numpy(rng.uniform(0, 1, size=(2, 4, 64, 64)).astype(np.float32))
    losses(lam, X, 3.0)["loss"].backward()
    for name, grad in [("scale", layer.intensity_scale.grad), ("probe", layer.probe_real.grad),
                       ("patches", patches.grad)]:
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 0, name


def test_frozen_scale_and_probe_are_buffers():
    layer = PhysicsLayer(N=64, gridsize=1, object_big=True, scale=3.0, scale_trainable=False, probe_trainable=False)
    assert list(layer.parameters()) == []
    assert set(layer.state_dict()) == {"intensity_scale", "probe_real", "probe_imag"}
    assert not layer.probe_is_set()


def test_merge_divides_masked_numerator_by_window_count():
    """Zero offsets and identical patches: the window comes back scaled by C/(C+eps), the rest is 0."""
    rng = np.random.default_rng(8)
    N, C = 64, 4
    patch = _cplx(rng, N, N)
    patches = torch.from_numpy(np.repeat(patch[None, None], C, axis=1))
    canvas = merge(patches, torch.zeros(1, C, 2), 2)
    S = canvas_side(N, 2)
    p = (S - N) // 2
    q = N // 4
    centre = canvas[0, p + q:p + 3 * q, p + q:p + 3 * q].numpy()
    _close(centre, patch[q:3 * q, q:3 * q] * np.float32(C / (C + 1e-3)))
    outside = canvas[0].clone()
    outside[p + q:p + 3 * q, p + q:p + 3 * q] = 0
    assert float(outside.abs().max()) == 0.0
