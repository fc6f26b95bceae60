"""The PtychoPINN network (physics.md s4, docs/conventions.md s5) as a ``torch.nn.Module``.

Tensors inside the network are channels-first: input amplitudes ``(B, C, N, N)`` float32,
output object patches ``(B, C, N, N)`` complex64. The NumPy contracts are channels-last;
conversion happens at the data edge (:mod:`ptycho_torch.train`, :mod:`ptycho_torch.infer`).

Memory layout (:attr:`PtychoNet.layout`): the shapes above are the logical ones. On a CPU the
network by default keeps its activations in ``torch.channels_last`` memory order
(``layout='channels_last'``): oneDNN's convolutions work on NHWC directly, where the
contiguous (NCHW) order makes every convolution reorder its input and output to a blocked
format and back (docs/benchmarks-performance.md has the figures). ``layout='contiguous'`` is
the plain NCHW order; both give the same values up to float32 rounding. The ReLUs after the
convolutions run in place (a convolution's backward does not need its output), which saves
one allocation and one pass over each activation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from ptycho_core.architecture import PROBE_BIG_BORDER as _BIG_BORDER
from ptycho_core.architecture import decoder_filters, encoder_filters, probe_big_filters
from ptycho_core.config import ALLOWED_N, DEFAULT_GRIDSIZE, ModelConfig
from ptycho_core.errors import ConfigError


def _conv(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=True)
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


LAYOUTS = ("channels_last", "contiguous")


def _is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` (B, C, H, W) is stored in NHWC order (channel stride 1) and is not also plain NCHW."""
    return x.stride(1) == 1 and x.shape[1] > 1 and not x.is_contiguous()


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, H, W) in NHWC memory order, recognisably so also when C = 1.

    ``x.contiguous(memory_format=torch.channels_last)`` returns a (B, 1, H, W) NCHW tensor
    unchanged (both orders hold the same bytes), and torch then treats it as NCHW, so the
    whole network would run in NCHW; the channel stride is set to 1 instead (a free view).
    """
    B, C, H, W = x.shape
    if C == 1 and x.is_contiguous():
        return x.as_strided((B, C, H, W), (H * W, 1, W, 1))
    return x.contiguous(memory_format=torch.channels_last)


def _upsample2x(x: torch.Tensor) -> torch.Tensor:
    B, C, H, W = x.shape
    if _is_channels_last(x):
        y = x.permute(0, 2, 3, 1)  # (B, H, W, C), contiguous
        y = y[:, :, None, :, None, :].expand(B, H, 2, W, 2, C).reshape(B, 2 * H, 2 * W, C)
        return y.permute(0, 3, 1, 2)
    return x[:, :, :, None, :, None].expand(B, C, H, 2, W, 2).reshape(B, C, 2 * H, 2 * W)


class _Upsample2x(torch.autograd.Function):
    """Nearest 2x upsampling whose backward sums each 2 x 2 block with one pooling kernel.

    The autograd backward of the broadcast + reshape is a reduction over two strided axes of
    a 6-D view, which took as long as the largest convolution's backward on a CPU (profile in
    docs/benchmarks-performance.md); ``avg_pool2d(..., divisor_override=1)`` is the same sum.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - autograd signature
        return _upsample2x(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - autograd signature
        return nn.functional.avg_pool2d(grad, 2, divisor_override=1)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x nearest-neighbour upsampling of (B, C, H, W): the same values as ``interpolate(mode='nearest')``.

    Written as a broadcast + reshape, which is about twice as fast as ``interpolate`` on CPU
    (forward and backward; see docs/benchmarks-performance.md). A channels-last input gives a
    channels-last output (the broadcast runs on the NHWC view), so the next convolution does
    not reorder it. The gradient sums each 2 x 2 block of the output's gradient.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return _Upsample2x.apply(x)
    return _upsample2x(x)


class DownBlock(nn.Module):
    """conv3x3 + ReLU, conv3x3 + ReLU, 2x2 max-pool."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv(cin, cout)
        self.conv2 = _conv(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu_(self.conv2(torch.relu_(self.conv1(x))))
        return nn.functional.max_pool2d(x, 2)


class UpBlock(nn.Module):
    """conv3x3 + ReLU, conv3x3 + ReLU, 2x nearest upsample."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv(cin, cout)
        self.conv2 = _conv(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu_(self.conv2(torch.relu_(self.conv1(x))))
        return upsample2x(x)


def _activation(name: str) -> nn.Module:
    table = {"sigmoid": nn.Sigmoid, "swish": nn.SiLU, "softplus": nn.Softplus, "relu": nn.ReLU}
    if name not in table:
        raise ConfigError(f"ModelConfig.amp_activation: expected one of {sorted(table)}, got {name!r}")
    return table[name]()


class PiTanh(nn.Module):
    """``pi * tanh(x)``: the phase activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return math.pi * torch.tanh(x)


class Decoder(nn.Module):
    """One decoder head (amplitude or phase) on the shared code.

    Module names mirror the canonical weight names: ``blocks.{i}``, ``out``, ``big``,
    ``big_out``, ``up`` (see :func:`PtychoNet.canonical_convs`).
    """

    def __init__(self, N: int, nfs: int, channels: int, activation: nn.Module, *, pad_object: bool,
                 probe_big: bool) -> None:
        # probe_big here means "build the outer branch": PtychoNet passes ModelConfig.uses_probe_big
        super().__init__()
        self.N, self.pad_object, self.probe_big = N, pad_object, probe_big
        cin = encoder_filters(N, nfs)[-1]
        blocks = []
        for f in decoder_filters(N, nfs):
            blocks.append(UpBlock(cin, f))
            cin = f
        self.blocks = nn.ModuleList(blocks)
        self.activation = activation
        if pad_object:
            self.out = _conv(cin - _BIG_BORDER, channels)
            if probe_big:
                self.big = UpBlock(_BIG_BORDER, probe_big_filters(N, nfs))
                self.big_out = _conv(probe_big_filters(N, nfs), channels)
                mask = torch.ones(N, N)
                mask[N // 4: 3 * N // 4, N // 4: 3 * N // 4] = 0.0
                self.register_buffer("outer_mask", mask, persistent=False)
        else:
            self.up = UpBlock(cin, 32 * nfs)
            self.out = _conv(32 * nfs, channels)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        x = code
        for block in self.blocks:
            x = block(x)
        if not self.pad_object:
            return self.activation(self.out(self.up(x)))
        q = self.N // 4
        centre = self.activation(self.out(x[:, :-_BIG_BORDER]))
        y = nn.functional.pad(centre, (q, q, q, q))
        if self.probe_big:
            outer = nn.functional.silu(self.big_out(self.big(x[:, -_BIG_BORDER:])))
            y = y + outer * self.outer_mask
        return y


class PtychoNet(nn.Module):
    """Encoder + amplitude/phase decoders: ``(B, C, N, N)`` float32 -> ``(B, C, N, N)`` complex64.

    Parameters
    ----------
    N : int
        Pattern side, one of 64, 128, 256.
    gridsize : int
        Patterns per group along one side (C = gridsize**2 channels).
    n_filters_scale : int
        Filter multiplier ``nfs``.
    amp_activation : str
        ``'sigmoid'``, ``'swish'``, ``'softplus'`` or ``'relu'``.
    pad_object, probe_big : bool
        Last-layer variants of conventions s5. The ``probe_big`` branch is built only where
        :attr:`ptycho_core.config.ModelConfig.uses_probe_big` says so (not at gridsize > 1 with
        ``object_big``, where the masked merge zeroes its output; physics.md s4).
    object_big, object_window
        ``ModelConfig.object_big`` (the physics layer merges the patches of a group) and
        ``ModelConfig.object_window`` (the side of the window the merge keeps); they only decide,
        with ``gridsize`` and ``probe_big``, whether the ``probe_big`` branch is built.
    layout : str
        Memory order of the activations on a CPU: ``'channels_last'`` (default, faster with
        oneDNN) or ``'contiguous'`` (NCHW). On other devices the input's own order is kept.
        Parameters and the output keep the standard (contiguous) order either way, so state
        dicts, checkpoints and exported weights do not depend on it.
    """

    def __init__(self, *, N: int, gridsize: int = DEFAULT_GRIDSIZE, n_filters_scale: int = 2,
                 amp_activation: str = "sigmoid", pad_object: bool = True, probe_big: bool = True,
                 object_big: bool = True, object_window: float = 0.5, layout: str = "channels_last") -> None:
        super().__init__()
        if N not in ALLOWED_N:
            raise ConfigError(f"ModelConfig.N: expected one of {ALLOWED_N}, got {N!r}")
        self.layout = layout
        self.N, self.channels = N, gridsize * gridsize
        probe_big = ModelConfig(N=N, gridsize=gridsize, object_big=object_big, probe_big=probe_big,
                                pad_object=pad_object, object_window=object_window).uses_probe_big
        cin = self.channels
        enc = []
        for f in encoder_filters(N, n_filters_scale):
            enc.append(DownBlock(cin, f))
            cin = f
        self.encoder = nn.ModuleList(enc)
        kw = {"pad_object": pad_object, "probe_big": probe_big}
        self.amp = Decoder(N, n_filters_scale, self.channels, _activation(amp_activation), **kw)
        self.phase = Decoder(N, n_filters_scale, self.channels, PiTanh(), **kw)

    @property
    def layout(self) -> str:
        """``'channels_last'`` or ``'contiguous'``: the memory order of the activations on a CPU."""
        return self._layout

    @layout.setter
    def layout(self, value: str) -> None:
        if value not in LAYOUTS:
            raise ConfigError(f"PtychoNet.layout: expected one of {LAYOUTS}, got {value!r}")
        self._layout = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Object patches ``A * exp(i * phi)`` (complex64) for amplitudes ``x`` of shape (B, C, N, N)."""
        if x.ndim != 4 or x.shape[1] != self.channels or x.shape[2] != self.N or x.shape[3] != self.N:
            raise ValueError(f"X: expected shape (B, {self.channels}, {self.N}, {self.N}), got {tuple(x.shape)}")
        if x.device.type == "cpu":
            x = to_channels_last(x) if self._layout == "channels_last" else x.contiguous()
        for block in self.encoder:
            x = block(x)
        amp = self.amp(x)
        phi = self.phase(x)
        # A exp(i phi) written out, not torch.polar: polar's backward takes |A| for A, so where the amplitude
        # is negative (the probe_big branch's swish, or amp_activation 'swish') its gradient with respect to A has
        # the wrong sign (measured: d Re/d A = -cos(phi) at A = -0.2 with torch 2.13); TensorFlow's
        # complex(A cos, A sin) is right, and the parity test of one training step caught the difference
        amp, phi = amp.float(), phi.float()
        return torch.complex(amp * torch.cos(phi), amp * torch.sin(phi)).contiguous()

    def canonical_convs(self) -> Iterator[tuple[str, nn.Conv2d]]:
        """Yield ``(canonical prefix, conv)`` for every convolution (docs/conventions.md s6)."""
        for i, block in enumerate(self.encoder):
            yield f"encoder.{i}.conv1", block.conv1
            yield f"encoder.{i}.conv2", block.conv2
        for head_name in ("amp", "phase"):
            head: Decoder = getattr(self, head_name)
            for i, block in enumerate(head.blocks):
                yield f"{head_name}.{i}.conv1", block.conv1
                yield f"{head_name}.{i}.conv2", block.conv2
            if head.pad_object:
                yield f"{head_name}.out", head.out
                if head.probe_big:
                    yield f"{head_name}.big.conv1", head.big.conv1
                    yield f"{head_name}.big.conv2", head.big.conv2
                    yield f"{head_name}.big.out", head.big_out
            else:
                yield f"{head_name}.up.conv1", head.up.conv1
                yield f"{head_name}.up.conv2", head.up.conv2
                yield f"{head_name}.out", head.out


def count_trainable(module: nn.Module) -> int:
    """Number of trainable scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
