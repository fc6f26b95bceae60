"""Architecture of the PtychoPINN network: parameter counts, shapes, variants, activations."""

from __future__ import annotations

import math

import pytest
import torch

from ptycho_core.errors import ConfigError
from ptycho_torch.model import PtychoNet, count_trainable, decoder_filters, encoder_filters


# physics.md s4: upstream counts 2,331,772 (gridsize 1) and 2,340,208 (gridsize 2); the gridsize-2 count
# includes the probe_big branch that the masked merge zeroes, which we do not build (2,257,000 without it)
# unless a window wider than N/2 (object_window) lets it reach the loss
@pytest.mark.parametrize(("gridsize", "object_big", "object_window", "expected"),
                         [(1, True, 0.5, 2_331_772), (2, True, 0.5, 2_257_000), (2, False, 0.5, 2_340_208),
                          (2, True, 1.0, 2_340_208)])
def test_reference_parameter_count(gridsize, object_big, object_window, expected):
    net = PtychoNet(N=64, gridsize=gridsize, n_filters_scale=2, probe_big=True, pad_object=True,
                    object_big=object_big, object_window=object_window)
    assert count_trainable(net) == expected


@pytest.mark.parametrize("gridsize", [2, 3])
def test_no_probe_big_branch_where_the_masked_merge_zeroes_it(gridsize):
    net = PtychoNet(N=64, gridsize=gridsize, n_filters_scale=1, probe_big=True)
    assert not any(".big." in name for name, _ in net.canonical_convs())
    assert not any("big" in name for name, _ in net.named_parameters())
    with torch.no_grad():
        amp = net(torch.rand(1, gridsize**2, 64, 64)).abs()
    outside = amp.clone()
    outside[..., 16:48, 16:48] = 0
    assert torch.all(outside == 0)  # pad_object alone: zero outside the central N/2


@pytest.mark.parametrize(("pad_object", "names"), [(True, ("amp.big.conv1", "phase.big.out")),
                                                    (False, ("amp.up.conv1", "phase.up.conv1"))])
def test_a_window_wider_than_half_the_patch_gets_a_network_output_to_fill_it(pad_object, names):
    """object_window 1.0 at gridsize 2: the merge keeps whole patches, so the network predicts them whole (with
    pad_object the probe_big branch is built, as at gridsize 1; without it one head predicts N x N)."""
    torch.manual_seed(0)
    net = PtychoNet(N=64, gridsize=2, n_filters_scale=1, probe_big=True, pad_object=pad_object, object_window=1.0)
    convs = [name for name, _ in net.canonical_convs()]
    assert all(name in convs for name in names)
    with torch.no_grad():
        amp = net(torch.rand(1, 4, 64, 64)).abs()
    outside = amp.clone()
    outside[..., 16:48, 16:48] = 0
    assert outside.abs().max() > 0
    with pytest.raises(ConfigError, match="object_window"):
        PtychoNet(N=64, gridsize=2, n_filters_scale=1, probe_big=False, object_window=1.0)


@pytest.mark.parametrize(("amp_activation", "bias"), [("swish", -3.0), ("sigmoid", 0.0)])
def test_gradient_with_respect_to_the_amplitude_is_right_also_where_it_is_negative(amp_activation, bias):
    """The output A exp(i phi) differentiates like the formula, also for A < 0 (swish): torch.polar's backward
    takes |A| and gave the opposite sign there; a central difference along the amplitude head's bias checks it."""
    torch.manual_seed(0)
    net = PtychoNet(N=64, gridsize=1, n_filters_scale=1, amp_activation=amp_activation, probe_big=False)
    x = torch.rand(2, 1, 64, 64)
    weights = torch.randn(2, 1, 64, 64, dtype=torch.complex64)
    b = net.amp.out.bias
    with torch.no_grad():
        b.fill_(bias)

    def value() -> torch.Tensor:
        return (net(x) * weights).real.sum()

    value().backward()
    grad = float(b.grad.sum())
    with torch.no_grad():
        amp = net(x).abs()  # the amplitudes themselves (|A|; their sign is what matters)
        b.add_(1e-2)
        up = float(value())
        b.sub_(2e-2)
        down = float(value())
    assert amp.max() > 0
    assert grad == pytest.approx((up - down) / 2e-2, rel=2e-2)


def test_filter_tables_follow_conventions():
    assert encoder_filters(64, 2) == [64, 128, 256]
    assert encoder_filters(128, 1) == [16, 32, 64, 128]
    assert encoder_filters(256, 1) == [8, 16, 32, 64, 128]
    assert decoder_filters(64, 2) == [128, 64]
    assert decoder_filters(128, 1) == [128, 64, 32]
    assert decoder_filters(256, 1) == [256, 128, 64, 32]


@pytest.mark.parametrize("N", [64, 128, 256])
@pytest.mark.parametrize("gridsize", [1, 2])
def test_forward_shapes_all_sizes(N, gridsize):
    torch.manual_seed(0)
    C = gridsize * gridsize
    net = PtychoNet(N=N, gridsize=gridsize, n_filters_scale=1)
    with torch.no_grad():
        out = net(torch.rand(1, C, N, N))
    assert out.shape == (1, C, N, N)
    assert out.dtype == torch.complex64


@pytest.mark.parametrize(("pad_object", "probe_big"), [(True, True), (True, False), (False, True), (False, False)])
def test_last_layer_variants(pad_object, probe_big):
    torch.manual_seed(0)
    N = 64
    net = PtychoNet(N=N, gridsize=1, n_filters_scale=1, pad_object=pad_object, probe_big=probe_big)
    with torch.no_grad():
        amp = net(torch.rand(2, 1, N, N)).abs()
    q = N // 4
    outside = amp.clone()
    outside[..., q:3 * q, q:3 * q] = 0
    if pad_object and not probe_big:
        assert torch.all(outside == 0), "pad_object without probe_big must be zero outside the central N/2"
    else:
        assert outside.abs().max() > 0
    assert amp[..., q:3 * q, q:3 * q].abs().max() > 0
    names = [name for name, _ in net.canonical_convs()]
    assert ("amp.big.out" in names) == (pad_object and probe_big)
    assert ("amp.up.conv1" in names) == (not pad_object)


def test_pad_object_false_has_up_block_of_32_nfs():
    net = PtychoNet(N=64, gridsize=1, n_filters_scale=2, pad_object=False)
    assert net.amp.up.conv1.out_channels == 64
    assert net.amp.out.in_channels == 64


@pytest.mark.parametrize("activation", ["sigmoid", "swish", "softplus", "relu"])
def test_amplitude_activations(activation):
    torch.manual_seed(1)
    net = PtychoNet(N=64, gridsize=1, n_filters_scale=1, amp_activation=activation, probe_big=False)
    with torch.no_grad():
        out = net(torch.rand(2, 1, 64, 64))
        # the central crop is activation(conv(features)): recompute it to check the activation used
        x = torch.rand(2, 1, 64, 64)
        code = x
        for block in net.encoder:
            code = block(code)
        feats = code
        for block in net.amp.blocks:
            feats = block(feats)
        pre = net.amp.out(feats[:, :-4])
        amp = net(x).abs()[..., 16:48, 16:48]
    fn = {"sigmoid": torch.sigmoid, "swish": torch.nn.functional.silu, "softplus": torch.nn.functional.softplus,
          "relu": torch.relu}[activation]
    torch.testing.assert_close(amp, fn(pre).abs(), rtol=1e-5, atol=1e-6)
    assert torch.isfinite(out).all()


def test_phase_is_bounded_by_pi():
    torch.manual_seed(2)
    net = PtychoNet(N=64, gridsize=1, n_filters_scale=1, probe_big=False)
    with torch.no_grad():
        for p in net.phase.out.parameters():
            p.mul_(50.0)
        out = net(torch.rand(2, 1, 64, 64))
    phase = torch.angle(out[..., 16:48, 16:48])
    assert phase.abs().max() <= math.pi + 1e-5


def test_invalid_N_is_a_config_error():
    with pytest.raises(ConfigError, match="ModelConfig.N"):
        PtychoNet(N=96)


def test_wrong_input_shape_names_expected_shape():
    net = PtychoNet(N=64, gridsize=2, n_filters_scale=1)
    with pytest.raises(ValueError, match=r"expected shape \(B, 4, 64, 64\)"):
        net(torch.rand(1, 1, 64, 64))
