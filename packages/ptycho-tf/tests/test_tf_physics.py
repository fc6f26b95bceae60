"""The TensorFlow physics layer against the NumPy reference (docs/conventions.md s3)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_core import reference
from ptycho_core.config import ModelConfig
from ptycho_tf._env import tf
from ptycho_tf.physics import (
    PhysicsLayer,
    canvas_side,
    central_window,
    diffract_intensity,
    extract,
    losses,
    merge,
    to_complex,
    translate,
)

RTOL = 1e-5


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _random_patches(rng, B, N, C) -> np.ndarray:
    return (rng.normal(size=(B, N, N, C)) + 1j * rng.normal(size=(B, N, N, C))).astype(np.complex64)


@pytest.mark.parametrize("complex_input", [False, True])
def test_translate_matches_reference_per_image(complex_input):
    rng = np.random.default_rng(0)
    imgs = rng.normal(size=(5, 20, 24))
    if complex_input:
        imgs = imgs + 1j * rng.normal(size=imgs.shape)
    imgs = imgs.astype(np.complex64 if complex_input else np.float32)
    dx = np.array([0.0, 1.0, -2.5, 3.25, -0.75])
    dy = np.array([0.0, -3.0, 1.5, 0.6, 7.9])
    got = translate(tf.constant(imgs), tf.constant(dx, tf.float32), tf.constant(dy, tf.float32)).numpy()
    for i in range(5):
        want = reference.translate(imgs[i], dx[i], dy[i])
        assert _rel(got[i], want) < RTOL, i


def test_translate_moves_content_right_and_down():
    img = np.zeros((1, 9, 9), np.float32)
    img[0, 4, 4] = 1.0
    out = translate(tf.constant(img), tf.constant([2.0]), tf.constant([1.0])).numpy()
    assert out[0, 5, 6] == 1.0 and out.sum() == 1.0


@pytest.mark.parametrize("gridsize", [2, 3])
def test_merge_and_extract_match_reference(gridsize):
    rng = np.random.default_rng(gridsize)
    B, N, C = 3, 64, gridsize * gridsize
    patches = _random_patches(rng, B, N, C)
    offsets = rng.uniform(-6, 6, size=(B, C, 2))  # float64, as in GroupedData
    canvas = merge(tf.constant(patches), tf.constant(offsets), gridsize).numpy()
    ref_canvas, _ = reference.merge_patches(patches, offsets, gridsize)
    assert canvas.shape == (B, canvas_side(N, gridsize), canvas_side(N, gridsize))
    assert _rel(canvas, ref_canvas) < RTOL
    got = extract(tf.constant(ref_canvas), tf.constant(offsets), N).numpy()
    assert _rel(got, reference.extract_from_canvas(ref_canvas, offsets, N)) < RTOL


def test_merge_never_mixes_groups():
    rng = np.random.default_rng(5)
    patches = _random_patches(rng, 4, 64, 4)
    offsets = rng.uniform(-3, 3, size=(4, 4, 2)).astype(np.float32)
    full = merge(tf.constant(patches), tf.constant(offsets), 2).numpy()
    alone = merge(tf.constant(patches[2:3]), tf.constant(offsets[2:3]), 2).numpy()
    np.testing.assert_array_equal(full[2:3], alone)


@pytest.mark.parametrize("window", [None, 32, 48, 64])
def test_central_window_matches_reference(window):
    w = central_window(64, window)
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, reference.merge_window(64, window))
    side = 32 if window is None else window
    assert w.sum() == side * side and w[32, 32] == 1.0


@pytest.mark.parametrize("window", [48, 64])
def test_merge_with_a_wider_window_matches_reference(window):
    rng = np.random.default_rng(20 + window)
    B, N, gridsize = 3, 64, 2
    C = gridsize * gridsize
    patches = _random_patches(rng, B, N, C)
    offsets = rng.uniform(-6, 6, size=(B, C, 2))  # non-integer, float64
    canvas = merge(tf.constant(patches), tf.constant(offsets), gridsize, window=window).numpy()
    ref_canvas, _ = reference.merge_patches(patches, offsets, gridsize, window=window)
    S = canvas_side(N, gridsize, window)
    assert canvas.shape == ref_canvas.shape == (B, S, S)
    assert _rel(canvas, ref_canvas) < RTOL
    # the window matters: the default N/2 window gives another canvas
    _, narrow = reference.merge_patches(patches, offsets, gridsize)
    lo = (S - N) // 2
    assert _rel(canvas[:, lo:lo + N, lo:lo + N], narrow) > 1e-2


def test_merge_default_window_is_n_over_2():
    rng = np.random.default_rng(6)
    patches = _random_patches(rng, 2, 64, 4)
    offsets = rng.uniform(-4, 4, size=(2, 4, 2))
    default = merge(tf.constant(patches), tf.constant(offsets), 2).numpy()
    np.testing.assert_array_equal(default, merge(tf.constant(patches), tf.constant(offsets), 2, window=32).numpy())


def test_diffraction_matches_reference():
    rng = np.random.default_rng(1)
    psi = _random_patches(rng, 2, 64, 3)
    got = diffract_intensity(tf.constant(psi)).numpy()
    want = np.moveaxis(reference.intensity(np.moveaxis(psi, -1, 1)), 1, -1)
    assert _rel(got, want) < RTOL


@pytest.mark.parametrize(("gridsize", "object_big"), [(1, True), (2, True), (2, False)])
def test_physics_layer_matches_reference_forward(gridsize, object_big):
    rng = np.random.default_rng(10 + gridsize)
    B, N, C = 2, 64, gridsize * gridsize
    patches = _random_patches(rng, B, N, C)
    offsets = rng.uniform(-5, 5, size=(B, C, 2))
    probe_n = reference.normalize_probe(np.exp(-((np.mgrid[:N, :N] - N / 2) ** 2).sum(0) / 200.0) + 0j)
    layer = PhysicsLayer(N=N, gridsize=gridsize, object_big=object_big, scale=7.5, scale_trainable=True,
                         probe_trainable=False)
    layer.set_probe(probe_n)
    lam, obj = layer(tf.constant(patches), tf.constant(offsets))
    ref = reference.physics_forward(patches, offsets, probe_n, gridsize=gridsize, object_big=object_big, scale=7.5)
    assert _rel(lam.numpy(), ref["lam"]) < RTOL
    assert _rel(obj.numpy(), ref["patches"]) < RTOL


@pytest.mark.parametrize(("object_window", "pad_object"), [(1.0, False), (0.75, True)])
def test_physics_with_a_wider_window_matches_reference_forward(object_window, pad_object):
    """The model's physics layer and training forward use ``ModelConfig.window_side`` (physics.md s5 step 1)."""
    from ptycho_tf.module import PtychoModel

    mc = ModelConfig(N=64, gridsize=2, n_filters_scale=1, object_window=object_window, pad_object=pad_object)
    window = mc.window_side
    rng = np.random.default_rng(30)
    B, N, C = 2, 64, 4
    patches = _random_patches(rng, B, N, C)
    offsets = rng.uniform(-5, 5, size=(B, C, 2))
    probe_n = reference.normalize_probe(np.exp(-((np.mgrid[:N, :N] - N / 2) ** 2).sum(0) / 200.0) + 0j)
    model = PtychoModel(mc, seed=2)
    model.physics.set_probe(probe_n)
    model.physics.intensity_scale.assign(7.5)
    assert model.physics.window == window
    lam, obj = model.physics(tf.constant(patches), tf.constant(offsets))
    ref = reference.physics_forward(patches, offsets, probe_n, gridsize=2, object_big=True, scale=7.5, window=window)
    assert _rel(lam.numpy(), ref["lam"]) < RTOL
    assert _rel(obj.numpy(), ref["patches"]) < RTOL
    narrow = reference.physics_forward(patches, offsets, probe_n, gridsize=2, object_big=True, scale=7.5)
    assert _rel(lam.numpy(), narrow["lam"]) > 1e-2  # the window changes the forward model
    # the training forward: network -> physics layer with the model's window
    X = rng.uniform(0.0, 1.0, size=(B, N, N, C)).astype(np.float32)
    out = model((tf.constant(X), tf.constant(offsets)))
    net = model.patches(tf.constant(X)).numpy()
    ref = reference.physics_forward(net, offsets, probe_n, gridsize=2, object_big=True, scale=7.5, window=window)
    assert _rel(out["lam"].numpy(), ref["lam"]) < RTOL


def test_physics_layer_default_window_is_n_over_2():
    layer = PhysicsLayer(N=64, gridsize=2, object_big=True, scale=1.0, scale_trainable=False, probe_trainable=False)
    assert layer.window == 32


def test_losses_match_reference_total_loss():
    rng = np.random.default_rng(3)
    shape = (2, 64, 64, 4)
    lam = rng.uniform(0.0, 50.0, size=shape).astype(np.float32)
    X = rng.uniform(0.0, 3.0, size=shape).astype(np.float32)
    patches = _random_patches(rng, 2, 64, 4)
    Y = _random_patches(rng, 2, 64, 4)
    weights = {"nll_weight": 1.0, "mae_weight": 0.5, "realspace_weight": 2.0}
    got = losses(tf.constant(lam), tf.constant(X), 2.5, patches=tf.constant(patches), Y=tf.constant(Y), **weights)
    want = reference.total_loss(lam, X, 2.5, patches=patches, Y=Y, **weights)
    assert abs(float(got["loss"]) - want) / abs(want) < RTOL
    k = (2.5 * X.astype(np.float64)) ** 2
    dev = float(np.mean(reference.poisson_deviance(lam, k)))
    assert abs(float(got["deviance"]) - dev) / dev < RTOL
    assert abs(float(got["misfit"]) - reference.amplitude_misfit(lam, k)) / reference.amplitude_misfit(lam, k) < RTOL


def test_deviance_is_zero_at_the_data_and_has_the_nll_gradient():
    rng = np.random.default_rng(8)
    X = tf.constant(rng.uniform(0.0, 3.0, size=(2, 8, 8, 1)).astype(np.float32))
    at_data = losses(tf.square(2.5 * X), X, 2.5)
    assert abs(float(at_data["deviance"])) < 1e-5 and abs(float(at_data["misfit"])) < 1e-6
    lam = tf.Variable(rng.uniform(0.1, 50.0, size=(2, 8, 8, 1)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        out = losses(lam, X, 2.5)
    assert float(out["deviance"]) > 0 and float(out["loss"]) == float(out["deviance"])
    np.testing.assert_allclose(tape.gradient(out["deviance"], lam).numpy(), tape.gradient(out["nll"], lam).numpy(),
                               rtol=1e-5, atol=1e-7)


def test_realspace_weight_without_Y_is_an_error():
    from ptycho_core.errors import ConfigError

    lam = tf.ones((1, 64, 64, 1))
    with pytest.raises(ConfigError, match="realspace_weight"):
        losses(lam, lam, 1.0, realspace_weight=1.0)


def test_to_complex():
    amp, phase = np.float32([[2.0]]), np.float32([[np.pi / 2]])
    z = to_complex(tf.constant(amp), tf.constant(phase)).numpy()
    assert z.dtype == np.complex64 and abs(z[0, 0] - 2j) < 1e-6
