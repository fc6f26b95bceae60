"""Native torch stitching (physics.md s6, docs/conventions.md s4): bilinear scatter-add, no loop over patches.

Every patch contributes its central ``M x M`` crop; because a patch's sub-pixel offset is the
same for all of its pixels, the four bilinear weights are per patch and the splat is separable:
each crop is spread onto an (M+1) x (M+1) block, and values (real, imag) and coverage are
accumulated with one ``scatter_add_`` per chunk into a flat float64 canvas (device-agnostic: the
tensors live on whatever device is chosen), in chunks of patches to bound memory.
"""

from __future__ import annotations

import numpy as np
import torch

from ptycho_core.errors import DataError
from ptycho_core.reference_stitch import COVERAGE_EPS

CHUNK_ELEMENTS = 1 << 20  # crop pixels per chunk


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _splat(sums: torch.Tensor, crops: torch.Tensor, pos: torch.Tensor, M: int, origin: tuple[int, int],
           shape: tuple[int, int]) -> None:
    """Add one chunk, ``crops`` (P, M, M, 2) float64 real/imag at ``pos`` (P, 2) float64 (x, y), to ``sums``.

    ``sums`` is the flat ``(H*W + 1) * 3`` float64 [re, im, coverage] per canvas pixel (the last
    pixel collects what falls outside the canvas). The bilinear splat is separable with per-patch
    weights, so each crop is first spread onto an (M+1) x (M+1) block
    (``block[a, b] = sum wr[dr] wc[dc] crop[a-dr, b-dc]``) and the blocks are then added at
    integer canvas positions with one ``scatter_add_``.
    """
    H, W = shape
    half = M // 2
    lo = -float(M) - 2.0  # clamping only moves crops that lie wholly off the canvas
    cols0 = (pos[:, 0] - half - origin[0]).clamp(lo, W + 1.0)  # canvas column of crop pixel j = 0
    rows0 = (pos[:, 1] - half - origin[1]).clamp(lo, H + 1.0)
    c_floor, r_floor = torch.floor(cols0), torch.floor(rows0)
    fc, fr = (cols0 - c_floor)[:, None, None, None], (rows0 - r_floor)[:, None, None, None]
    values = torch.cat([crops, torch.ones_like(crops[..., :1])], dim=-1)  # (P, M, M, 3)
    cp = torch.nn.functional.pad(values, (0, 0, 1, 1, 1, 1))  # (P, M+2, M+2, 3)
    rows = (1.0 - fr) * cp[:, 1:M + 2] + fr * cp[:, 0:M + 1]  # (P, M+1, M+2, 3)
    block = (1.0 - fc) * rows[:, :, 1:M + 2] + fc * rows[:, :, 0:M + 1]  # (P, M+1, M+1, 3)
    ar = torch.arange(M + 1, device=crops.device)
    r = (r_floor.long()[:, None] + ar[None, :])[:, :, None]  # (P, M+1, 1)
    c = (c_floor.long()[:, None] + ar[None, :])[:, None, :]  # (P, 1, M+1)
    inside = (r >= 0) & (r < H) & (c >= 0) & (c < W)  # (P, M+1, M+1)
    ids = torch.where(inside, r * W + c, H * W)
    flat = (ids[..., None] * 3 + torch.arange(3, device=crops.device)).reshape(-1)
    sums.scatter_add_(0, flat, block.reshape(-1))


def reassemble_torch(patches: np.ndarray | torch.Tensor, positions: np.ndarray | torch.Tensor, crop_size: int,
                     canvas_shape: tuple[int, int], origin: tuple[int, int],
                     device: torch.device | str | None = None) -> np.ndarray:
    """Stitch ``patches`` (P, N, N) at ``positions`` (P, 2) (x, y) onto an (H, W) canvas.

    Parameters
    ----------
    patches : array (P, N, N) complex
    positions : array (P, 2) float, global (x, y) patch centres in object pixels.
    crop_size : int
        ``M``: side of the central crop used from every patch.
    canvas_shape : (int, int)
        ``(H, W)`` of the output.
    origin : (int, int)
        Object pixel ``(x0, y0)`` of canvas pixel ``[0, 0]``.
    device : optional
        Torch device (default: CUDA when available, else CPU).

    Returns
    -------
    numpy.ndarray
        (H, W) complex64 ``sum / (coverage + 1e-9)``.
    """
    p = torch.as_tensor(patches)
    pos = torch.as_tensor(positions, dtype=torch.float64)
    if p.ndim != 3 or p.shape[1] != p.shape[2]:
        raise DataError(f"patches: expected shape (P, N, N), got {tuple(p.shape)}")
    if pos.shape != (p.shape[0], 2):
        raise DataError(f"positions: expected shape ({p.shape[0]}, 2), got {tuple(pos.shape)}")
    N, M = int(p.shape[1]), int(crop_size)
    if not 1 <= M <= N:
        raise DataError(f"crop_size: expected 1 <= M <= N = {N}, got {M}")
    H, W = int(canvas_shape[0]), int(canvas_shape[1])
    if H < 1 or W < 1:
        raise DataError(f"canvas_shape: expected positive (H, W), got {canvas_shape}")
    dev = torch.device(device) if device is not None else _default_device()
    start = N // 2 - M // 2
    crops = p[:, start:start + M, start:start + M].to(torch.complex64)
    sums = torch.zeros((H * W + 1) * 3, dtype=torch.float64, device=dev)
    chunk = max(1, CHUNK_ELEMENTS // (M * M))
    org = (int(origin[0]), int(origin[1]))
    for i in range(0, crops.shape[0], chunk):
        c = torch.view_as_real(crops[i:i + chunk].to(dev)).to(torch.float64)
        _splat(sums, c, pos[i:i + chunk].to(dev), M, org, (H, W))
    sums = sums.reshape(H * W + 1, 3)[:-1]
    obj = sums[:, :2] / (sums[:, 2:] + COVERAGE_EPS)
    out = torch.complex(obj[:, 0], obj[:, 1]).to(torch.complex64).reshape(H, W)
    return out.cpu().numpy()
