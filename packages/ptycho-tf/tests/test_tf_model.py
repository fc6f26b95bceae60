"""Network architecture (physics.md s4, docs/conventions.md s5): shapes, parameter counts, variants."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_core.config import ModelConfig
from ptycho_tf._env import keras
from ptycho_tf.model import (
    build_network,
    canonical_conv_names,
    count_trainable,
    decoder_filters,
    encoder_filters,
)


# physics.md s4: upstream counts 2,331,772 (gridsize 1) and 2,340,208 (gridsize 2); the gridsize-2 count
# includes the probe_big branch that the masked merge zeroes, which we do not build (2,257,000 without it)
@pytest.mark.parametrize(("gridsize", "object_big", "expected"),
                         [(1, True, 2_331_772), (2, True, 2_257_000), (2, False, 2_340_208)])
def test_reference_parameter_counts(gridsize, object_big, expected):
    mc = ModelConfig(N=64, gridsize=gridsize, n_filters_scale=2, probe_big=True, pad_object=True, object_big=object_big)
    assert count_trainable(build_network(mc)) == expected


def test_filter_tables():
    assert encoder_filters(64, 2) == [64, 128, 256]
    assert encoder_filters(128, 1) == [16, 32, 64, 128]
    assert encoder_filters(256, 1) == [8, 16, 32, 64, 128]
    assert decoder_filters(64, 1) == [64, 32]
    assert decoder_filters(256, 2) == [512, 256, 128, 64]


@pytest.mark.parametrize("N", [64, 128, 256])
@pytest.mark.parametrize("gridsize", [1, 2])
def test_output_shapes_all_sizes(N, gridsize):
    mc = ModelConfig(N=N, gridsize=gridsize, n_filters_scale=1)
    net = build_network(mc, seed=0)
    X = np.random.default_rng(0).random((1, N, N, gridsize**2)).astype(np.float32)
    amp, phase = (t.numpy() for t in net(X))
    assert amp.shape == phase.shape == (1, N, N, gridsize**2)
    assert amp.dtype == np.float32
    assert np.all(np.abs(phase) <= np.pi)


@pytest.mark.parametrize(("pad_object", "probe_big"), [(True, True), (True, False), (False, True)])
def test_canonical_names_cover_every_convolution(pad_object, probe_big):
    mc = ModelConfig(N=64, gridsize=2, n_filters_scale=1, pad_object=pad_object, probe_big=probe_big)
    net = build_network(mc)
    convs = sorted(layer.name for layer in net.layers if type(layer).__name__ == "Conv2D")
    assert sorted(canonical_conv_names(mc)) == convs
    if not pad_object:
        assert "amp.up.conv1" in convs and not any(".big." in c for c in convs)
    assert not any(".big." in c for c in convs)  # gridsize 2 with object_big: no probe_big branch
    gs1 = ModelConfig(N=64, gridsize=1, n_filters_scale=1, pad_object=pad_object, probe_big=probe_big)
    convs1 = sorted(layer.name for layer in build_network(gs1).layers if type(layer).__name__ == "Conv2D")
    assert sorted(canonical_conv_names(gs1)) == convs1
    assert ("amp.big.out" in convs1) == (pad_object and probe_big)


def test_wider_window_at_gridsize_2_builds_the_probe_big_branch():
    """object_window > 0.5 keeps the ring outside N/2 in the merge, so the outer branch is built (uses_probe_big)."""
    mc = ModelConfig(N=64, gridsize=2, n_filters_scale=2, object_window=1.0)
    assert mc.pad_object and mc.probe_big and mc.uses_probe_big
    net = build_network(mc, seed=3)
    convs = sorted(layer.name for layer in net.layers if type(layer).__name__ == "Conv2D")
    assert sorted(canonical_conv_names(mc)) == convs
    for head in ("amp", "phase"):
        assert {f"{head}.big.conv1", f"{head}.big.conv2", f"{head}.big.out"} <= set(convs)
    assert count_trainable(net) == 2_340_208  # the upstream gridsize-2 count, which includes the branch
    X = np.random.default_rng(4).random((2, 64, 64, 4)).astype(np.float32)
    amp, phase = (t.numpy() for t in net(X))
    assert amp.shape == phase.shape == (2, 64, 64, 4) and np.all(np.isfinite(amp)) and np.all(np.isfinite(phase))
    assert np.any(amp[:, :16] != 0) and np.any(amp[:, :, 48:] != 0)  # the ring outside N/2 is predicted


def test_wider_window_without_pad_object_has_no_branch():
    mc = ModelConfig(N=64, gridsize=2, n_filters_scale=1, object_window=1.0, pad_object=False)
    convs = sorted(layer.name for layer in build_network(mc).layers if type(layer).__name__ == "Conv2D")
    assert sorted(canonical_conv_names(mc)) == convs
    assert "amp.up.conv1" in convs and not any(".big." in c for c in convs)


def test_pad_object_without_probe_big_is_zero_outside_the_centre():
    mc = ModelConfig(N=64, n_filters_scale=1, pad_object=True, probe_big=False)
    amp, phase = (t.numpy() for t in build_network(mc, seed=1)(np.ones((1, 64, 64, 1), np.float32)))
    outside = np.ones((64, 64), bool)
    outside[16:48, 16:48] = False
    assert np.all(amp[0, outside, 0] == 0) and np.all(phase[0, outside, 0] == 0)
    assert np.all(amp[0, 16:48, 16:48, 0] > 0)  # sigmoid


def test_probe_big_fills_the_outside():
    mc = ModelConfig(N=64, n_filters_scale=1, pad_object=True, probe_big=True)
    X = np.random.default_rng(2).random((1, 64, 64, 1)).astype(np.float32)
    amp, _ = (t.numpy() for t in build_network(mc, seed=1)(X))
    assert np.any(amp[0, :16, :, 0] != 0)


@pytest.mark.parametrize("activation", ["sigmoid", "swish", "softplus", "relu"])
def test_amplitude_activations(activation):
    mc = ModelConfig(N=64, n_filters_scale=1, amp_activation=activation, probe_big=False)
    net = build_network(mc, seed=4)
    X = np.random.default_rng(3).random((2, 64, 64, 1)).astype(np.float32)
    amp = net(X)[0].numpy()[:, 16:48, 16:48]
    pre = net.get_layer("amp.out").output
    raw = keras.Model(net.input, pre)(X).numpy()
    expected = {
        "sigmoid": 1 / (1 + np.exp(-raw)),
        "swish": raw / (1 + np.exp(-raw)),
        "softplus": np.log1p(np.exp(raw)),
        "relu": np.maximum(raw, 0),
    }[activation]
    np.testing.assert_allclose(amp, expected, rtol=1e-5, atol=1e-6)


def test_seeded_build_is_reproducible():
    mc = ModelConfig(N=64, n_filters_scale=1)
    a = build_network(mc, seed=7).get_weights()
    b = build_network(mc, seed=7).get_weights()
    c = build_network(mc, seed=8).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
