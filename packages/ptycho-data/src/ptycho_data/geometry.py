"""Scan geometry of a dataset: position units, plausibility of the scan, and the quality summary of ``ptycho import``.

Positions of DATA-001 are object pixels. A file may say they are metres (NPZ key
``position_unit = "m"``, an HDF5 ``units`` attribute, a Ptychodus product); they are then divided by the
object pixel size (NPZ key ``pixel_size_m``, ``--pixel-size``). Whatever the unit, a scan whose
extent cannot be object pixels (all positions within one pixel, or a canvas larger than any object)
is a :class:`~ptycho_core.errors.DataError` that says what was found and how to fix it: never a
silently stacked image.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.ndimage import median_filter
from scipy.spatial import cKDTree

from ptycho_core import reference
from ptycho_core.errors import DataError

logger = logging.getLogger("ptycho_data.geometry")

POSITION_UNITS = ("px", "m")
MIN_EXTENT_PX = 1.0
"""A scan of several positions spanning less than this (object pixels) is refused: they look like metres."""
MAX_EXTENT_PX = 65536.0
"""A scan spanning more than this (object pixels, a canvas of > 4 G pixels) is refused: wrong units or origin."""
LOW_OVERLAP = 0.5
"""Warn below this linear overlap of neighbouring support disks (``1 - step / (N/2)``)."""
PROBE_SUPPORT_MIN = 0.9
"""Warn when less than this fraction of the probe's energy lies inside the model's support disk (radius N/4)."""
HOT_PIXEL_FACTOR = 20.0
"""A detector pixel is hot when its mean intensity exceeds this times the median of its 3 x 3 neighbourhood."""
DETECTOR_LIMITS = tuple(2**k - 1 for k in (8, 10, 12, 14, 16, 20, 24, 32))
"""Counts at which integer detectors saturate."""

FIX_HINT = ("if they are metres, add the keys position_unit='m' and pixel_size_m (metres per object pixel) to the "
            "file, or pass --position-unit m --pixel-size METRES")


def resolve_units(file_unit: str | None, file_pixel_m: float | None, unit: str | None, pixel_size_m: float | None,
                  where: str) -> tuple[str | None, float | None]:
    """The position unit and pixel size to use: the options' values win, but must not contradict the file's.

    Returns ``(unit, pixel_size_m)``; ``unit`` None means the file does not say (pixels are assumed).
    """
    for label, value in (("position unit", file_unit), ("option position_unit", unit)):
        if value is not None and value not in POSITION_UNITS:
            raise DataError(f"{where}: {label}: expected one of {POSITION_UNITS}, got {value!r}")
    if unit is not None and file_unit is not None and unit != file_unit:
        raise DataError(f"{where}: the file says the positions are in {file_unit!r}, --position-unit says {unit!r}; "
                        "drop the flag (the file's unit is used) or fix the file")
    if pixel_size_m is not None and file_pixel_m is not None and not np.isclose(pixel_size_m, file_pixel_m,
                                                                                rtol=1e-6, atol=0.0):
        raise DataError(f"{where}: the file's pixel size is {file_pixel_m:g} m, --pixel-size says {pixel_size_m:g} m; "
                        "drop the flag (the file's value is used) or fix the file")
    chosen_unit = unit if unit is not None else file_unit
    chosen_pixel = pixel_size_m if pixel_size_m is not None else file_pixel_m
    if chosen_pixel is not None and not (np.isfinite(chosen_pixel) and chosen_pixel > 0):
        raise DataError(f"{where}: pixel size: expected a positive number of metres, got {chosen_pixel!r}")
    return chosen_unit, chosen_pixel


def to_pixels(xcoords: np.ndarray, ycoords: np.ndarray, unit: str | None, pixel_size_m: float | None,
              where: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions in object pixels: metres are divided by ``pixel_size_m``; pixels (or no unit) pass unchanged.

    Raises
    ------
    ptycho_core.errors.DataError
        Metres without a pixel size, saying where to give one.
    """
    if unit != "m":
        return xcoords, ycoords  # unchanged: the dataset contract checks dtypes and shapes
    for label, values in (("x", xcoords), ("y", ycoords)):
        if np.asarray(values).dtype.kind not in "fiu":
            raise DataError(f"{where}: {label} positions: expected numbers, got dtype {np.asarray(values).dtype}")
    x = np.asarray(xcoords, dtype=np.float64)
    y = np.asarray(ycoords, dtype=np.float64)
    if pixel_size_m is None:
        raise DataError(
            f"{where}: the scan positions are in metres (x {_span(x)}), but no pixel size is known to convert them "
            "to object pixels: add the key pixel_size_m (metres per object pixel) to the file or pass --pixel-size "
            "METRES")
    logger.info("%s: positions converted from metres to object pixels with a pixel size of %g m", where, pixel_size_m)
    return x / pixel_size_m, y / pixel_size_m


def check_scan_extent(xcoords: np.ndarray, ycoords: np.ndarray, N: int, where: str, *,
                      assumed: bool) -> None:
    """Refuse a scan whose extent cannot be object pixels for a probe of N x N pixels.

    ``assumed`` says the file gave no unit (pixels were assumed); the message then suggests metres.

    Raises
    ------
    ptycho_core.errors.DataError
        Several positions all within :data:`MIN_EXTENT_PX`, or an extent above :data:`MAX_EXTENT_PX`.
    """
    x = np.asarray(xcoords, dtype=np.float64)
    y = np.asarray(ycoords, dtype=np.float64)
    if x.size < 2:
        return
    extent = max(float(np.ptp(x)), float(np.ptp(y)))
    unit = "no unit given, pixels assumed" if assumed else "in object pixels"
    if extent < MIN_EXTENT_PX:
        raise DataError(
            f"{where}: the {x.size} scan positions ({unit}) all lie within {extent:.3g} pixels (x {_span(x)}, "
            f"y {_span(y)}), so every {N} x {N} pattern would land on the same spot; {FIX_HINT}")
    if extent > MAX_EXTENT_PX:
        raise DataError(
            f"{where}: the scan positions ({unit}) span {extent:.3g} pixels (x {_span(x)}, y {_span(y)}), far "
            f"beyond any object a {N} x {N} probe can scan; the unit or the pixel size is wrong: {FIX_HINT} "
            "(with the right pixel size)")


def _span(values: np.ndarray) -> str:
    return f"{float(np.min(values)):.4g}..{float(np.max(values)):.4g}"


def nearest_step(positions: np.ndarray) -> float | None:
    """Median distance from each scan position to its nearest other position (object pixels); None below 2."""
    pts = np.asarray(positions, dtype=np.float64)
    if pts.shape[0] < 2:
        return None
    dist, _ = cKDTree(pts).query(pts, k=2)
    return float(np.median(dist[:, 1]))


def overlap_ratio(positions: np.ndarray, N: int) -> float | None:
    """Linear overlap ``1 - step / (N/2)`` of the model's support disks (diameter N/2) of nearest neighbours.

    1 = every position on the same spot, 0 = neighbouring disks just touch, negative = gaps.
    """
    step = nearest_step(positions)
    return None if step is None else 1.0 - step / (N / 2)


def probe_support_fraction(probe: np.ndarray) -> float:
    """Fraction of ``|probe|^2`` inside the model's support disk of radius N/4.

    The disk is :func:`ptycho_core.reference.probe_disk_mask`, the mask of the probe normalisation.
    """
    power = np.abs(np.asarray(probe, dtype=np.complex128)) ** 2
    total = float(power.sum())
    if total <= 0:
        raise DataError("probeGuess: the probe is zero everywhere")
    return float((power * reference.probe_disk_mask(power.shape[0])).sum() / total)


def _batches(dataset: Any, batch_size: int = 256) -> Any:
    if hasattr(dataset, "iter_batches"):
        return dataset.iter_batches(None, batch_size)
    return (dataset.diffraction[i:i + batch_size] for i in range(0, dataset.n, batch_size))


def hot_pixels(mean_intensity: np.ndarray) -> np.ndarray:
    """(row, col) of detector pixels whose mean intensity is > :data:`HOT_PIXEL_FACTOR` x their 3 x 3 median."""
    local = median_filter(mean_intensity, size=3, mode="nearest")
    floor = max(float(np.mean(mean_intensity)) * 1e-3, 1e-12)
    hot = mean_intensity > HOT_PIXEL_FACTOR * np.maximum(local, floor)
    return np.argwhere(hot)


def summarize(dataset: Any) -> dict[str, Any]:
    """The figures ``ptycho import`` prints, and the warnings for what will hurt the reconstruction.

    Keys: ``patterns``, ``N``, ``photons_per_pattern``, ``extent_px`` (x, y), ``extent_m`` (x, y) or None,
    ``pixel_size_m``, ``probe_in_support``, ``overlap``, ``step_px``, ``warnings`` (list of str, with the
    reader's own warnings in ``dataset.metadata['warnings']`` first).
    """
    N = int(dataset.N)
    meta = getattr(dataset, "metadata", None) or {}
    warnings: list[str] = list(meta.get("warnings", []))
    total = 0.0
    mean_intensity = np.zeros((N, N), dtype=np.float64)
    peak = 0.0
    at_peak = 0
    for batch in _batches(dataset):
        intensity = np.square(batch, dtype=np.float64)
        total += float(intensity.sum())
        mean_intensity += intensity.sum(axis=0)
        batch_max = float(intensity.max())
        if batch_max > peak * (1 + 1e-9):
            peak, at_peak = batch_max, int(np.count_nonzero(np.isclose(intensity, batch_max, rtol=1e-6)))
        elif np.isclose(batch_max, peak, rtol=1e-6):
            at_peak += int(np.count_nonzero(np.isclose(intensity, peak, rtol=1e-6)))
    n = int(dataset.n)
    mean_intensity /= n
    photons = total / n
    pixel_m = meta.get("pixel_size_m")
    extent_px = (float(np.ptp(dataset.xcoords)), float(np.ptp(dataset.ycoords)))
    support = probe_support_fraction(dataset.probe)
    overlap = overlap_ratio(dataset.positions, N)
    step = nearest_step(dataset.positions)
    if support < PROBE_SUPPORT_MIN:
        warnings.append(f"only {100 * support:.0f}% of the probe's energy lies inside the model's support disk "
                        f"(radius N/4 = {N // 4} px); the network predicts the object there, so light outside it "
                        "is not modelled well: use a larger N or a tighter (less defocused) probe")
    if overlap is not None and overlap < LOW_OVERLAP:
        warnings.append(f"low overlap {overlap:.2f} (median step {step:.3g} px for a support disk of diameter "
                        f"{N // 2} px; below {LOW_OVERLAP} neighbouring patterns constrain each other little)")
    hot = hot_pixels(mean_intensity)
    if len(hot):
        listed = ", ".join(f"({r}, {c})" for r, c in hot[:5].tolist())
        warnings.append(f"{len(hot)} hot detector pixel(s) (mean intensity > {HOT_PIXEL_FACTOR:g}x their "
                        f"neighbours), e.g. row, col {listed}: mask or inpaint them before training")
    counts_max = meta.get("max_count")
    if counts_max is not None and int(counts_max) in DETECTOR_LIMITS:
        warnings.append(f"saturated: the raw counts reach {int(counts_max)} = 2^k - 1, the limit of an integer "
                        "detector; saturated pixels make the centre of the patterns too dark")
    elif peak >= 100 and at_peak >= 4:
        warnings.append(f"possibly saturated: {at_peak} pixels share the maximum intensity {peak:.6g}")
    return {
        "patterns": n, "N": N, "photons_per_pattern": photons, "extent_px": extent_px,
        "extent_m": None if pixel_m is None else (extent_px[0] * pixel_m, extent_px[1] * pixel_m),
        "pixel_size_m": pixel_m, "probe_in_support": support, "overlap": overlap, "step_px": step,
        "warnings": warnings,
    }


def format_summary(summary: dict[str, Any]) -> list[str]:
    """The lines of :func:`summarize` as ``ptycho import`` prints them."""
    ex, ey = summary["extent_px"]
    lines = [f"  patterns             {summary['patterns']} of {summary['N']} x {summary['N']}",
             f"  photons per pattern  {summary['photons_per_pattern']:.4g}",
             f"  scan extent          {ex:.4g} x {ey:.4g} px"]
    if summary["extent_m"] is not None:
        mx, my = summary["extent_m"]
        lines.append(f"                       {mx:.4g} x {my:.4g} m (pixel size {summary['pixel_size_m']:.4g} m)")
    else:
        lines.append("                       (in metres: unknown, no pixel size)")
    lines.append(f"  probe in support     {100 * summary['probe_in_support']:.1f}% of its energy within radius "
                 f"N/4 = {summary['N'] // 4} px")
    if summary["overlap"] is not None:
        lines.append(f"  overlap              {summary['overlap']:.2f} (median step {summary['step_px']:.3g} px, "
                     f"support diameter {summary['N'] // 2} px)")
    return lines
