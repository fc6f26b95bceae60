"""The NumPy reference as a whole: orientation contract with a marker, plugin, dependencies."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pluggy
import pytest

from ptycho_core import hookspecs
from ptycho_core import reference as R

SIZE, N, M = 96, 32, 12


def _marker() -> np.ndarray:
    """An asymmetric 'F' (amplitude 1 on 0.2, constant phase) on a SIZE x SIZE object."""
    obj = np.full((SIZE, SIZE), 0.2, np.float64)
    obj[30:70, 35:41] = 1.0  # stem
    obj[30:36, 35:62] = 1.0  # top bar (to the right of the stem)
    obj[47:52, 35:55] = 1.0  # middle bar
    return (obj * np.exp(0.3j)).astype(np.complex64)


def _grid(dx=0.0, dy=0.0) -> np.ndarray:
    g = np.arange(20.0, 77.0, 6.0)
    xs, ys = np.meshgrid(g + dx, g + dy)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _peak(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Circular cross-correlation peak of |a| against |b| (mean removed): the shift of a relative to b."""
    a = np.abs(a) - np.abs(a).mean()
    b = np.abs(b) - np.abs(b).mean()
    corr = np.real(np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))))
    r, c = np.unravel_index(np.argmax(corr), corr.shape)
    return (int((r + SIZE // 2) % SIZE - SIZE // 2), int((c + SIZE // 2) % SIZE - SIZE // 2))


def test_marker_round_trip_integer_positions_is_exact():
    obj = _marker()
    positions = _grid()
    patches = R.extract_patches(obj, positions, N)
    out, cov = R.reassemble(patches, positions, M, (SIZE, SIZE), (0, 0), return_coverage=True)
    covered = cov > 0.5
    lo, hi = 20 - M // 2, 74 + M - M // 2  # first and last crop pixel (+1) along each axis
    assert covered[lo:hi, lo:hi].all() and covered.sum() == (hi - lo) ** 2
    np.testing.assert_allclose(out[covered], obj[covered], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out[cov == 0], 0)
    assert _peak(out[lo:hi, lo:hi], obj[lo:hi, lo:hi]) == (0, 0)


def test_marker_round_trip_subpixel_positions():
    obj = _marker()
    positions = _grid(0.25, -0.4)
    patches = R.extract_patches(obj, positions, N)
    out = R.reassemble(patches, positions, M, (SIZE, SIZE), (0, 0))
    region = (slice(24, 72), slice(24, 72))
    assert _peak(np.where(np.abs(out) > 0, out, 0)[region], obj[region]) == (0, 0)
    np.testing.assert_allclose(np.abs(out[40:45, 37:39]), 1.0, atol=0.02)  # inside the stem
    np.testing.assert_allclose(np.abs(out[40:44, 45:60]), 0.2, atol=0.02)  # between the bars (right of the stem)
    np.testing.assert_allclose(np.angle(out[region]), 0.3, atol=1e-5)
    # away from edges only bilinear interpolation error remains: compare with a blurred marker
    blurred = np.abs(R.gaussian_smooth(_marker(), 0.6))
    err = np.abs(np.abs(out[region]) - blurred[region])
    assert np.median(err) < 1e-3 and err.max() < 0.3


@pytest.mark.parametrize(("flip_x", "flip_y", "transpose"), [(False, False, True), (True, False, False),
                                                             (True, True, True)])
def test_flipped_patches_need_the_matching_flips(flip_x, flip_y, transpose):
    """Patches delivered in another detector orientation stitch correctly only after apply_flips."""
    obj = _marker()
    positions = _grid()
    patches = R.extract_patches(obj, positions, N)
    # the inverse of (transpose, flip_x, flip_y) is (flip_y, flip_x, transpose); the two flips commute
    delivered = R.apply_flips(R.apply_flips(patches, flip_x, flip_y), transpose=transpose)
    fixed = R.apply_flips(delivered, flip_x, flip_y, transpose)
    np.testing.assert_array_equal(fixed, patches)
    good = R.reassemble(fixed, positions, M, (SIZE, SIZE), (0, 0))
    bad = R.reassemble(delivered, positions, M, (SIZE, SIZE), (0, 0))
    np.testing.assert_allclose(good[20:80, 20:80], obj[20:80, 20:80], atol=1e-6)
    assert (np.abs(bad - obj)[20:80, 20:80] > 0.1).mean() > 0.1  # without them the marker is garbled


def test_reference_plugin_is_a_trylast_fallback():
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(R.ReferencePlugin(), name="ptycho-reference")
    rng = np.random.default_rng(0)
    patches = (rng.normal(size=(5, 32, 32)) + 1j).astype(np.complex64)
    positions = rng.uniform(20, 40, size=(5, 2))
    args = {"patches": patches, "positions": positions, "crop_size": 12, "canvas_shape": (60, 60),
            "origin": (0, 0)}
    out = pm.hook.ptycho_reassemble_patches(**args)
    np.testing.assert_array_equal(out, R.reassemble(patches, positions, 12, (60, 60), (0, 0)))

    class Native:
        @hookspecs.hookimpl
        def ptycho_reassemble_patches(self, patches, positions, crop_size, canvas_shape, origin):
            return np.full(canvas_shape, 7, np.complex64)

    pm.register(Native(), name="native")  # registered later, yet the trylast reference still runs last
    assert pm.hook.ptycho_reassemble_patches(**args)[0, 0] == 7


def test_importing_the_reference_pulls_in_no_framework_and_no_scipy():
    code = ("import sys, ptycho_core.reference; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_public_api_is_exported():
    for name in R.__all__:
        assert callable(getattr(R, name)) or isinstance(getattr(R, name), float), name
    assert {"translate", "reassemble", "physics_forward", "total_loss", "ReferencePlugin"} <= set(R.__all__)
