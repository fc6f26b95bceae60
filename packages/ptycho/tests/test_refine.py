"""Iterative refinement (ptycho.refine) and the splat adjoint it is built on."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho.refine import object_misfit, refine_object
from ptycho_core import reference
from ptycho_core.errors import ConfigError, DataError

N = 32


def _scan(seed: int = 0):
    """A small, fully known scan: smooth complex object, defocused disk probe, jittered raster."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:80, 0:80] / 80.0
    amp = 0.75 + 0.2 * np.sin(2 * np.pi * 3 * xx) * np.cos(2 * np.pi * 2 * yy)
    phase = 0.8 * np.sin(2 * np.pi * (2 * xx + yy)) + 0.3 * np.cos(2 * np.pi * 4 * yy)
    obj = (amp * np.exp(1j * phase)).astype(np.complex128)
    ky, kx = np.mgrid[-N // 2:N // 2, -N // 2:N // 2]
    pupil = (kx**2 + ky**2 <= (3 * N / 16) ** 2) * np.exp(1j * 4.0 * (kx**2 + ky**2) / (N / 4) ** 2)
    probe = np.fft.ifft2(np.fft.ifftshift(pupil)) * 40.0
    probe = np.fft.fftshift(probe)
    grid = np.arange(24, 57, 4, dtype=np.float64)
    pos = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2) + rng.uniform(-0.5, 0.5, (grid.size**2, 2))
    diffraction = reference.diffract(reference.extract_patches(obj, pos, N) * probe).astype(np.float64)
    return obj, pos, probe, diffraction


def _error(estimate: np.ndarray, truth: np.ndarray, box: tuple[slice, slice]) -> float:
    """Relative error after removing the best global complex factor, inside ``box``."""
    a, b = estimate[box].ravel(), truth[box].ravel()
    c = np.vdot(a, b) / np.vdot(a, a)
    return float(np.linalg.norm(c * a - b) / np.linalg.norm(b))


def test_splat_sum_is_the_adjoint_of_extract_patches():
    rng = np.random.default_rng(3)
    obj = rng.standard_normal((50, 60)) + 1j * rng.standard_normal((50, 60))
    pos = rng.uniform(5, 45, (7, 2))
    patches = rng.standard_normal((7, 16, 16)) + 1j * rng.standard_normal((7, 16, 16))
    extracted = reference.extract_patches(obj, pos, 16).astype(np.complex128)
    splat, coverage = reference.splat_sum(patches, pos, obj.shape, (0, 0))
    assert np.vdot(patches, extracted) == pytest.approx(np.vdot(splat, obj), rel=1e-6)
    # with the normalisation, the same geometry as reassemble with a full-patch crop
    stitched = reference.reassemble(patches, pos, 16, obj.shape, (0, 0))
    np.testing.assert_allclose(stitched, splat / (coverage + reference.COVERAGE_EPS), rtol=1e-5, atol=1e-5)


def test_weighted_splat_is_two_splats_in_one_pass():
    """splat_sum_weighted = splat_sum of the patches and of the weight at every position, also off the canvas."""
    from ptycho_core.reference_stitch import splat_sum_weighted

    rng = np.random.default_rng(4)
    pos = np.concatenate([rng.uniform(5, 45, (9, 2)), [[-6.3, 20.0], [58.7, 49.5]]])  # two partly off a 50 x 60
    patches = rng.standard_normal((11, 16, 16)) + 1j * rng.standard_normal((11, 16, 16))
    weight = rng.uniform(0, 2, (16, 16))
    total, weights = splat_sum_weighted(patches, weight, pos, (50, 60), (0, 0))
    expected, _ = reference.splat_sum(patches, pos, (50, 60), (0, 0))
    expected_w, _ = reference.splat_sum(np.broadcast_to(weight, patches.shape), pos, (50, 60), (0, 0))
    np.testing.assert_allclose(total, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(weights, expected_w.real, rtol=1e-12, atol=1e-12)
    assert weights.dtype == np.float64 and weights.max() > 0
    with pytest.raises(DataError, match="weight: expected a real array of the patch shape"):
        splat_sum_weighted(patches, weight[:8], pos, (50, 60), (0, 0))


@pytest.mark.parametrize("n", [32, 15])
def test_block_update_is_the_reference_formula(n):
    """One block update of the fast loop = the same update composed of ptycho_core's reference functions in double
    precision (extract, fftshift(fft2) / N, amplitude projection, its inverse, weighted splat): to 1e-5 relative
    (single-precision waves)."""
    from ptycho.refine import _Blocks, _ReferenceBlocks

    rng = np.random.default_rng(5)
    probe = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    work = rng.standard_normal((3 * n, 3 * n + 7)) + 1j * rng.standard_normal((3 * n, 3 * n + 7))
    local = rng.uniform(n // 2 + 1, 2 * n - 2, (40, 2))  # windows inside the canvas with a pixel to spare
    idx = np.sort(rng.choice(40, 21, replace=False))  # more than one chunk of _CHUNK windows
    amplitudes = np.abs(rng.standard_normal((21, n, n)))
    expected, out = work.copy(), work.copy()
    err_ref = _ReferenceBlocks(probe, local, work.shape).update(expected, idx, amplitudes, 0.7)
    err = _Blocks(probe, local, work.shape).update(out, idx, amplitudes, 0.7)
    assert err == pytest.approx(err_ref, rel=1e-5)
    assert np.abs(out - expected).max() < 1e-5 * np.abs(expected - work).max()
    assert np.abs(expected - work).max() > 0.1
    # the reference update is the formula of physics.md s8 written out with numpy.fft
    psi = reference.extract_patches(work, local[idx], n).astype(np.complex128) * probe
    far = np.fft.fftshift(np.fft.fft2(psi), axes=(-2, -1)) / n
    assert err_ref == pytest.approx(np.sum((np.abs(far) - amplitudes) ** 2), rel=1e-12)


def test_refinement_recovers_the_object_from_a_poor_guess():
    obj, pos, probe, diffraction = _scan()
    box = (slice(24, 57), slice(24, 57))  # the scanned region
    guess = np.ones_like(obj) * 3.0  # flat, and three times too bright
    res = refine_object(guess, (0, 0), diffraction, pos, probe, 30, batch_size=16)
    assert res.object.shape == obj.shape and res.object.dtype == np.complex64
    assert len(res.misfit) == 31
    assert res.misfit[-1] < 0.01 * res.misfit[0]
    assert _error(res.object, obj, box) < 0.01 < 0.5 < _error(guess, obj, box)


def test_exact_guess_up_to_scale_is_a_fixed_point():
    obj, pos, probe, diffraction = _scan()
    res = refine_object(2.0 * obj, (0, 0), diffraction, pos, probe, 3)
    assert res.scale == pytest.approx(0.5, rel=1e-5)
    assert res.misfit[0] < 1e-9 and res.misfit[-1] < 1e-9
    np.testing.assert_allclose(res.object, obj, atol=1e-4)


def test_object_misfit_is_zero_for_the_truth_at_any_scale_and_grows_with_the_error():
    obj, pos, probe, diffraction = _scan()
    assert object_misfit(3.0 * obj, (0, 0), diffraction, pos, probe) < 1e-9
    yy = np.mgrid[0:80, 0:80][0]
    blurred = np.abs(obj).mean() * np.exp(1j * np.angle(obj))  # amplitude flattened, phase kept
    flat = np.ones_like(obj)
    misfits = [object_misfit(o, (0, 0), diffraction, pos, probe) for o in (blurred, flat)]
    assert 1e-4 < misfits[0] < misfits[1] < 1.0
    assert misfits[1] == refine_object(flat, (0, 0), diffraction, pos, probe, 0).misfit[0]
    assert object_misfit(obj * np.exp(0.5j * (yy > 40)), (0, 0), diffraction, pos, probe) > 1e-3  # a phase step


def test_zero_passes_return_the_scaled_guess_on_its_own_canvas():
    obj, pos, probe, diffraction = _scan()
    part = obj[20:60, 10:70] * 4.0  # a canvas that covers only part of the scan, at origin (10, 20)
    res = refine_object(part, (10, 20), diffraction, pos, probe, 0)
    assert res.object.shape == part.shape and len(res.misfit) == 1
    np.testing.assert_allclose(res.object, part * res.scale, rtol=1e-5)
    assert 0.0 < res.scale < 1.0


def test_unstitched_pixels_start_at_the_mean_and_a_lazy_reader_gives_the_same_result():
    obj, pos, probe, diffraction = _scan()
    guess = obj.copy()
    guess[:30] = 0  # nothing stitched there

    class Lazy:
        def __init__(self, a):
            self.diffraction = a
            self.reads = 0

        def read(self, idx):
            self.reads += 1
            return self.diffraction[np.asarray(idx)].astype(np.float32)

    lazy = Lazy(diffraction)
    a = refine_object(guess, (0, 0), diffraction.astype(np.float32), pos, probe, 2, batch_size=20)
    b = refine_object(guess, (0, 0), lazy, pos, probe, 2, batch_size=20)
    np.testing.assert_array_equal(a.object, b.object)
    assert lazy.reads == 5 + 2 * 5  # the scale pass, then 2 refinement passes, 5 blocks each
    assert np.all(np.isfinite(a.object)) and a.misfit[-1] < a.misfit[0]


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"iterations": -1}, ConfigError, "iterations"),
    ({"iterations": 2.5}, ConfigError, "iterations"),
    ({"batch_size": 0}, ConfigError, "batch_size"),
    ({"step": 3.0}, ConfigError, "step"),
    ({"initial": np.zeros((80, 80), complex)}, DataError, "initial.*zero everywhere"),
    ({"initial": np.full((80, 80), np.nan, complex)}, DataError, "initial"),
    ({"diffraction": np.ones((5, N, N))}, DataError, "diffraction: expected shape"),
    ({"diffraction": -np.ones((81, N, N))}, DataError, "non-negative"),
    ({"probe": np.ones((N, N + 1))}, DataError, "probe"),
    ({"positions": np.ones((81, 3))}, DataError, "positions"),
])
def test_bad_input_is_named(kwargs, error, match):
    obj, pos, probe, diffraction = _scan()
    args = {"initial": obj, "origin": (0, 0), "diffraction": diffraction, "positions": pos, "probe": probe,
            "iterations": 1, **kwargs}
    with pytest.raises(error, match=match):
        refine_object(args.pop("initial"), args.pop("origin"), args.pop("diffraction"), args.pop("positions"),
                      args.pop("probe"), args.pop("iterations"), **args)
