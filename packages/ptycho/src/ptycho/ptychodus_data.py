"""Conversions between Ptychodus's reconstruction types and ptycho's dataset contract.

Used by :mod:`ptycho.ptychodus`; imports Ptychodus (``pip install 'ptycho-core[ptychodus]'``)
but no deep-learning framework.

Conventions (Ptychodus 1.7.0 -> DATA-001, see docs/ptychodus.md):

- Patterns are counts (intensities) with the zero frequency at the centre; ``diffraction`` is
  ``sqrt(counts)``. Bad pixels are filled by Ptychodus's own biharmonic inpainting first.
- Positions are metres in the product frame. Ptychodus maps them to object pixels with the
  world centre at pixel ``(W - 1) / 2`` and takes a patch whose centre is index ``(N - 1) / 2``;
  ptycho's patch centre is index ``N / 2`` (conventions.md s1), so ptycho's position is
  Ptychodus's object-pixel position plus one half. Both then address the same object pixels.
- The probe is the dominant incoherent mode (most power) of the probe without OPR variation;
  ptycho's forward model has a single coherent probe on the object pixel grid.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from ptychodus.api.object import Object
from ptychodus.api.preprocess.diffraction import inpaint_bad_pixels
from ptychodus.api.product import Product
from ptychodus.api.reconstruct import ReconstructInput

from ptycho_core.contracts import ALLOWED_N, Dataset
from ptycho_core.errors import DataError
from ptycho_core.reference_physics import mean_photons as reference_mean_photons

log = logging.getLogger("ptycho.ptychodus")

__all__ = ["PIXEL_OFFSET", "mean_photons", "output_product", "to_dataset"]

PIXEL_OFFSET = 0.5
"""ptycho object-pixel position minus Ptychodus object-pixel position (patch-centre conventions)."""

_REL_TOL = 1e-6


def _amplitudes(parameters: ReconstructInput) -> np.ndarray:
    patterns = np.asarray(parameters.diffraction_patterns)
    if patterns.ndim != 3 or patterns.shape[0] == 0:
        raise DataError(f"ReconstructInput.diffraction_patterns: expected a non-empty (n, N, N) stack, "
                        f"got shape {patterns.shape}")
    n, h, w = patterns.shape
    if h != w or h not in ALLOWED_N:
        raise DataError(f"ReconstructInput.diffraction_patterns: ptycho needs square N x N patterns with N in "
                        f"{ALLOWED_N}, got {h} x {w}; crop the detector to that size in Ptychodus")
    if patterns.dtype.kind not in "iuf":
        raise DataError(f"ReconstructInput.diffraction_patterns: expected integer or real counts, "
                        f"got dtype {patterns.dtype}")
    bad = parameters.bad_pixels
    if bad is not None:
        bad = np.asarray(bad, dtype=bool)
        if bad.shape != (h, w):
            raise DataError(f"ReconstructInput.bad_pixels: expected shape {(h, w)} like the patterns, "
                            f"got {bad.shape}")
        if bad.all():
            raise DataError("ReconstructInput.bad_pixels: every detector pixel is marked bad")
        if bad.any():
            log.info("inpainting %d bad detector pixel(s) before reconstruction", int(bad.sum()))
            patterns = inpaint_bad_pixels(patterns, bad)
    counts = np.asarray(patterns, dtype=np.float64)
    if not np.all(np.isfinite(counts)):
        raise DataError("ReconstructInput.diffraction_patterns: contains NaN or infinite counts")
    negative = int(np.count_nonzero(counts < 0))
    if negative:
        log.warning("clipping %d negative count(s) to 0 (background-subtracted data?)", negative)
        counts = np.maximum(counts, 0.0)
    if not np.any(counts > 0):
        raise DataError("ReconstructInput.diffraction_patterns: all counts are zero")
    return np.sqrt(counts).astype(np.float32)


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= _REL_TOL * max(abs(a), abs(b))


def _probe(product: Product, n_side: int) -> np.ndarray:
    probes = product.probes
    if probes.height_px != n_side or probes.width_px != n_side:
        raise DataError(f"Product.probes: expected {n_side} x {n_side} pixels like the patterns, "
                        f"got {probes.height_px} x {probes.width_px}")
    modes = np.asarray(probes.get_probe_no_opr().get_array())  # (incoherent modes, N, N)
    power = np.sum(np.abs(modes) ** 2, axis=(-2, -1))
    if not np.all(np.isfinite(power)) or power.max() <= 0:
        raise DataError("Product.probes: the probe is zero or not finite")
    best = int(np.argmax(power))
    if modes.shape[0] > 1:
        log.info("ptycho uses one probe mode: mode %d of %d (%.1f%% of the power)",
                 best, modes.shape[0], 100.0 * power[best] / power.sum())
    return modes[best].astype(np.complex64)


def _object(product: Product) -> tuple[np.ndarray, object]:
    obj = product.object_
    try:
        geometry = obj.get_geometry()
    except ValueError as exc:
        raise DataError(f"Product.object_: {exc} (ptycho needs the object's pixel size and centre)") from None
    if obj.num_layers != 1:
        raise DataError(f"Product.object_: ptycho reconstructs a thin (single-layer) object, got {obj.num_layers} "
                        "layers; reduce the object to one layer in Ptychodus first")
    if obj.width_px == 0 or obj.height_px == 0:
        raise DataError("Product.object_: the object array is empty; build an object guess in Ptychodus first")
    probe_pixels = product.probes.get_pixel_geometry()
    if not (_same(probe_pixels.width_m, geometry.pixel_width_m)
            and _same(probe_pixels.height_m, geometry.pixel_height_m)):
        raise DataError(
            f"Product.object_: object pixels ({geometry.pixel_width_m:g} x {geometry.pixel_height_m:g} m) must "
            f"equal the probe pixels ({probe_pixels.width_m:g} x {probe_pixels.height_m:g} m); ptycho works on one "
            "pixel grid"
        )
    return np.asarray(obj.get_layer(0)), geometry


def to_dataset(parameters: ReconstructInput) -> Dataset:
    """Convert a Ptychodus :class:`~ptychodus.api.reconstruct.ReconstructInput` to a ptycho Dataset.

    Parameters
    ----------
    parameters : ptychodus.api.reconstruct.ReconstructInput
        Patterns (counts), bad-pixel mask and the initial product (positions in metres, probe,
        object guess whose pixel grid and centre define the object pixel frame).

    Returns
    -------
    ptycho_core.contracts.Dataset
        Amplitudes, positions in object pixels, the probe, the object guess as ``object`` (so
        stitching uses the input object's canvas) and ``metadata['ptychodus_indexes']``.

    Raises
    ------
    ptycho_core.errors.DataError
        Naming the field of the input that does not fit.
    """
    amplitudes = _amplitudes(parameters)
    product = parameters.product
    positions = product.probe_positions
    if len(positions) != amplitudes.shape[0]:
        raise DataError(f"Product.probe_positions: expected {amplitudes.shape[0]} positions (one per pattern), "
                        f"got {len(positions)}")
    guess, geometry = _object(product)
    xcoords = geometry.map_probe_positions_to_object_x_px(positions) + PIXEL_OFFSET
    ycoords = geometry.map_probe_positions_to_object_y_px(positions) + PIXEL_OFFSET
    try:
        return Dataset(
            diffraction=amplitudes, xcoords=xcoords, ycoords=ycoords,
            probe=_probe(product, amplitudes.shape[1]), object=guess,
            metadata={"source": f"ptychodus product {product.metadata.name!r}",
                      "ptychodus_indexes": np.asarray(positions.get_indexes()).copy()},
        )
    except DataError as exc:
        raise DataError(f"Product {product.metadata.name!r}: {exc}") from exc


def mean_photons(dataset: Dataset) -> float:
    """Mean photons per pattern, ``mean_j sum(A_j**2)`` of the (unscaled sqrt-count) amplitudes.

    :func:`ptycho_core.reference.mean_photons` on the dataset's patterns (the one implementation,
    also used by the workflow and ``ptycho import``).
    """
    return reference_mean_photons(dataset.diffraction)


def output_product(parameters: ReconstructInput, obj: np.ndarray, comment: str) -> Product:
    """The input product with its object replaced by ``obj`` on the same pixel grid and centre.

    Metadata (with ``comment`` appended to the comments), positions, probe and losses are
    passed through unchanged.
    """
    product = parameters.product
    guess = product.object_
    if obj.shape != (guess.height_px, guess.width_px):
        raise DataError(f"reconstructed object: expected shape {(guess.height_px, guess.width_px)} like the "
                        f"input object, got {obj.shape}")
    array = np.asarray(obj, dtype=guess.dtype)[np.newaxis, :, :]
    new_object = Object(array=array, pixel_geometry=guess.get_pixel_geometry().copy(),
                        center=guess.get_center().copy(), layer_spacing_m=[])
    meta = product.metadata
    comments = f"{meta.comments}\n{comment}" if meta.comments else comment
    metadata = dataclasses.replace(meta, comments=comments)
    return Product(metadata=metadata, probe_positions=product.probe_positions, probes=product.probes,
                   object_=new_object, losses=product.losses)
