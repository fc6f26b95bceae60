"""NumPy reference: diffraction, normalisation and the probe (docs/conventions.md s2).

All functions compute in float64 / complex128 and return float32 / complex64 arrays
(scalars as Python floats). Import them from :mod:`ptycho_core.reference`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ptycho_core.errors import ConfigError, DataError
from ptycho_core.reference_sampling import _check_finite, _check_image, _check_size, _promote, _result_dtype

_CHUNK = 1024  # patterns per float64 pass in normalisation_factor


def _check_square(a: np.ndarray, name: str) -> int:
    """Return N for an array whose last two axes are N x N, else raise DataError."""
    if a.shape[-1] != a.shape[-2]:
        raise DataError(f"{name}: expected square N x N arrays in the last two axes, got shape {a.shape}")
    return a.shape[-1]


def _far_field(psi) -> np.ndarray:
    """``fftshift(fft2(psi)) / N`` over the last two axes, complex128."""
    a = _check_image(psi, "psi", min_ndim=2, max_ndim=None)
    N = _check_square(a, "psi")
    f = np.fft.fft2(a.astype(np.complex128), axes=(-2, -1))
    return np.fft.fftshift(f, axes=(-2, -1)) / N


def diffract(psi) -> np.ndarray:
    """Far-field amplitude ``|fftshift(fft2(psi)) / N|`` (zero frequency at index N//2).

    Parseval holds: ``sum(diffract(psi)**2) == sum(|psi|**2)`` per pattern.

    Parameters
    ----------
    psi : array_like, shape (..., N, N)
        Exit waves (complex or real).

    Returns
    -------
    numpy.ndarray, shape (..., N, N), float32
        Amplitudes.
    """
    return np.abs(_far_field(psi)).astype(np.float32)


def intensity(psi) -> np.ndarray:
    """Far-field intensity ``|fftshift(fft2(psi)) / N|**2`` (the square of :func:`diffract`).

    Parameters
    ----------
    psi : array_like, shape (..., N, N)
        Exit waves.

    Returns
    -------
    numpy.ndarray, shape (..., N, N), float32
    """
    f = _far_field(psi)
    return (f.real**2 + f.imag**2).astype(np.float32)


def normalisation_factor(amplitudes) -> float:
    """Dataset normalisation ``k`` so that ``mean_j sum(k * A_j)**2 == (N/2)**2`` (physics.md s3).

    Parameters
    ----------
    amplitudes : array_like, shape (n, N, N)
        Measured (or simulated) diffraction amplitudes.

    Returns
    -------
    float
        ``sqrt((N/2)**2 / mean_j sum(A_j**2))``, computed in float64.
    """
    a = _check_image(amplitudes, "amplitudes", min_ndim=3, max_ndim=3)
    N = _check_square(a, "amplitudes")
    if a.shape[0] == 0:
        raise DataError("amplitudes: no patterns (shape[0] == 0); need at least one")
    total = 0.0
    for start in range(0, a.shape[0], _CHUNK):  # float64 a chunk at a time (datasets can be large)
        chunk = a[start:start + _CHUNK].astype(np.float64)
        _check_finite(chunk, "amplitudes")
        total += float(np.sum(chunk * chunk))
    power = total / a.shape[0]
    if power <= 0.0:
        raise DataError("amplitudes: all patterns are zero; cannot normalise")
    return math.sqrt((N / 2) ** 2 / power)


def mean_photons(amplitudes: Any) -> float:
    """Mean photons per pattern of measured amplitudes: ``mean_j sum(A_j**2)`` in float64 (physics.md s3).

    The physics scale's ``nphotons`` when it is measured from the data (the default). Amplitudes
    are ``sqrt(counts)``, so this is the mean total count of a pattern.

    Parameters
    ----------
    amplitudes : array (n, N, N), or an object with ``iter_batches()`` and ``n``
        The patterns: an array, a :class:`~ptycho_core.contracts.Dataset`'s ``diffraction``, or a
        lazy dataset read batch by batch (``ptycho_data.lazy.LazyDataset``).

    Returns
    -------
    float
    """
    if hasattr(amplitudes, "iter_batches") and hasattr(amplitudes, "n"):
        total = sum(float(np.sum(np.square(b, dtype=np.float64))) for b in amplitudes.iter_batches())
        count = int(amplitudes.n)
    else:
        a = _check_image(amplitudes, "amplitudes", min_ndim=3, max_ndim=3)
        total, count = 0.0, a.shape[0]
        for start in range(0, count, _CHUNK):
            chunk = a[start:start + _CHUNK].astype(np.float64)
            _check_finite(chunk, "amplitudes")
            total += float(np.sum(chunk * chunk))
    if count == 0:
        raise DataError("amplitudes: no patterns (shape[0] == 0); need at least one")
    return total / count


def physics_scale(nphotons: float, N: int) -> float:
    """Physics scale ``s0 = sqrt(nphotons) / (N/2)`` (photon units of the Poisson model).

    Parameters
    ----------
    nphotons : float
        Mean photons per diffraction pattern (> 0).
    N : int
        Pattern side.

    Returns
    -------
    float
    """
    n = float(nphotons)
    if not math.isfinite(n) or n <= 0.0:
        raise ConfigError(f"nphotons: expected a finite number > 0, got {nphotons!r}")
    N = _check_size(N, "N")
    return math.sqrt(n) / (N / 2)


def probe_disk_mask(N: int) -> np.ndarray:
    """Disk ``D``: 1 where ``(r - N/2)**2 + (c - N/2)**2 <= (N/4)**2``, else 0.

    Parameters
    ----------
    N : int
        Side of the square mask.

    Returns
    -------
    numpy.ndarray, shape (N, N), float32
    """
    N = _check_size(N, "N")
    r = np.arange(N, dtype=np.float64)[:, None]
    c = np.arange(N, dtype=np.float64)[None, :]
    return ((r - N / 2) ** 2 + (c - N / 2) ** 2 <= (N / 4) ** 2).astype(np.float32)


def _check_sigma(sigma) -> float:
    s = float(sigma)
    if not math.isfinite(s) or s < 0.0:
        raise ConfigError(f"gaussian_smoothing_sigma: expected a finite number >= 0 (pixels), got {sigma!r}")
    return s


def _smooth64(a: np.ndarray, sigma: float) -> np.ndarray:
    """FFT Gaussian filter (periodic) of the float64/complex128 array ``a`` over its last two axes."""
    if sigma == 0.0:
        return a
    H, W = a.shape[-2:]
    f2 = np.fft.fftfreq(H)[:, None] ** 2 + np.fft.fftfreq(W)[None, :] ** 2
    transfer = np.exp(-2.0 * np.pi**2 * sigma**2 * f2)
    out = np.fft.ifft2(np.fft.fft2(a, axes=(-2, -1)) * transfer, axes=(-2, -1))
    return out if np.iscomplexobj(a) else out.real


def gaussian_smooth(probe, sigma: float) -> np.ndarray:
    """Gaussian smoothing with an FFT Gaussian filter (periodic boundaries).

    Multiplies the spectrum by ``exp(-2 pi^2 sigma^2 |f|^2)`` (``f`` in cycles per pixel),
    the transfer function of a Gaussian kernel of standard deviation ``sigma`` pixels. The
    mean is preserved. ``sigma=0`` returns the input unchanged (as complex64/float32).

    Parameters
    ----------
    probe : array_like, shape (..., H, W)
        Real or complex array(s); complex arrays are filtered as one (real and imaginary
        parts alike).
    sigma : float
        Standard deviation in pixels (>= 0).

    Returns
    -------
    numpy.ndarray
        Same shape; complex64 for complex input, float32 otherwise.
    """
    a = _check_image(probe, "probe", min_ndim=2, max_ndim=None)
    return _smooth64(_promote(a), _check_sigma(sigma)).astype(_result_dtype(a))


def normalize_probe(probe, probe_scale: float = 4.0, probe_mask: bool = False, sigma: float = 0.0) -> np.ndarray:
    """Normalise a probe so that ``mean(|D * P_n|) = 1 / probe_scale`` (conventions s2).

    Steps: optional Gaussian smoothing (:func:`gaussian_smooth`, ``sigma`` pixels);
    ``P_n = P / (probe_scale * mean(|D * P|))`` with ``D`` = :func:`probe_disk_mask` and the
    mean over all N^2 pixels; with ``probe_mask``, ``P_n = D * P_n``.

    Parameters
    ----------
    probe : array_like, shape (N, N)
        Complex probe on the object pixel grid.
    probe_scale : float
        Target ``1 / mean(|D * P_n|)`` (> 0), default 4.0.
    probe_mask : bool
        Zero the probe outside the disk ``D``.
    sigma : float
        Gaussian smoothing in pixels (0 = off).

    Returns
    -------
    numpy.ndarray, shape (N, N), complex64
    """
    a = _check_image(probe, "probe")
    N = _check_square(a, "probe")
    scale = float(probe_scale)
    if not math.isfinite(scale) or scale <= 0.0:
        raise ConfigError(f"probe_scale: expected a finite number > 0, got {probe_scale!r}")
    p = _smooth64(a.astype(np.complex128), _check_sigma(sigma))
    _check_finite(p, "probe")
    disk = probe_disk_mask(N).astype(np.float64)
    mean_abs = float(np.mean(np.abs(disk * p)))
    if mean_abs == 0.0:
        raise DataError(f"probe: zero everywhere inside the central disk of radius N/4 = {N / 4}; cannot normalise")
    p_n = p / (scale * mean_abs)
    if probe_mask:
        p_n = p_n * disk
    return p_n.astype(np.complex64)
