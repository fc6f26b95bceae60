"""NumPy reference stitching (reassembly) of patches into the object (docs/conventions.md s4).

The central ``M x M`` crop of every patch is splatted bilinearly at its global position;
the sum is divided by the same splat of ones (the coverage). :func:`reassemble` is the
vectorised reference (``np.bincount`` scatter, no loop per patch); :func:`reassemble_loop`
is a deliberately plain per-patch loop of slice additions, used as a second opinion in
tests and as the "Python loop" bound in benchmarks. Import from :mod:`ptycho_core.reference`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ptycho_core.errors import DataError
from ptycho_core.reference_sampling import _check_image, _check_positions, _check_size

COVERAGE_EPS = 1e-9
"""Epsilon added to the coverage before dividing (conventions s4)."""

STITCH_WEIGHT_FLOOR = 1e-3
"""Least weight :func:`probe_stitch_weight` gives a pixel, relative to the brightest (conventions s4)."""

_CHUNK_PIXELS = 1 << 22  # block pixels per bincount pass (bounds the temporary memory)


def _int_pair(value, name: str, positive: bool) -> tuple[int, int]:
    try:
        a, b = value
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: expected a pair of integers, got {value!r}") from exc
    out = []
    for v in (a, b):
        ok = isinstance(v, numbers.Integral) or (isinstance(v, numbers.Real) and float(v).is_integer())
        if isinstance(v, bool) or not ok or (positive and v < 1):
            kind = "positive integers" if positive else "integers"
            raise DataError(f"{name}: expected a pair of {kind}, got {value!r}")
        out.append(int(v))
    return out[0], out[1]


def canvas_geometry(positions, crop_size: int, object_shape=None) -> tuple[tuple[int, int], tuple[int, int]]:
    """Default stitching canvas: shape ``(H, W)`` and origin ``(x0, y0)`` in object pixels.

    With ``object_shape`` the canvas is the object itself (origin ``(0, 0)``); otherwise the
    bounding box of all crops: ``x0 = floor(min x) - M//2``,
    ``W = ceil(max x) - M//2 + M + 1 - x0`` (same for y), ``M = crop_size``.

    Parameters
    ----------
    positions : array_like, shape (P, 2)
        Patch positions ``(x, y)``.
    crop_size : int
        Side ``M`` of the central crop that is stitched.
    object_shape : tuple of int, optional
        ``(H, W)`` of the ground-truth object, when known.

    Returns
    -------
    (H, W), (x0, y0) : tuple of int pairs
    """
    pos = _check_positions(positions)
    M = _check_size(crop_size, "crop_size")
    if object_shape is not None:
        return _int_pair(object_shape, "object_shape", positive=True), (0, 0)
    if pos.shape[0] == 0:
        raise DataError("positions: empty; need at least one position to size the canvas")
    half = M // 2
    origin, shape = [], []
    for axis in (0, 1):  # x, then y
        lo = math.floor(pos[:, axis].min()) - half
        origin.append(lo)
        shape.append(math.ceil(pos[:, axis].max()) - half + M + 1 - lo)
    return (shape[1], shape[0]), (origin[0], origin[1])


def apply_flips(patches, flip_x: bool = False, flip_y: bool = False, transpose: bool = False) -> np.ndarray:
    """Apply detector/scan flips to every patch, in the order transpose, flip_x, flip_y.

    Parameters
    ----------
    patches : array_like, shape (..., N, N)
        Patches indexed ``[..., row, col]``.
    flip_x : bool
        Reverse the columns.
    flip_y : bool
        Reverse the rows.
    transpose : bool
        Swap rows and columns.

    Returns
    -------
    numpy.ndarray
        A new array (same dtype) with the flips applied.
    """
    a = _check_image(patches, "patches", min_ndim=2, max_ndim=None)
    if transpose:
        a = np.swapaxes(a, -1, -2)
    if flip_x:
        a = a[..., :, ::-1]
    if flip_y:
        a = a[..., ::-1, :]
    return np.array(a, copy=True)


def crop_center(patches, M: int) -> np.ndarray:
    """Central ``M x M`` crop ``patch[s:s+M, s:s+M]`` with ``s = N//2 - M//2``.

    Parameters
    ----------
    patches : array_like, shape (..., N, N)
    M : int
        Crop side, ``1 <= M <= N``.

    Returns
    -------
    numpy.ndarray, shape (..., M, M)
        A view of the input (same dtype).
    """
    a = _check_image(patches, "patches", min_ndim=2, max_ndim=None)
    N = a.shape[-1]
    if a.shape[-2] != N:
        raise DataError(f"patches: expected square N x N patches, got shape {a.shape}")
    M = _check_size(M, "crop_size")
    if M > N:
        raise DataError(f"crop_size: {M} is larger than the patch side N = {N}")
    s = N // 2 - M // 2
    return a[..., s:s + M, s:s + M]


def probe_stitch_weight(probe, floor: float = STITCH_WEIGHT_FLOOR) -> np.ndarray:
    """Stitching weight of every patch pixel from the probe: ``max(|P|^2 / max |P|^2, floor)`` (conventions s4).

    A patch pixel is as well determined by its patterns as the probe lights it, so where crops
    overlap, the probe-weighted mean (``InferenceConfig.stitch_weight = 'probe'``) trusts each
    patch most near its centre; the floor keeps every pixel of the crop in the mean, so the
    stitched region is the same as with equal weights.

    Parameters
    ----------
    probe : array_like, shape (N, N)
        The probe (complex or real); only ``|P|^2`` is used, up to a factor.
    floor : float
        Least relative weight, in (0, 1].

    Returns
    -------
    numpy.ndarray, shape (N, N), float64
        Weights in ``[floor, 1]``.
    """
    p = _check_image(probe, "probe", min_ndim=2, max_ndim=2)
    if not 0.0 < floor <= 1.0:
        raise DataError(f"floor: expected a number in (0, 1], got {floor!r}")
    power = np.abs(p.astype(np.complex128)) ** 2
    peak = power.max()
    if not np.isfinite(peak) or peak <= 0.0:
        raise DataError("probe: expected a finite probe with some non-zero pixel to weight the stitching, "
                        f"got max |P|^2 = {peak!r}")
    return np.maximum(power / peak, floor)


def reassemble_weighted(patches, weight, positions, crop_size: int, canvas_shape, origin) -> np.ndarray:
    """Weighted stitching: :func:`reassemble` of ``patches * weight`` divided by that of ``weight`` (conventions s4).

    ``weight`` (N, N), real and positive (e.g. :func:`probe_stitch_weight`), is the same for every patch;
    its central ``M x M`` crop weights the crop of each patch. With equal weights this is
    :func:`reassemble`. Returns (H, W) complex64, 0 where no crop landed.
    """
    a = _check_image(patches, "patches", min_ndim=3, max_ndim=3)
    w = _check_image(weight, "weight", min_ndim=2, max_ndim=2)
    if w.shape != a.shape[1:] or np.iscomplexobj(w) or not np.all(w > 0):
        raise DataError(f"weight: expected a positive real array of the patch shape {a.shape[1:]}, "
                        f"got {w.dtype} {w.shape}")
    crops, rows0, cols0, H, W = _prepare(a, positions, crop_size, canvas_shape, origin)
    total, weights = _splat_sums(crops * crop_center(w, crop_size), rows0, cols0, H, W,
                                 weight=crop_center(w, crop_size).astype(np.float64))
    return _finish(total, weights, False)


def _prepare(patches, positions, crop_size, canvas_shape, origin):
    """Validate stitching inputs; return crops (complex128), row/col of crop pixel 0 and the canvas."""
    a = _check_image(patches, "patches", min_ndim=3, max_ndim=3)
    pos = _check_positions(positions)
    if pos.shape[0] != a.shape[0]:
        raise DataError(f"positions: expected {a.shape[0]} positions (one per patch), got {pos.shape[0]}")
    crops = crop_center(a, crop_size).astype(np.complex128)
    H, W = _int_pair(canvas_shape, "canvas_shape", positive=True)
    x0, y0 = _int_pair(origin, "origin", positive=False)
    half = crops.shape[-1] // 2
    return crops, pos[:, 1] - y0 - half, pos[:, 0] - x0 - half, H, W


def _finish(total: np.ndarray, coverage: np.ndarray, return_coverage: bool):
    obj = (total / (coverage + COVERAGE_EPS)).astype(np.complex64)
    return (obj, coverage.astype(np.float32)) if return_coverage else obj


def reassemble(patches, positions, crop_size: int, canvas_shape, origin, *, return_coverage: bool = False):
    """Stitch the central crops of patches onto a canvas by bilinear splatting (vectorised).

    Crop pixel ``(i, j)`` of a patch at ``(x, y)`` lies at canvas coordinates
    ``R = y - y0 - M//2 + i``, ``C = x - x0 - M//2 + j`` and adds its value with weights
    ``(1-fr)(1-fc), (1-fr)fc, fr(1-fc), fr fc`` to the four pixels around ``(R, C)``;
    contributions outside the canvas are dropped. ``object = sum / (coverage + 1e-9)``.

    Parameters
    ----------
    patches : array_like, shape (P, N, N)
        Complex patches (apply :func:`apply_flips` first if needed).
    positions : array_like, shape (P, 2)
        Global positions ``(x, y)`` in object pixels.
    crop_size : int
        Side ``M`` of the central crop (``M <= N``).
    canvas_shape : (int, int)
        ``(H, W)`` of the canvas.
    origin : (int, int)
        Object pixel ``(x0, y0)`` of canvas pixel ``[0, 0]``.
    return_coverage : bool
        Also return the coverage (the splat of ones).

    Returns
    -------
    numpy.ndarray, shape (H, W), complex64
        The object (0 where nothing landed); with ``return_coverage`` a tuple
        ``(object, coverage)`` where coverage is (H, W) float32.
    """
    crops, rows0, cols0, H, W = _prepare(patches, positions, crop_size, canvas_shape, origin)
    total, cov = _splat_sums(crops, rows0, cols0, H, W)
    return _finish(total, cov, return_coverage)


def splat_sum(patches, positions, canvas_shape, origin) -> tuple[np.ndarray, np.ndarray]:
    """The un-normalised bilinear splat of whole patches: the adjoint of :func:`extract_patches`.

    Same geometry as :func:`reassemble` with ``crop_size = N`` (patch pixel ``(i, j)`` of a patch
    at ``(x, y)`` lands at canvas ``(y - y0 - N//2 + i, x - x0 - N//2 + j)``), but the sums are
    returned as they are: ``(total, coverage)``, complex128 and float64 (H, W).
    """
    a = _check_image(patches, "patches", min_ndim=3, max_ndim=3)
    crops, rows0, cols0, H, W = _prepare(a, positions, a.shape[-1], canvas_shape, origin)
    return _splat_sums(crops, rows0, cols0, H, W)


def splat_sum_weighted(patches, weight, positions, canvas_shape, origin) -> tuple[np.ndarray, np.ndarray]:
    """:func:`splat_sum` of complex ``patches`` (P, N, N) and, in the same pass, of one real ``weight`` (N, N)
    placed at every position: ``(total, weights)``, complex128 and float64 (H, W).

    ``weights`` equals ``splat_sum`` of ``weight`` repeated P times (real part), e.g. the probe intensity under
    an ePIE update; the coverage of :func:`splat_sum` is not computed.
    """
    a = _check_image(patches, "patches", min_ndim=3, max_ndim=3)
    w = _check_image(weight, "weight", min_ndim=2, max_ndim=2)
    if w.shape != a.shape[1:] or np.iscomplexobj(w):
        raise DataError(f"weight: expected a real array of the patch shape {a.shape[1:]}, got {w.dtype} {w.shape}")
    crops, rows0, cols0, H, W = _prepare(a, positions, a.shape[-1], canvas_shape, origin)
    return _splat_sums(crops, rows0, cols0, H, W, weight=w.astype(np.float64))


def _splat_chunks(rows0: np.ndarray, cols0: np.ndarray, M: int, H: int, W: int):
    """Chunks of crops (side ``M``) to splat: ``(slice, fr, fc, idx, inside)`` with the fractional shifts, the
    flat canvas index of every (M+1, M+1) block pixel and the mask of those on the canvas (None: all are)."""
    base_r, base_c = np.floor(rows0), np.floor(cols0)
    fr, fc = rows0 - base_r, cols0 - base_c
    base_r, base_c = base_r.astype(np.int64), base_c.astype(np.int64)
    chunk = max(1, _CHUNK_PIXELS // (M + 1) ** 2)
    for s in range(0, len(rows0), chunk):
        sl = slice(s, s + chunk)
        rows = base_r[sl, None] + np.arange(M + 1)  # (p, M+1) canvas rows of the block
        cols = base_c[sl, None] + np.arange(M + 1)
        idx = rows[:, :, None] * W + cols[:, None, :]
        inside_r, inside_c = (rows >= 0) & (rows < H), (cols >= 0) & (cols < W)
        inside = None if inside_r.all() and inside_c.all() else inside_r[:, :, None] & inside_c[:, None, :]
        yield sl, fr[sl], fc[sl], idx, inside  # what falls off the canvas is dropped by the caller


def _splat_sums(crops: np.ndarray, rows0: np.ndarray, cols0: np.ndarray, H: int, W: int,
                weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the bilinear splats of ``crops`` (P, M, M) at canvas rows/cols ``rows0``/``cols0`` of pixel 0, and
    the coverage (the splat of ones), or with ``weight`` (M, M) the splat of that real crop at every position."""
    re, im, third = (np.zeros(H * W) for _ in range(3))
    for sl, fr, fc, idx, inside in _splat_chunks(rows0, cols0, crops.shape[-1], H, W):
        if weight is None:
            block, other = _splat_blocks(crops[sl], fr, fc)
        else:
            block, other = _spread(crops[sl], fr, fc), _spread(np.broadcast_to(weight, crops[sl].shape), fr, fc)
        if inside is not None:
            idx, block, other = idx[inside], block[inside], other[inside]
        idx = idx.ravel()
        re += np.bincount(idx, weights=block.real.ravel(), minlength=H * W)
        im += np.bincount(idx, weights=block.imag.ravel(), minlength=H * W)
        third += np.bincount(idx, weights=other.ravel(), minlength=H * W)
    return (re + 1j * im).reshape(H, W), third.reshape(H, W)


def _spread(crops: np.ndarray, fr: np.ndarray, fc: np.ndarray) -> np.ndarray:
    """Bilinear splat of each (M, M) crop onto its own (M+1, M+1) block (the block of :func:`_splat_blocks`)."""
    P, M, _ = crops.shape
    wc0, wc1 = (1.0 - fc)[:, None, None], fc[:, None, None]
    wr0, wr1 = (1.0 - fr)[:, None, None], fr[:, None, None]
    cols = np.zeros((P, M, M + 1), dtype=crops.dtype)
    cols[:, :, :M] = crops * wc0
    cols[:, :, 1:] += crops * wc1
    block = np.zeros((P, M + 1, M + 1), dtype=crops.dtype)
    block[:, :M] = cols * wr0
    block[:, 1:] += cols * wr1
    return block


def _splat_blocks(crops: np.ndarray, fr: np.ndarray, fc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear splat of each (M, M) crop onto its own (M+1, M+1) block, and the splat of ones.

    Block pixel ``(i, j)`` receives ``sum_{a,b in {0,1}} w_a(fr) w_b(fc) crop[i-a, j-b]`` with
    ``w_0(f) = 1 - f`` and ``w_1(f) = f``: the four corner contributions of conventions s4,
    gathered per patch (the splat is separable, so columns first, then rows).
    """
    P, M, _ = crops.shape
    block = _spread(crops, fr, fc)
    wc0, wc1 = (1.0 - fc)[:, None, None], fc[:, None, None]
    wr0, wr1 = (1.0 - fr)[:, None, None], fr[:, None, None]
    ones = np.zeros((2, P, M + 1))
    for prof, w0, w1 in ((ones[0], wr0[:, :, 0], wr1[:, :, 0]), (ones[1], wc0[:, :, 0], wc1[:, :, 0])):
        prof[:, :M] = w0
        prof[:, 1:] += w1
    return block, ones[0][:, :, None] * ones[1][:, None, :]


def reassemble_loop(patches, positions, crop_size: int, canvas_shape, origin, *, return_coverage: bool = False):
    """Same result as :func:`reassemble`, with a plain Python loop over patches.

    Each patch adds its crop four times (one per bilinear corner) through clipped slice
    additions. Slow by design: a second opinion for tests and the loop bound for benchmarks.
    Parameters and return value as :func:`reassemble`.
    """
    crops, rows0, cols0, H, W = _prepare(patches, positions, crop_size, canvas_shape, origin)
    M = crops.shape[-1]
    total = np.zeros((H, W), dtype=np.complex128)
    coverage = np.zeros((H, W), dtype=np.float64)
    for p in range(crops.shape[0]):
        r_base, c_base = math.floor(rows0[p]), math.floor(cols0[p])
        fr, fc = rows0[p] - r_base, cols0[p] - c_base
        for r_start, wr in ((r_base, 1.0 - fr), (r_base + 1, fr)):
            for c_start, wc in ((c_base, 1.0 - fc), (c_base + 1, fc)):
                r_lo, r_hi = max(r_start, 0), min(r_start + M, H)
                c_lo, c_hi = max(c_start, 0), min(c_start + M, W)
                if r_lo >= r_hi or c_lo >= c_hi:
                    continue
                piece = crops[p, r_lo - r_start:r_hi - r_start, c_lo - c_start:c_hi - c_start]
                total[r_lo:r_hi, c_lo:c_hi] += (wr * wc) * piece
                coverage[r_lo:r_hi, c_lo:c_hi] += wr * wc
    return _finish(total, coverage, return_coverage)
