"""NumPy reference of the physics layer inside training (docs/conventions.md s3).

Merge, extract, illuminate, diffract and the loss, per group: group ``b`` of a batch
only ever sees its own ``C`` patches. Tensors are channels-last: patches (B, N, N, C),
offsets (B, C, 2) as ``(x, y)``. Import these functions from :mod:`ptycho_core.reference`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ptycho_core.errors import ConfigError, DataError
from ptycho_core.reference_physics import _check_square
from ptycho_core.reference_sampling import _check_finite, _check_image, _check_size, _translate64

MERGE_EPS = 1e-3
"""Epsilon added to the merge denominator (conventions s3.1)."""

LOG_EPS = 1e-12
"""Epsilon inside the logarithm / square root of the loss (conventions s3.6)."""


def canvas_side(N: int, gridsize: int, window: int | None = None) -> int:
    """Side ``S = N + (gridsize - 1) * 4 + 10 + (window - N // 2)`` of the merge canvas, unchecked (the one place
    of the formula).

    ``window`` is the side of the merge's central window (``ModelConfig.window_side``; default ``N // 2``,
    which gives upstream's ``N + (gridsize - 1) * 4 + 10``). A wider window widens the canvas by as much, so
    a window can move as far from the group's centre before it leaves the canvas: ``N/4 + 5 + 2 (gridsize - 1)``
    pixels, 23 at N = 64 and gridsize 2, whatever the window. The backends call it in their layers, where
    ``N`` may be a traced size; :func:`merge_canvas_side` is the checked form.
    """
    return N + (gridsize - 1) * 4 + 10 + (0 if window is None else window - N // 2)


def merge_canvas_side(N: int, gridsize: int, window: int | None = None) -> int:
    """:func:`canvas_side` of ``N`` and ``gridsize`` checked to be positive integers (``DataError`` if not),
    and of ``window`` checked by :func:`window_bounds`."""
    N = _check_size(N, "N")
    if window is not None:
        window_bounds(N, window)
    return canvas_side(N, _check_size(gridsize, "gridsize"), window)


def _check_offsets(offsets, B: int, C: int) -> np.ndarray:
    off = np.asarray(offsets, dtype=np.float64)
    if off.shape != (B, C, 2):
        raise DataError(f"offsets: expected shape (B, C, 2) = ({B}, {C}, 2) of (x, y) pairs, got {off.shape}")
    _check_finite(off, "offsets")
    return off


def _check_patches(patches, gridsize: int | None = None) -> np.ndarray:
    p = _check_image(patches, "patches", min_ndim=4, max_ndim=4)
    if p.shape[1] != p.shape[2]:
        raise DataError(f"patches: expected shape (B, N, N, C) with square patches, got {p.shape}")
    if gridsize is not None:
        if isinstance(gridsize, bool) or not isinstance(gridsize, numbers.Integral) or gridsize < 1:
            raise ConfigError(f"gridsize: expected a positive integer, got {gridsize!r}")
        if p.shape[3] != gridsize * gridsize:
            raise DataError(f"patches: expected C = gridsize**2 = {gridsize * gridsize} channels "
                            f"(shape (B, N, N, C)), got shape {p.shape}")
    return p


def window_bounds(N: int, side: int | None = None) -> tuple[int, int]:
    """Rows (and columns) ``[lo, hi)`` of the central window of side ``side`` (default ``N // 2``) of an N x N patch.

    ``lo = (N - side) // 2``; ``side`` must be even and at most N (``ModelConfig.window_side``;
    physics.md s5 step 1), so the window is centred. ``DataError`` otherwise.
    """
    N = _check_size(N, "N")
    if side is None:
        side = N // 2
    if isinstance(side, bool) or not isinstance(side, numbers.Integral) or not 0 < side <= N or side % 2:
        raise DataError(f"window: expected an even number of pixels from 2 to N = {N}, got {side!r}")
    lo = (N - int(side)) // 2
    return lo, lo + int(side)


def merge_window(N: int, side: int | None = None) -> np.ndarray:
    """Central-window mask, float64: 1 on rows and columns ``[lo, hi)`` of :func:`window_bounds`, 0 elsewhere.

    The window by which the merge masks every patch (conventions s3.1): the object support of a
    model at gridsize > 1. The default side is ``N // 2`` (rows ``[N//4, 3N//4)``)."""
    lo, hi = window_bounds(N, side)
    w = np.zeros((N, N), dtype=np.float64)
    w[lo:hi, lo:hi] = 1.0
    return w


def probe_outside_window(probe, side: int | None = None) -> float:
    """Fraction of the probe's energy ``sum |P|^2`` outside the central window of :func:`merge_window`.

    ``side`` is the window's side in pixels (``ModelConfig.window_side``; default ``N // 2``, rows
    and columns ``[N//4, 3N//4)``).

    At gridsize > 1 the merge masks every patch by that window (conventions s3.1), so the model's
    object is zero outside the union of a group's windows and the part of the probe outside its own
    window illuminates object the model cannot represent: the true object then does not minimise the
    loss (physics.md s5, "Object support and the probe"). 0 for a probe inside the window.

    Raises
    ------
    DataError
        ``probe`` is not a square, finite 2-D array, or holds no energy.
    """
    p = _check_image(probe, "probe", min_ndim=2, max_ndim=2)
    N = _check_square(p, "probe")
    _check_finite(p, "probe")
    power = np.abs(p.astype(np.complex128)) ** 2
    total = float(power.sum())
    if not total > 0.0:
        raise DataError("probe: expected a probe with non-zero intensity, got all zeros")
    return float(max(0.0, 1.0 - float(np.sum(power * merge_window(N, side))) / total))


def _merge64(p: np.ndarray, off: np.ndarray, gridsize: int, window: int | None = None) -> np.ndarray:
    """Merge in complex128: patches (B, N, N, C), offsets (B, C, 2) -> canvas (B, S, S)."""
    B, N, _, C = p.shape
    S = merge_canvas_side(N, gridsize, window)
    lo = (S - N) // 2
    w = merge_window(N, window)
    padded = np.zeros((B, C, S, S), dtype=np.complex128)
    padded[:, :, lo:lo + N, lo:lo + N] = np.moveaxis(p, -1, 1) * w
    wpad = np.zeros((B * C, S, S), dtype=np.float64)
    wpad[:, lo:lo + N, lo:lo + N] = w
    dx, dy = off[..., 0].reshape(-1), off[..., 1].reshape(-1)
    num = _translate64(padded.reshape(B * C, S, S), dx, dy).reshape(B, C, S, S).sum(axis=1)
    den = _translate64(wpad, dx, dy).reshape(B, C, S, S).sum(axis=1)
    return num / (den + MERGE_EPS)


def merge_patches(patches, offsets, gridsize: int, window: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Merge the C patches of every group onto one canvas (conventions s3.1-2).

    ``canvas = sum_c T(pad(O_c * w)) / (sum_c T(pad(w)) + 1e-3)`` with ``T`` the translation
    by the offset ``(dx_c, dy_c)`` and ``w`` the central window (:func:`merge_window` of side
    ``window``, default ``N // 2``: ``[N/4, 3N/4)``).

    Parameters
    ----------
    patches : array_like, shape (B, N, N, C)
        Complex object patches, ``C = gridsize**2``.
    offsets : array_like, shape (B, C, 2)
        Offsets ``(x, y)`` of each patch relative to its group centre.
    gridsize : int
        Group side; the canvas side is ``S = N + (gridsize - 1) * 4 + 10`` (plus ``window - N // 2``,
        :func:`canvas_side`).
    window : int, optional
        Side of the central window in pixels (``ModelConfig.window_side``; default ``N // 2``).

    Returns
    -------
    canvas : numpy.ndarray, shape (B, S, S), complex64
    object : numpy.ndarray, shape (B, N, N), complex64
        Centre N x N crop of the canvas (rows/cols ``[(S-N)//2, (S-N)//2 + N)``).
    """
    p = _check_patches(patches, gridsize)
    off = _check_offsets(offsets, p.shape[0], p.shape[3])
    canvas = _merge64(p.astype(np.complex128), off, gridsize, window)
    N, S = p.shape[1], canvas.shape[-1]
    lo = (S - N) // 2
    return canvas.astype(np.complex64), canvas[:, lo:lo + N, lo:lo + N].astype(np.complex64)


def _extract64(canvas: np.ndarray, off: np.ndarray, N: int) -> np.ndarray:
    B, S, _ = canvas.shape
    C = off.shape[1]
    stack = np.broadcast_to(canvas[:, None], (B, C, S, S)).reshape(B * C, S, S)
    shifted = _translate64(stack, -off[..., 0].reshape(-1), -off[..., 1].reshape(-1))
    lo = (S - N) // 2
    return np.moveaxis(shifted[:, lo:lo + N, lo:lo + N].reshape(B, C, N, N), 1, -1)


def extract_from_canvas(canvas, offsets, N: int) -> np.ndarray:
    """Extract each channel's patch from its group's canvas: ``crop_N(T(canvas, -dx_c, -dy_c))``.

    Parameters
    ----------
    canvas : array_like, shape (B, S, S)
        Merged canvases (:func:`merge_patches`).
    offsets : array_like, shape (B, C, 2)
        Offsets ``(x, y)`` of each patch.
    N : int
        Patch side (``N <= S``); the crop is rows/cols ``[(S-N)//2, (S-N)//2 + N)``.

    Returns
    -------
    numpy.ndarray, shape (B, N, N, C), complex64
    """
    cv = _check_image(canvas, "canvas", min_ndim=3, max_ndim=3)
    S = _check_square(cv, "canvas")
    N = _check_size(N, "N")
    if N > S:
        raise DataError(f"N: patch side {N} is larger than the canvas side {S}")
    off = np.asarray(offsets, dtype=np.float64)
    if off.ndim != 3 or off.shape[0] != cv.shape[0] or off.shape[2] != 2:
        raise DataError(f"offsets: expected shape (B, C, 2) with B = {cv.shape[0]} canvases, got {off.shape}")
    _check_finite(off, "offsets")
    return _extract64(cv.astype(np.complex128), off, N).astype(np.complex64)


def physics_forward(patches, offsets, probe_n, *, gridsize: int, object_big: bool, scale: float,
                    window: int | None = None) -> dict:
    """Physics layer forward pass (conventions s3.1-5), group by group.

    Merge and extract only when ``C > 1`` and ``object_big``; otherwise the patches pass
    through unchanged. Then ``psi_c = O'_c * P_n``, ``lambda = scale**2 * |fftshift(fft2(psi)) / N|**2``.

    Parameters
    ----------
    patches : array_like, shape (B, N, N, C)
        Predicted complex object patches ``O``.
    offsets : array_like, shape (B, C, 2)
        Offsets ``(x, y)`` relative to each group's centre.
    probe_n : array_like, shape (N, N)
        Normalised probe (:func:`ptycho_core.reference.normalize_probe`).
    gridsize : int
        ``C = gridsize**2``.
    object_big : bool
        Merge the patches of a group (when C > 1).
    scale : float
        Intensity scale ``s`` (photon units).
    window : int, optional
        Side of the merge's central window in pixels (``ModelConfig.window_side``; default ``N // 2``).

    Returns
    -------
    dict
        ``lam`` (B, N, N, C) float32 predicted intensity; ``amplitude`` = sqrt(lam), float32;
        ``patches`` (B, N, N, C) complex64 the extracted object patches ``O'`` (before
        illumination); ``object`` (B, N, N) complex64 the merged object crop, or channel 0
        of the patches when nothing is merged.
    """
    p = _check_patches(patches, gridsize).astype(np.complex128)
    B, N, _, C = p.shape
    off = _check_offsets(offsets, B, C)
    probe = _check_image(probe_n, "probe_n")
    if probe.shape != (N, N):
        raise DataError(f"probe_n: expected shape ({N}, {N}) to match the patches, got {probe.shape}")
    s = float(scale)
    if not math.isfinite(s):
        raise ConfigError(f"scale: expected a finite number, got {scale!r}")
    if C > 1 and object_big:
        canvas = _merge64(p, off, gridsize, window)
        lo = (canvas.shape[-1] - N) // 2
        obj = canvas[:, lo:lo + N, lo:lo + N]
        o_prime = _extract64(canvas, off, N)
    else:
        obj, o_prime = p[..., 0], p
    psi = o_prime * probe.astype(np.complex128)[:, :, None]
    far = np.fft.fftshift(np.fft.fft2(psi, axes=(1, 2)), axes=(1, 2)) / N
    lam = s * s * (far.real**2 + far.imag**2)
    return {
        "lam": lam.astype(np.float32),
        "amplitude": np.sqrt(lam).astype(np.float32),
        "patches": o_prime.astype(np.complex64),
        "object": obj.astype(np.complex64),
    }


def poisson_nll(lam, k_meas) -> np.ndarray:
    """Element-wise Poisson negative log-likelihood ``lam - k * log(lam + 1e-12)`` (float64).

    Parameters
    ----------
    lam : array_like
        Predicted intensity in photon units.
    k_meas : array_like
        Measured intensity (counts) in photon units; broadcast against ``lam``.

    Returns
    -------
    numpy.ndarray, float64
    """
    lam64, k64 = _intensities(lam, k_meas)
    return lam64 - k64 * np.log(lam64 + LOG_EPS)


def _intensities(lam, k_meas) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and measured intensities as float64 arrays that broadcast against each other."""
    lam64 = np.asarray(lam, dtype=np.float64)
    k64 = np.asarray(k_meas, dtype=np.float64)
    try:
        np.broadcast_shapes(lam64.shape, k64.shape)
    except ValueError as exc:
        raise DataError(f"k_meas: shape {k64.shape} does not broadcast against lam {lam64.shape}") from exc
    return lam64, k64


def poisson_deviance(lam, k_meas) -> np.ndarray:
    """Element-wise Poisson deviance: :func:`poisson_nll` minus its floor at ``lam = k`` (float64).

    ``lam - k - k * (log(lam + 1e-12) - log(k + 1e-12))``: >= 0 (up to the epsilon), 0 where
    the prediction equals the measurement, and free of the constant ``k - k log k`` that
    dominates the negative log-likelihood (about -3e6 per pixel at 1e9 photons). Its gradient
    with respect to ``lam`` is that of :func:`poisson_nll`. (This is half the classical unit
    deviance ``2 (lam - k - k log(lam / k))``.)
    """
    lam64, k64 = _intensities(lam, k_meas)
    return lam64 - k64 - k64 * (np.log(lam64 + LOG_EPS) - np.log(k64 + LOG_EPS))


def amplitude_misfit(lam, k_meas) -> float:
    """Relative amplitude misfit ``sum((sqrt(lam) - sqrt(k))^2) / sum(k)`` (0 for a perfect fit).

    The measure :mod:`ptycho.refine` reports per pass, here for predicted intensities
    ``lam`` against measured ones ``k`` (both in photon units).
    """
    lam64, k64 = _intensities(lam, k_meas)
    return float(np.sum((np.sqrt(lam64) - np.sqrt(k64)) ** 2) / max(float(np.sum(k64)), LOG_EPS))


def total_loss(lam, X, s0: float, patches=None, Y=None, nll_weight: float = 1.0, mae_weight: float = 0.0,
               realspace_weight: float = 0.0) -> float:
    """Training loss of conventions s3.6 (means over all elements), in float64.

    ``k_meas = (s0 X)**2``; ``deviance = mean(poisson_deviance(lam, k_meas))`` (the negative
    log-likelihood ``mean(lam - k_meas log(lam + 1e-12))`` minus its floor, same gradient);
    ``mae = mean(|sqrt(lam + 1e-12) - s0 X|)``; ``realspace = mean(|patches - Y|)``;
    ``loss = nll_weight deviance + mae_weight mae + realspace_weight realspace`` (>= 0). A term
    whose weight is 0 is not evaluated.

    Parameters
    ----------
    lam : array_like, shape (B, N, N, C)
        Predicted intensity (photon units).
    X : array_like, same shape as ``lam``
        Normalised measured amplitudes.
    s0 : float
        Fixed physics scale ``sqrt(nphotons) / (N/2)``.
    patches, Y : array_like, optional
        Predicted and ground-truth object patches; needed when ``realspace_weight > 0``.
    nll_weight, mae_weight, realspace_weight : float
        Term weights.

    Returns
    -------
    float
    """
    lam64 = np.asarray(lam, dtype=np.float64)
    x64 = np.asarray(X, dtype=np.float64)
    if lam64.shape != x64.shape:
        raise DataError(f"X: expected the shape of lam {lam64.shape}, got {x64.shape}")
    target = float(s0) * x64
    loss = 0.0
    if nll_weight != 0:
        loss += float(nll_weight) * float(np.mean(poisson_deviance(lam64, target * target)))
    if mae_weight != 0:
        loss += float(mae_weight) * float(np.mean(np.abs(np.sqrt(lam64 + LOG_EPS) - target)))
    if realspace_weight != 0:
        if Y is None or patches is None:
            raise ConfigError(f"realspace_weight: is {realspace_weight!r} but no ground-truth patches Y "
                              "(or predicted patches) were given; pass both or set realspace_weight=0")
        o, y = np.asarray(patches), np.asarray(Y)
        if o.shape != y.shape:
            raise DataError(f"Y: expected the shape of patches {o.shape}, got {y.shape}")
        loss += float(realspace_weight) * float(np.mean(np.abs(o.astype(np.complex128) - y.astype(np.complex128))))
    return loss
