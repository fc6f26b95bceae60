"""The physics layer inside training (docs/conventions.md s3) and the losses, in torch.

Layout: object patches ``(B, C, N, N)`` complex64, offsets ``(B, C, 2)`` float32 as (x, y),
amplitudes ``(B, C, N, N)`` float32. Every operation works per group: nothing mixes the
groups of a batch. Bilinear translation gathers the 4 neighbours of every output pixel
(separable in rows and columns because a translation is uniform), vectorised over all
groups and channels.
"""

from __future__ import annotations

import torch
from torch import nn

from ptycho_core.errors import ConfigError
from ptycho_core.reference_layer import (  # one definition for all backends
    LOG_EPS,
    MERGE_EPS,
    canvas_side,
    window_bounds,
)


def _shift_axis(x: torch.Tensor, d: torch.Tensor, dim: int) -> torch.Tensor:
    """Bilinear shift of ``x`` (L, H, W) by ``d`` (L,) pixels along ``dim`` (1: rows, 2: cols), zeros outside."""
    length = x.shape[dim]
    base = torch.floor(-d)
    frac = (-d - base).to(torch.float32)
    pos = torch.arange(length, device=x.device)
    out = None
    for step, weight in ((0, 1.0 - frac), (1, frac)):
        idx = pos[None, :] + base.to(torch.long)[:, None] + step  # (L, length)
        valid = (idx >= 0) & (idx < length)
        w = weight[:, None] * valid.to(torch.float32)
        idx = idx.clamp(0, length - 1)
        if dim == 1:
            gathered = torch.gather(x, 1, idx[:, :, None].expand(-1, -1, x.shape[2]))
            term = gathered * w[:, :, None]
        else:
            gathered = torch.gather(x, 2, idx[:, None, :].expand(-1, x.shape[1], -1))
            term = gathered * w[:, None, :]
        out = term if out is None else out + term
    return out


def translate(img: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Translate images so content moves ``dx`` columns right and ``dy`` rows down (bilinear, zero fill).

    Parameters
    ----------
    img : torch.Tensor
        ``(..., H, W)`` real or complex images.
    dx, dy : torch.Tensor
        Shifts broadcastable to ``img.shape[:-2]``.

    Returns
    -------
    torch.Tensor
        ``out[..., r, c] = img(r - dy, c - dx)``, same shape and dtype as ``img``.
    """
    lead = img.shape[:-2]
    h, w = img.shape[-2:]
    flat = img.reshape(-1, h, w)
    dxf = torch.broadcast_to(torch.as_tensor(dx, device=img.device), lead).reshape(-1)
    dyf = torch.broadcast_to(torch.as_tensor(dy, device=img.device), lead).reshape(-1)
    out = _shift_axis(_shift_axis(flat, dyf, 1), dxf, 2)
    return out.reshape(img.shape)


def central_window(N: int, device: torch.device | None = None, side: int | None = None) -> torch.Tensor:
    """(N, N) float32 window: 1 on the central ``side`` rows and columns, 0 elsewhere.

    ``side`` is ``ModelConfig.window_side``; the default ``N // 2`` gives rows and columns ``[N/4, 3N/4)``.
    """
    lo, hi = window_bounds(N, side)
    w = torch.zeros(N, N, device=device)
    w[lo:hi, lo:hi] = 1.0
    return w


def _pad_to(x: torch.Tensor, S: int) -> torch.Tensor:
    N = x.shape[-1]
    before = (S - N) // 2
    after = S - N - before
    return nn.functional.pad(x, (before, after, before, after))


def merge(patches: torch.Tensor, offsets: torch.Tensor, gridsize: int, window: int | None = None) -> torch.Tensor:
    """Merge the C patches of each group onto a canvas ``(B, S, S)`` with the masked-numerator rule.

    ``sum_c T(pad(O_c w)) / (sum_c T(pad(w)) + eps)``, ``T`` the bilinear translation of
    :func:`translate` by the patch's offset and ``w`` the central window of side ``window``
    (``ModelConfig.window_side``; default ``N // 2``). Computed as a splat:
    only the window's ``h x h`` block of a patch is non-zero, so its translation is that
    block spread bilinearly over ``(h + 1)^2`` pixels at an integer corner, added onto the
    canvas with ``index_add`` (numerator and window together). Equal to translating the padded
    ``S x S`` patches (:func:`merge_translated`, the plain form kept for tests) with about a tenth of
    the work; contributions that land outside the canvas are dropped, as the translation drops them.
    """
    B, C, N, _ = patches.shape
    S = canvas_side(N, gridsize, window)
    q, hi = window_bounds(N, window)
    h = hi - q
    block = patches[..., q:q + h, q:q + h]
    # translate() reads out[r] = (1 - f) in[r + b] + f in[r + b + 1] with b = floor(-d), f = -d - b, so
    # source pixel k lands on r = k - b - 1 (weight f) and r = k - b (weight 1 - f)
    bx, by = torch.floor(-offsets[..., 0]), torch.floor(-offsets[..., 1])
    fx, fy = -offsets[..., 0] - bx, -offsets[..., 1] - by  # (B, C)
    rows = _spread(block, fy, dim=2)  # (B, C, h + 1, h)
    full = _spread(rows, fx, dim=3)  # (B, C, h + 1, h + 1)
    ones = _profile(fy, h)[..., :, None] * _profile(fx, h)[..., None, :]  # the same spread of the window
    start = (S - N) // 2 + q - 1
    span = torch.arange(h + 1, device=patches.device)
    r = (start - by).long()[..., None] + span  # (B, C, h + 1) canvas rows of the spread block
    c = (start - bx).long()[..., None] + span
    inside = ((r >= 0) & (r < S))[..., :, None] & ((c >= 0) & (c < S))[..., None, :]
    group = torch.arange(B, device=patches.device)[:, None, None, None]
    index = (group * S + r.clamp(0, S - 1)[..., :, None]) * S + c.clamp(0, S - 1)[..., None, :]
    values = torch.stack([full.real, full.imag, ones], dim=-1) * inside[..., None]
    sums = patches.real.new_zeros(B * S * S, 3).index_add_(0, index.reshape(-1), values.reshape(-1, 3))
    sums = sums.reshape(B, S, S, 3)
    return torch.complex(sums[..., 0], sums[..., 1]) / (sums[..., 2] + MERGE_EPS)


def _spread(x: torch.Tensor, f: torch.Tensor, dim: int) -> torch.Tensor:
    """Bilinear spread of ``x`` along ``dim`` (2: rows, 3: cols) onto one more pixel.

    ``out[t] = f x[t] + (1 - f) x[t-1]`` (zero outside ``x``); ``f`` (B, C) is the fractional part of
    the shift of :func:`merge`.
    """
    w = f[..., None, None]
    pad_after = [0, 1] if dim == 3 else [0, 0, 0, 1]
    pad_before = [1, 0] if dim == 3 else [0, 0, 1, 0]
    return nn.functional.pad(x * w, pad_after) + nn.functional.pad(x * (1 - w), pad_before)


def _profile(f: torch.Tensor, h: int) -> torch.Tensor:
    """The spread of a run of ``h`` ones (B, C) -> (B, C, h + 1): ``f`` first, ``1 - f`` last, 1 between."""
    out = f.new_ones(*f.shape, h + 1)
    out[..., 0] = f
    out[..., h] = 1 - f
    return out


def merge_translated(patches: torch.Tensor, offsets: torch.Tensor, gridsize: int,
                     window: int | None = None) -> torch.Tensor:
    """:func:`merge` written as the translation of the padded patches (the definition; slower)."""
    N = patches.shape[-1]
    S = canvas_side(N, gridsize, window)
    w = central_window(N, patches.device, window)
    dx, dy = offsets[..., 0], offsets[..., 1]
    num = translate(_pad_to(patches * w, S), dx, dy).sum(dim=1)
    den = translate(_pad_to(w.expand(patches.shape), S), dx, dy).sum(dim=1)
    return num / (den + MERGE_EPS)


def centre_crop(canvas: torch.Tensor, N: int) -> torch.Tensor:
    """Rows/cols ``[(S-N)//2, (S-N)//2 + N)`` of the last two axes."""
    start = (canvas.shape[-1] - N) // 2
    return canvas[..., start:start + N, start:start + N]


def extract(canvas: torch.Tensor, offsets: torch.Tensor, N: int) -> torch.Tensor:
    """Per-channel patches ``crop_N(translate(canvas, -dx_c, -dy_c))``: (B, S, S) -> (B, C, N, N).

    Only the ``N + 1`` rows and columns that the crop reads are gathered (two taps each), instead of
    translating the whole ``S x S`` canvas and cropping it (:func:`extract_translated`, the definition);
    same values and gradients.
    """
    S, C = canvas.shape[-1], offsets.shape[1]
    start = (S - N) // 2
    by, bx = torch.floor(offsets[..., 1]), torch.floor(offsets[..., 0])
    stacked = canvas[:, None].expand(-1, C, -1, -1)
    rows = _two_taps(stacked, (start + by).long(), offsets[..., 1] - by, N, dim=2)  # (B, C, N, S)
    return _two_taps(rows, (start + bx).long(), offsets[..., 0] - bx, N, dim=3)


def _two_taps(x: torch.Tensor, first: torch.Tensor, frac: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """``out[r] = (1 - frac) x[first + r] + frac x[first + r + 1]`` along ``dim`` (2: rows, 3: cols), ``r < n``.

    ``first`` and ``frac`` are (B, C); indices outside ``x`` read zero (the zero fill of :func:`translate`).
    """
    length = x.shape[dim]
    idx = first[..., None] + torch.arange(n + 1, device=x.device)  # (B, C, n + 1)
    valid = ((idx >= 0) & (idx < length)).to(frac.dtype)
    idx = idx.clamp(0, length - 1)
    f = frac[..., None, None]
    if dim == 2:
        g = torch.gather(x, 2, idx[..., :, None].expand(-1, -1, -1, x.shape[3])) * valid[..., :, None]
        return g[:, :, :n] * (1 - f) + g[:, :, 1:] * f
    g = torch.gather(x, 3, idx[..., None, :].expand(-1, -1, x.shape[2], -1)) * valid[..., None, :]
    return g[..., :n] * (1 - f) + g[..., 1:] * f


def extract_translated(canvas: torch.Tensor, offsets: torch.Tensor, N: int) -> torch.Tensor:
    """:func:`extract` written as the translation of the whole canvas, then the crop (the definition; slower)."""
    C = offsets.shape[1]
    stacked = canvas[:, None].expand(-1, C, -1, -1)
    return centre_crop(translate(stacked, -offsets[..., 0], -offsets[..., 1]), N)


def diffract_intensity(psi: torch.Tensor) -> torch.Tensor:
    """``|fftshift(fft2(psi)) / N|^2`` over the last two axes (float32)."""
    f = torch.fft.fftshift(torch.fft.fft2(psi, norm="ortho"), dim=(-2, -1))
    return f.real.square() + f.imag.square()


class PhysicsLayer(nn.Module):
    """Merge, extract, illuminate and diffract; holds the intensity scale ``s`` and the probe.

    ``intensity_scale`` is an ``nn.Parameter`` when trainable, a buffer otherwise (same
    state-dict key either way); the probe is held as ``probe_real``/``probe_imag`` float32
    (parameters when trainable). A zero probe means "not set yet" (see ``probe_is_set``).
    """

    def __init__(self, *, N: int, gridsize: int, object_big: bool, scale: float, scale_trainable: bool,
                 probe_trainable: bool, window: int | None = None) -> None:
        super().__init__()
        self.N, self.gridsize, self.object_big = N, gridsize, object_big
        self.window = N // 2 if window is None else window
        s = torch.tensor(float(scale), dtype=torch.float32)
        if scale_trainable:
            self.intensity_scale = nn.Parameter(s)
        else:
            self.register_buffer("intensity_scale", s)
        zeros = torch.zeros(N, N, dtype=torch.float32)
        if probe_trainable:
            self.probe_real = nn.Parameter(zeros.clone())
            self.probe_imag = nn.Parameter(zeros.clone())
        else:
            self.register_buffer("probe_real", zeros.clone())
            self.register_buffer("probe_imag", zeros.clone())

    @property
    def probe(self) -> torch.Tensor:
        """The current normalised probe, (N, N) complex64."""
        return torch.complex(self.probe_real, self.probe_imag)

    def probe_is_set(self) -> bool:
        """Whether a probe was set (by training, loading or weight import)."""
        return bool(torch.any(self.probe_real != 0) or torch.any(self.probe_imag != 0))

    @torch.no_grad()
    def set_probe(self, probe: torch.Tensor) -> None:
        """Copy a normalised (N, N) complex probe into the layer."""
        if tuple(probe.shape) != (self.N, self.N):
            raise ConfigError(f"probe: expected shape ({self.N}, {self.N}), got {tuple(probe.shape)}")
        self.probe_real.copy_(probe.real.to(torch.float32))
        self.probe_imag.copy_(probe.imag.to(torch.float32))

    def forward(self, patches: torch.Tensor, offsets: torch.Tensor,
                probe: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted intensity ``lambda = s^2 |F(O' P)|^2`` (B, C, N, N) and the illuminated patches ``O'``.

        ``probe`` overrides the held probe (used when the model holds none yet).
        """
        C = patches.shape[1]
        if C > 1 and self.object_big:
            obj = extract(merge(patches, offsets, self.gridsize, self.window), offsets, self.N)
        else:
            obj = patches
        p = self.probe if probe is None else probe
        intensity = diffract_intensity(obj * p)
        return self.intensity_scale.square() * intensity, obj


def losses(lam: torch.Tensor, X: torch.Tensor, s0: float, *, patches: torch.Tensor | None = None,
           Y: torch.Tensor | None = None, nll_weight: float = 1.0, mae_weight: float = 0.0,
           realspace_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Loss terms of conventions s3.6 (means over all elements) and their weighted sum ``'loss'``.

    ``loss = nll_weight * deviance + mae_weight * mae + realspace_weight * realspace`` where
    ``deviance`` is the Poisson negative log-likelihood ``nll`` minus its floor at ``lam = k``
    (>= 0, same gradient); ``misfit`` (relative amplitude misfit) is reported, not optimised.

    Parameters
    ----------
    lam : torch.Tensor
        Predicted intensity in photon units.
    X : torch.Tensor
        Normalised measured amplitudes, same shape; the target intensity is ``(s0 * X)^2``.
    s0 : float
        Fixed physics scale ``sqrt(nphotons) / (N/2)``.
    patches, Y : torch.Tensor, optional
        Predicted and ground-truth object patches for the real-space term.
    """
    target = s0 * X
    k = target.square()
    log_lam = torch.log(lam + LOG_EPS)
    out = {"nll": torch.mean(lam - k * log_lam)}
    # the same objective minus its floor at lam = k (reference.poisson_deviance): >= 0, same gradient
    out["deviance"] = torch.mean(lam - k - k * (log_lam - torch.log(k + LOG_EPS)))
    amp = torch.sqrt(lam + LOG_EPS)
    out["mae"] = torch.mean(torch.abs(amp - target))
    with torch.no_grad():  # reported, not optimised (reference.amplitude_misfit)
        out["misfit"] = torch.sum((amp - target).square()) / torch.clamp(torch.sum(k), min=LOG_EPS)
    total = nll_weight * out["deviance"] + mae_weight * out["mae"]
    if realspace_weight > 0:
        if Y is None or patches is None:
            raise ConfigError(
                "TrainingConfig.realspace_weight: > 0 needs ground-truth patches Y (data without objectGuess); "
                "set realspace_weight = 0 or provide an objectGuess"
            )
        out["realspace"] = torch.mean(torch.abs(patches - Y))
        total = total + realspace_weight * out["realspace"]
    out["loss"] = total
    return out
