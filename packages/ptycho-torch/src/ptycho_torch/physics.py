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
from ptycho_core.reference_layer import LOG_EPS, MERGE_EPS, canvas_side  # one definition for all backends


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


def central_window(N: int, device: torch.device | None = None) -> torch.Tensor:
    """(N, N) float32 window: 1 on rows and columns ``[N/4, 3N/4)``, 0 elsewhere."""
    w = torch.zeros(N, N, device=device)
    w[N // 4: 3 * N // 4, N // 4: 3 * N // 4] = 1.0
    return w


def _pad_to(x: torch.Tensor, S: int) -> torch.Tensor:
    N = x.shape[-1]
    before = (S - N) // 2
    after = S - N - before
    return nn.functional.pad(x, (before, after, before, after))


def merge(patches: torch.Tensor, offsets: torch.Tensor, gridsize: int) -> torch.Tensor:
    """Merge the C patches of each group onto a canvas ``(B, S, S)`` with the masked-numerator rule."""
    N = patches.shape[-1]
    S = canvas_side(N, gridsize)
    w = central_window(N, patches.device)
    dx, dy = offsets[..., 0], offsets[..., 1]
    num = translate(_pad_to(patches * w, S), dx, dy).sum(dim=1)
    den = translate(_pad_to(w.expand(patches.shape), S), dx, dy).sum(dim=1)
    return num / (den + MERGE_EPS)


def centre_crop(canvas: torch.Tensor, N: int) -> torch.Tensor:
    """Rows/cols ``[(S-N)//2, (S-N)//2 + N)`` of the last two axes."""
    start = (canvas.shape[-1] - N) // 2
    return canvas[..., start:start + N, start:start + N]


def extract(canvas: torch.Tensor, offsets: torch.Tensor, N: int) -> torch.Tensor:
    """Per-channel patches ``crop_N(translate(canvas, -dx_c, -dy_c))``: (B, S, S) -> (B, C, N, N)."""
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
                 probe_trainable: bool) -> None:
        super().__init__()
        self.N, self.gridsize, self.object_big = N, gridsize, object_big
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
            obj = extract(merge(patches, offsets, self.gridsize), offsets, self.N)
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
