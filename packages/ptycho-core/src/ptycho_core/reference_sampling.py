"""NumPy reference: bilinear sampling, translation and patch extraction (docs/conventions.md s1).

Arrays are indexed ``[row, col]``; ``x`` is the column and ``y`` the row; pixel centres sit
at integer coordinates and pixels outside an image count as 0. Computation is done in
float64 / complex128 and results are returned as float32 / complex64, so integer shifts
and integer positions reproduce the input exactly.

Import these functions from :mod:`ptycho_core.reference`.
"""

from __future__ import annotations

import numbers

import numpy as np

from ptycho_core.errors import DataError

_CHUNK_PIXELS = 1 << 22  # pixels per chunk of patches in extract_patches (bounds temporary memory)


def _promote(a: np.ndarray) -> np.ndarray:
    """Return ``a`` as complex128 if it is complex, else as float64."""
    return a.astype(np.complex128 if np.iscomplexobj(a) else np.float64, copy=False)


def _result_dtype(a: np.ndarray) -> type:
    """complex64 for complex input, float32 otherwise."""
    return np.complex64 if np.iscomplexobj(a) else np.float32


def _check_finite(a: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name}: contains NaN or infinite values; expected finite numbers")


def _check_size(value, name: str) -> int:
    """Validate a positive integer size (N, crop size) and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise DataError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _check_positions(positions, name: str = "positions") -> np.ndarray:
    """Return ``positions`` as a finite float64 (P, 2) array of (x, y) pairs."""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise DataError(f"{name}: expected shape (P, 2) of (x, y) pairs, got shape {pos.shape}")
    _check_finite(pos, name)
    return pos


def _check_image(img, name: str, min_ndim: int = 2, max_ndim: int | None = 2) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim < min_ndim or (max_ndim is not None and a.ndim > max_ndim):
        want = f"{min_ndim}" if max_ndim == min_ndim else f"at least {min_ndim}"
        raise DataError(f"{name}: expected {want} dimensions ([..., row, col]), got shape {a.shape}")
    if a.dtype.kind not in "biufc":
        raise DataError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    return a


def _bilinear(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of the 2-D ``img`` at broadcastable ``rows``/``cols`` (zero outside)."""
    H, W = img.shape
    r0 = np.floor(rows)
    c0 = np.floor(cols)
    fr, fc = rows - r0, cols - c0
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    out = None
    for a, wr in ((0, 1.0 - fr), (1, fr)):
        rr = r0 + a
        wr = wr * ((rr >= 0) & (rr < H))
        rr = np.clip(rr, 0, H - 1)
        for b, wc in ((0, 1.0 - fc), (1, fc)):
            cc = c0 + b
            wc = wc * ((cc >= 0) & (cc < W))
            term = img[rr, np.clip(cc, 0, W - 1)] * (wr * wc)
            out = term if out is None else out + term
    return out


def sample_bilinear(img, rows, cols) -> np.ndarray:
    """Sample a 2-D image at (possibly non-integer) coordinates, bilinearly, zero outside.

    Parameters
    ----------
    img : array_like, shape (H, W)
        Real or complex image indexed ``[row, col]``.
    rows, cols : array_like
        Row (``y``) and column (``x``) coordinates; broadcast against each other.

    Returns
    -------
    numpy.ndarray
        Samples with the broadcast shape of ``rows`` and ``cols``; complex64 for a complex
        image, float32 otherwise. Each of the four neighbours outside the image counts as 0.
    """
    a = _check_image(img, "img")
    r = np.asarray(rows, dtype=np.float64)
    c = np.asarray(cols, dtype=np.float64)
    _check_finite(r, "rows")
    _check_finite(c, "cols")
    try:
        np.broadcast_shapes(r.shape, c.shape)
    except ValueError as exc:
        raise DataError(f"rows/cols: shapes {r.shape} and {c.shape} do not broadcast") from exc
    return _bilinear(_promote(a), r, c).astype(_result_dtype(a))


def _shift_axis(stack: np.ndarray, shift: np.ndarray, axis: int) -> np.ndarray:
    """Linear shift of every image of ``stack`` (K, H, W) along ``axis`` (1 rows, 2 cols).

    ``out[..., i, ...] = stack(..., i - shift_k, ...)`` with zeros outside.
    """
    L = stack.shape[axis]
    pos = -shift
    base = np.floor(pos)
    frac = pos - base
    idx = np.arange(L)[None, :] + base.astype(np.int64)[:, None]  # (K, L)
    out = None
    for a, w in ((0, 1.0 - frac), (1, frac)):
        j = idx + a
        valid = (j >= 0) & (j < L)
        j = np.clip(j, 0, L - 1)
        if axis == 1:
            g = np.take_along_axis(stack, j[:, :, None], axis=1) * valid[:, :, None]
        else:
            g = np.take_along_axis(stack, j[:, None, :], axis=2) * valid[:, None, :]
        term = g * w[:, None, None]
        out = term if out is None else out + term
    return out


def _translate64(stack: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Translate a float64/complex128 stack (K, H, W) by per-image shifts (K,), no dtype change."""
    return _shift_axis(_shift_axis(stack, np.asarray(dy, np.float64), axis=1), np.asarray(dx, np.float64), axis=2)


def translate(img, dx, dy) -> np.ndarray:
    """Translate an image (or a stack of images) by ``(dx, dy)`` pixels, bilinearly.

    ``out[r, c] = img(r - dy, c - dx)``: the content moves ``dx`` columns right and
    ``dy`` rows down; pixels coming from outside the image are 0. Integer shifts are exact.

    Parameters
    ----------
    img : array_like, shape (..., H, W)
        Real or complex image(s).
    dx, dy : float or array_like
        Shifts in pixels; scalars, or arrays broadcastable to ``img.shape[:-2]`` for a
        per-image shift.

    Returns
    -------
    numpy.ndarray
        Same shape as ``img``; complex64 for complex input, float32 otherwise.
    """
    a = _check_image(img, "img", min_ndim=2, max_ndim=None)
    lead, (H, W) = a.shape[:-2], a.shape[-2:]
    shifts = []
    for name, value in (("dx", dx), ("dy", dy)):
        v = np.asarray(value, dtype=np.float64)
        _check_finite(v, name)
        try:
            shifts.append(np.broadcast_to(v, lead).reshape(-1))
        except ValueError as exc:
            raise DataError(f"{name}: shape {v.shape} does not broadcast to the image stack shape {lead}") from exc
    stack = _promote(a).reshape(-1, H, W)
    out = _translate64(stack, shifts[0], shifts[1])
    return out.reshape(a.shape).astype(_result_dtype(a))


def extract_patches(obj, positions, N: int) -> np.ndarray:
    """Cut N x N patches of an object centred on scan positions (bilinear, zero outside).

    ``patch[r, c] = obj(y - N//2 + r, x - N//2 + c)``: the position lies at patch index
    ``N//2`` (the zero-frequency index of ``fftshift``). Integer positions copy exactly.

    Parameters
    ----------
    obj : array_like, shape (H, W)
        Real or complex object.
    positions : array_like, shape (P, 2)
        Patch centres as ``(x, y)`` in object pixels.
    N : int
        Patch side.

    Returns
    -------
    numpy.ndarray, shape (P, N, N)
        complex64 for a complex object, float32 otherwise.
    """
    a = _check_image(obj, "obj")
    pos = _check_positions(positions)
    N = _check_size(N, "N")
    pad = N + 2  # a block that misses the object entirely is read from this zero border
    wide = np.complex128 if np.iscomplexobj(a) else np.float64
    src = np.zeros((a.shape[0] + 2 * pad, a.shape[1] + 2 * pad), dtype=wide)
    src[pad:pad + a.shape[0], pad:pad + a.shape[1]] = a
    out = np.empty((pos.shape[0], N, N), dtype=_result_dtype(a))
    k = np.arange(N + 1)
    chunk = max(1, _CHUNK_PIXELS // (N + 1) ** 2)
    for start in range(0, pos.shape[0], chunk):
        p = pos[start:start + chunk]
        top = np.floor(p[:, 1]) - N // 2  # object row of patch pixel (0, 0), rounded down
        left = np.floor(p[:, 0]) - N // 2
        fr = (p[:, 1] - N // 2 - top)[:, None, None]
        fc = (p[:, 0] - N // 2 - left)[:, None, None]
        r0 = np.clip(top.astype(np.int64), -pad, a.shape[0] + pad - (N + 1)) + pad
        c0 = np.clip(left.astype(np.int64), -pad, a.shape[1] + pad - (N + 1)) + pad
        block = src[(r0[:, None] + k)[:, :, None], (c0[:, None] + k)[:, None, :]]  # (p, N+1, N+1)
        rows = block[:, :N] * (1.0 - fr) + block[:, 1:] * fr
        out[start:start + chunk] = rows[:, :, :N] * (1.0 - fc) + rows[:, :, 1:] * fc
    return out
