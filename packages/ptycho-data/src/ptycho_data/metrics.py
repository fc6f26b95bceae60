"""Reconstruction quality against a ground-truth object (physics.md section 7).

:func:`evaluate_reconstruction` does, in this order:

1. **Crop** both objects to the scanned region: the bounding box of the scan positions
   widened by ``crop_margin`` pixels on each side (clipped to the image; default margin 0,
   because stitching with a central crop of M pixels covers the positions +- M/2). Without
   positions the whole image is used. With ``coverage_radius`` (default 10 = M/2 for the
   default M = 20) pixels of that box farther than this from every scan position count as
   unscanned and the crop becomes the largest rectangle inside the box free of them. For a
   raster this is the whole box; for a Fermat spiral or a random scan it leaves out the
   empty corners, which a stitched reconstruction never fills. ``None`` keeps the box.
2. **Registration** (``register=True``): the sub-pixel shift of the reconstruction is found
   by phase correlation (:func:`skimage.registration.phase_cross_correlation`, upsampling
   ``upsample``) of the mean-removed amplitudes (of the complex objects when the true
   amplitude is flat), the whole reconstruction is shifted by a Fourier shift
   (:func:`scipy.ndimage.fourier_shift`), cropped again, and ``ceil(|shift|)`` border pixels
   are dropped from both crops (they hold wrapped-around content).
3. **Phase plane**: a plane ``a*x + b*y + c`` is fitted by least squares to the phase
   difference ``angle(rec * conj(truth))`` and removed from the reconstruction. A coarse
   ramp is taken first from the peak of the 4x zero-padded FFT of ``rec * conj(truth)``
   (so large ramps do not wrap), the offset as the weighted circular mean, and the
   wrapped residual is fitted. Weights: ``phase_weighting='amplitude'`` (default) uses
   ``|rec| * |truth|`` so that dark, noisy regions count less; ``'uniform'`` uses 1.
4. **Amplitude scale**: the reconstructed amplitude is multiplied by
   ``mean(|truth|) / mean(|rec|)`` over the crop.
5. **Scores**, for amplitude and phase. Amplitudes are divided by the maximum true amplitude
   of the crop, so the truth lies in [0, 1], and use a data range of 1. Phases are in
   radians with a data range of ``2*pi``; the reconstructed phase is taken as the true phase
   plus the wrapped difference, so no 2*pi wraps appear between the two.

   - ``mae``: mean absolute error (phase: of the wrapped difference).
   - ``psnr``: ``10 log10(range^2 / MSE)`` in dB, capped at :data:`PSNR_CAP` (identical images).
   - ``ssim``: :func:`skimage.metrics.structural_similarity` with an explicit ``data_range``.
   - ``frc50``/``frc17``: the spatial frequency, as a fraction of Nyquist, where the Fourier
     ring correlation (:func:`frc_curve`) first drops below 0.5 / (1/7); 1.0 if it never
     does. ``frc50_px``/``frc17_px`` are the matching resolutions ``2 / fraction`` in pixels
     (full period; 2 pixels at Nyquist).

Upstream PtychoPINN reports PSNR with a 255 peak; :func:`upstream_psnr_to_unit` converts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from ptycho_core.errors import ConfigError, DataError
from ptycho_data.metrics_frc import frc_crossing, frc_curve

__all__ = [
    "PSNR_CAP", "UPSTREAM_PSNR_OFFSET", "align_to_truth", "covered_box", "crop_box", "evaluate_reconstruction",
    "evaluated_box", "frc_crossing", "frc_curve", "psnr", "remove_phase_plane", "upstream_psnr_to_unit",
]

PSNR_CAP = 150.0
"""PSNR (dB) reported for identical images (MSE 0); keeps the result valid JSON."""
UPSTREAM_PSNR_OFFSET = 20.0 * math.log10(255.0)
"""48.13 dB: PSNR with a 255 peak minus PSNR with a unit peak, for the same images."""
MIN_SIDE = 7
"""Smallest crop side: the SSIM window is 7 x 7."""


def upstream_psnr_to_unit(psnr_255: float) -> float:
    """Convert a PSNR computed with a 255 peak (upstream PtychoPINN) to unit data range.

    ``PSNR_1 = PSNR_255 - 20 log10(255) = PSNR_255 - 48.13 dB`` for images scaled by 255.
    """
    return float(psnr_255) - UPSTREAM_PSNR_OFFSET


def psnr(reference: np.ndarray, image: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``, capped at :data:`PSNR_CAP`."""
    mse = float(np.mean((np.asarray(image, np.float64) - np.asarray(reference, np.float64)) ** 2))
    if mse <= 0.0:
        return PSNR_CAP
    return float(min(PSNR_CAP, 10.0 * math.log10(data_range**2 / mse)))


def _scores(truth: np.ndarray, image: np.ndarray, data_range: float, abs_err: np.ndarray) -> dict[str, float]:
    from skimage.metrics import structural_similarity

    freqs, frc = frc_curve(truth, image)
    f50, f17 = frc_crossing(freqs, frc, 0.5), frc_crossing(freqs, frc, 1.0 / 7.0)
    return {
        "mae": float(np.mean(abs_err)),
        "psnr": psnr(truth, image, data_range),
        "ssim": float(structural_similarity(truth, image, data_range=data_range)),
        "frc50": f50,
        "frc17": f17,
        "frc50_px": 2.0 / f50,
        "frc17_px": 2.0 / f17,
    }


def crop_box(shape: tuple[int, int], positions: Any = None, margin: int = 0) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` (half-open) of the scanned region: positions' bounding box +- ``margin``."""
    h, w = shape
    if positions is None:
        return 0, h, 0, w
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2 or pos.shape[0] == 0 or not np.all(np.isfinite(pos)):
        raise DataError(f"positions: expected a finite (P, 2) array of (x, y), got shape {pos.shape}")
    x0 = max(0, int(math.floor(pos[:, 0].min())) - margin)
    x1 = min(w, int(math.ceil(pos[:, 0].max())) + margin + 1)
    y0 = max(0, int(math.floor(pos[:, 1].min())) - margin)
    y1 = min(h, int(math.ceil(pos[:, 1].max())) + margin + 1)
    return y0, y1, x0, x1


def _largest_rectangle(ok: np.ndarray) -> tuple[int, int, int, int]:
    """``(r0, r1, c0, c1)`` (half-open) of the largest all-True rectangle of a 2-D boolean array."""
    h, w = ok.shape
    heights = np.zeros(w + 1, dtype=np.int64)  # trailing 0 flushes the stack
    best, best_box = 0, (0, 0, 0, 0)
    for r in range(h):
        heights[:w] = np.where(ok[r], heights[:w] + 1, 0)
        stack: list[int] = []
        for c in range(w + 1):
            while stack and heights[stack[-1]] >= heights[c]:
                top = stack.pop()
                left = stack[-1] + 1 if stack else 0
                area = int(heights[top]) * (c - left)
                if area > best:
                    best, best_box = area, (r + 1 - int(heights[top]), r + 1, left, c)
            stack.append(c)
    return best_box


def covered_box(box: tuple[int, int, int, int], positions: Any, radius: float) -> tuple[int, int, int, int]:
    """Shrink ``box`` (y0, y1, x0, x1) to the largest rectangle whose pixels all lie within
    ``radius`` of a scan position (x, y)."""
    from scipy.spatial import cKDTree

    y0, y1, x0, x1 = box
    rows, cols = np.mgrid[y0:y1, x0:x1]
    dist, _ = cKDTree(np.asarray(positions, dtype=np.float64)).query(np.stack([cols.ravel(), rows.ravel()], 1))
    r0, r1, c0, c1 = _largest_rectangle(dist.reshape(rows.shape) <= radius)
    return y0 + r0, y0 + r1, x0 + c0, x0 + c1


def _register(rec: np.ndarray, truth_crop: np.ndarray, box: tuple[int, int, int, int],
              upsample: int) -> tuple[np.ndarray, np.ndarray]:
    """Shift (dy, dx) that aligns ``rec`` to the truth, and the shifted ``rec``."""
    from skimage.registration import phase_cross_correlation

    y0, y1, x0, x1 = box
    crop = rec[y0:y1, x0:x1]
    ref_amp = np.abs(truth_crop)
    if np.std(ref_amp) > 1e-6 * max(float(np.mean(ref_amp)), 1e-30):
        ref, mov = ref_amp - ref_amp.mean(), np.abs(crop) - np.abs(crop).mean()
    else:
        ref, mov = truth_crop, crop
    shift, _, _ = phase_cross_correlation(ref, mov, upsample_factor=upsample, normalization=None)
    shifted = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(rec), shift))
    return np.asarray(shift, dtype=np.float64), shifted


def remove_phase_plane(rec: np.ndarray, truth: np.ndarray, weighting: str = "amplitude") -> tuple[np.ndarray, dict]:
    """Remove the least-squares phase plane (and offset) of ``angle(rec * conj(truth))`` from ``rec``.

    Returns the corrected complex image and ``{'slope_x', 'slope_y', 'offset'}`` (radians per
    pixel and radians, with x and y measured from the crop centre).
    """
    if weighting not in ("amplitude", "uniform"):
        raise ConfigError(f"phase_weighting: expected 'amplitude' or 'uniform', got {weighting!r}")
    h, w = rec.shape
    z = rec.astype(np.complex128) * np.conj(truth.astype(np.complex128))
    wts = np.abs(z) if weighting == "amplitude" else np.ones(z.shape)
    if not np.any(wts > 0):
        return rec, {"slope_x": 0.0, "slope_y": 0.0, "offset": 0.0}
    unit = np.exp(1j * np.angle(z)) * wts
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy -= (h - 1) / 2.0
    xx -= (w - 1) / 2.0
    spec = np.abs(np.fft.fft2(unit, s=(4 * h, 4 * w)))
    py, px = np.unravel_index(int(np.argmax(spec)), spec.shape)
    a = 2 * np.pi * np.fft.fftfreq(4 * w)[px]
    b = 2 * np.pi * np.fft.fftfreq(4 * h)[py]
    ramp = a * xx + b * yy
    c = float(np.angle(np.sum(unit * np.exp(-1j * ramp))))
    resid = np.angle(z * np.exp(-1j * (ramp + c)))
    sw = np.sqrt(wts).ravel()
    design = np.stack([xx.ravel(), yy.ravel(), np.ones(h * w)], axis=1) * sw[:, None]
    (da, db, dc), *_ = np.linalg.lstsq(design, resid.ravel() * sw, rcond=None)
    a, b, c = a + da, b + db, c + dc
    plane = a * xx + b * yy + c
    corrected = rec * np.exp(-1j * plane)
    offset = float(np.angle(np.exp(1j * c)))
    return corrected.astype(np.complex128), {"slope_x": float(a), "slope_y": float(b), "offset": offset}


def evaluate_reconstruction(
    reconstruction: np.ndarray,
    ground_truth: np.ndarray,
    positions: Any = None,
    *,
    register: bool = False,
    crop_margin: int = 0,
    coverage_radius: float | None = 10.0,
    phase_weighting: str = "amplitude",
    upsample: int = 20,
) -> dict[str, Any]:
    """Compare a reconstructed complex object with the ground truth (see the module docstring).

    Parameters
    ----------
    reconstruction, ground_truth : ndarray, shape (H, W), complex
        Objects on the same pixel grid.
    positions : array_like, shape (P, 2), optional
        Scan positions (x, y) in object pixels; the metrics use their bounding box.
    register : bool
        Find and undo a sub-pixel shift of the reconstruction first.
    crop_margin : int
        Pixels added around the positions' bounding box (negative: removed).
    coverage_radius : float or None
        Keep only the largest rectangle of the box whose pixels lie within this distance of a
        scan position (None: the whole box). Ignored without positions.
    phase_weighting : {'amplitude', 'uniform'}
        Weights of the phase-plane fit.
    upsample : int
        Upsampling factor of the phase correlation (shift precision 1/upsample pixel).

    Returns
    -------
    dict
        JSON-serialisable: ``{'amplitude': {...}, 'phase': {...}, 'shift': [dx, dy] or None,
        'crop': {...}, 'phase_plane': {...}, 'amplitude_scale': float}`` where each score
        dict has ``mae``, ``psnr``, ``ssim``, ``frc50``, ``frc17``, ``frc50_px``, ``frc17_px``.
    """
    rec = np.asarray(reconstruction)
    truth = np.asarray(ground_truth)
    if rec.ndim != 2 or rec.shape != truth.shape:
        raise DataError(f"reconstruction: expected a 2-D array of the ground truth's shape {truth.shape}, "
                        f"got {rec.shape}")
    for name, arr in (("reconstruction", rec), ("ground_truth", truth)):
        if not np.all(np.isfinite(arr)):
            raise DataError(f"{name}: contains NaN or infinite values")
    if isinstance(crop_margin, bool) or not isinstance(crop_margin, (int, np.integer)):
        raise ConfigError(f"crop_margin: expected an integer number of pixels, got {crop_margin!r}")
    box = crop_box(truth.shape, positions, int(crop_margin))
    if positions is not None and coverage_radius is not None:
        if not (isinstance(coverage_radius, (int, float)) and coverage_radius > 0):
            raise ConfigError(f"coverage_radius: expected a positive number of pixels or None, got {coverage_radius!r}")
        box = covered_box(box, positions, float(coverage_radius))
    y0, y1, x0, x1 = box
    if min(y1 - y0, x1 - x0) < MIN_SIDE:
        raise DataError(f"positions/crop_margin: the scanned region {y1 - y0} x {x1 - x0} is smaller than "
                        f"{MIN_SIDE} x {MIN_SIDE} pixels; widen crop_margin or coverage_radius")
    t = truth[y0:y1, x0:x1].astype(np.complex128)
    shift = None
    if register:
        dydx, shifted = _register(rec.astype(np.complex128), t, box, int(upsample))
        trim = int(math.ceil(float(np.max(np.abs(dydx)))))
        r = shifted[y0:y1, x0:x1]
        if trim:
            if min(y1 - y0, x1 - x0) - 2 * trim < MIN_SIDE:
                raise DataError(f"register: shift {dydx.tolist()} leaves less than {MIN_SIDE} pixels to compare")
            r, t = r[trim:-trim, trim:-trim], t[trim:-trim, trim:-trim]
        shift = [float(dydx[1]), float(dydx[0])]
    else:
        r = rec[y0:y1, x0:x1].astype(np.complex128)
    r, plane = remove_phase_plane(r, t, phase_weighting)
    t_amp, r_amp = np.abs(t), np.abs(r)
    scale = float(t_amp.mean() / r_amp.mean()) if r_amp.mean() > 0 else 1.0
    peak = float(t_amp.max()) if t_amp.max() > 0 else 1.0
    t_amp, r_amp = t_amp / peak, r_amp * scale / peak
    t_phase = np.angle(t)
    diff = np.angle(np.exp(1j * (np.angle(r) - t_phase)))
    return {
        "amplitude": _scores(t_amp, r_amp, 1.0, np.abs(r_amp - t_amp)),
        "phase": _scores(t_phase, t_phase + diff, 2.0 * np.pi, np.abs(diff)),
        "shift": shift,
        "crop": {"x0": x0, "x1": x1, "y0": y0, "y1": y1},
        "phase_plane": plane,
        "amplitude_scale": scale,
    }


def evaluated_box(metrics: dict[str, Any]) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` (half-open) of the pixels :func:`evaluate_reconstruction` scored.

    That is ``metrics['crop']`` less the ``ceil(|shift|)`` border pixels dropped after a registration.
    """
    crop = metrics["crop"]
    y0, y1, x0, x1 = int(crop["y0"]), int(crop["y1"]), int(crop["x0"]), int(crop["x1"])
    shift = metrics.get("shift")
    trim = int(math.ceil(max(abs(float(v)) for v in shift))) if shift else 0
    return y0 + trim, y1 - trim, x0 + trim, x1 - trim


def align_to_truth(reconstruction: np.ndarray, metrics: dict[str, Any]) -> np.ndarray:
    """The whole ``reconstruction`` with the alignment :func:`evaluate_reconstruction` found applied.

    The same steps as the metrics, read back from their result (nothing is fitted again): the
    registration shift (``metrics['shift']``, if any), the phase plane and offset
    (``metrics['phase_plane']``, whose x and y are measured from the centre of the evaluated
    region, extended here to every pixel) and the amplitude scale (``metrics['amplitude_scale']``).
    So a picture of the result agrees with the numbers: over :func:`evaluated_box` its amplitude
    and phase are those the scores compared with the truth.

    Parameters
    ----------
    reconstruction : ndarray, shape (H, W), complex
        The image that was evaluated (same grid as the ground truth).
    metrics : dict
        The result of :func:`evaluate_reconstruction` for it.

    Returns
    -------
    ndarray, shape (H, W), complex128
    """
    rec = np.asarray(reconstruction).astype(np.complex128)
    shift = metrics.get("shift")
    if shift:
        dx, dy = float(shift[0]), float(shift[1])
        rec = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(rec), (dy, dx)))
    crop = metrics["crop"]
    plane = metrics["phase_plane"]
    h, w = rec.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xc = (int(crop["x0"]) + int(crop["x1"]) - 1) / 2.0  # the fit's x = 0 and y = 0 (a trim is symmetric)
    yc = (int(crop["y0"]) + int(crop["y1"]) - 1) / 2.0
    phase = plane["slope_x"] * (xx - xc) + plane["slope_y"] * (yy - yc) + plane["offset"]
    return rec * np.exp(-1j * phase) * float(metrics.get("amplitude_scale", 1.0))
