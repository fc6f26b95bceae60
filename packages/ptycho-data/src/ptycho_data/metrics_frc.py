"""Fourier ring correlation (FRC) of two images and its threshold crossings.

Used by :mod:`ptycho_data.metrics`; frequencies are fractions of the Nyquist frequency
(0.5 cycles/pixel), so a crossing ``f`` means a resolution of ``2 / f`` pixels (full period).
"""

from __future__ import annotations

import numpy as np

from ptycho_core.errors import DataError


def frc_curve(a: np.ndarray, b: np.ndarray, *, window: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation of two images of the same shape.

    Both images have their mean removed and (``window=True``) are multiplied by a 2-D Hann
    window against edge effects. Ring ``i`` (``i = 1 .. L//2``, ``L = min(H, W)``) holds the
    frequencies ``f`` (cycles/pixel) with ``round(f * L) == i``;
    ``FRC_i = |sum F_a conj(F_b)| / sqrt(sum |F_a|^2 sum |F_b|^2)``. A ring where both spectra
    vanish counts as 1, where only one does as 0.

    Returns
    -------
    frequencies : ndarray
        Ring frequencies ``2 i / L`` as a fraction of Nyquist (0, 1].
    frc : ndarray
        Correlation per ring, in [0, 1].
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise DataError(f"frc_curve: expected two 2-D images of the same shape, got {a.shape} and {b.shape}")
    h, w = a.shape
    length = min(h, w)
    if length < 4:
        raise DataError(f"frc_curve: images must be at least 4 x 4, got {a.shape}")
    win = np.outer(np.hanning(h), np.hanning(w)) if window else 1.0
    fa = np.fft.fft2((a - a.mean()) * win)
    fb = np.fft.fft2((b - b.mean()) * win)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    ring = np.rint(f * length).astype(np.int64).ravel()
    n_rings = length // 2 + 1
    keep = ring < n_rings
    ring = ring[keep]

    def ring_sum(values: np.ndarray) -> np.ndarray:
        flat = values.ravel()[keep]
        return np.bincount(ring, weights=flat.real, minlength=n_rings) + 1j * np.bincount(
            ring, weights=flat.imag, minlength=n_rings)

    cross = np.abs(ring_sum(fa * np.conj(fb)))
    pa = ring_sum(np.abs(fa) ** 2).real
    pb = ring_sum(np.abs(fb) ** 2).real
    tiny = 1e-30
    frc = np.where((pa > tiny) & (pb > tiny), cross / np.sqrt(np.maximum(pa * pb, tiny)), 0.0)
    frc = np.where((pa <= tiny) & (pb <= tiny), 1.0, frc)
    frc = np.clip(frc, 0.0, 1.0)[1:]
    return 2.0 * np.arange(1, n_rings) / length, frc


def frc_crossing(frequencies: np.ndarray, frc: np.ndarray, threshold: float) -> float:
    """First frequency (fraction of Nyquist) where ``frc`` drops below ``threshold`` (linear
    interpolation between rings); 1.0 when it never does."""
    below = np.flatnonzero(frc < threshold)
    if below.size == 0:
        return 1.0
    i = int(below[0])
    if i == 0:
        return float(frequencies[0])
    f0, f1, v0, v1 = frequencies[i - 1], frequencies[i], frc[i - 1], frc[i]
    return float(f0 + (v0 - threshold) / (v0 - v1) * (f1 - f0))
