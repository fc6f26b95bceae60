"""NumPy reference physics of ptycho: the oracle both backends are tested against.

Implements the non-learned parts of physics.md exactly as docs/conventions.md fixes them:

- sampling and geometry (s1): :func:`sample_bilinear`, :func:`translate`, :func:`extract_patches`;
- forward model and normalisation (s2): :func:`diffract`, :func:`intensity`,
  :func:`normalisation_factor`, :func:`physics_scale`, :func:`probe_disk_mask`,
  :func:`gaussian_smooth`, :func:`normalize_probe`;
- the physics layer inside training (s3): :func:`merge_patches`, :func:`extract_from_canvas`,
  :func:`physics_forward`, :func:`poisson_nll`, :func:`poisson_deviance`,
  :func:`amplitude_misfit`, :func:`total_loss`, :func:`merge_window`,
  :func:`window_bounds`, :func:`probe_outside_window`;
- stitching (s4): :func:`canvas_geometry`, :func:`apply_flips`, :func:`crop_center`,
  :func:`reassemble`, :func:`reassemble_loop`, :func:`probe_stitch_weight`,
  :func:`reassemble_weighted`, :func:`splat_sum` (the adjoint of
  :func:`extract_patches`, used by :mod:`ptycho.refine`).

Only NumPy is used. Computation runs in float64 / complex128; arrays are returned as
float32 / complex64. The code lives in ``reference_sampling``, ``reference_physics``,
``reference_layer`` and ``reference_stitch``; import it from here.

:class:`ReferencePlugin` offers :func:`reassemble` as the ``trylast`` fallback of the
``ptycho_reassemble_patches`` hook; the registry registers one instance of it.
"""

from __future__ import annotations

from ptycho_core.hookspecs import hookimpl
from ptycho_core.reference_layer import (
    LOG_EPS,
    MERGE_EPS,
    amplitude_misfit,
    extract_from_canvas,
    merge_canvas_side,
    merge_patches,
    merge_window,
    physics_forward,
    poisson_deviance,
    poisson_nll,
    probe_outside_window,
    total_loss,
    window_bounds,
)
from ptycho_core.reference_physics import (
    diffract,
    gaussian_smooth,
    intensity,
    mean_photons,
    normalisation_factor,
    normalize_probe,
    physics_scale,
    probe_disk_mask,
)
from ptycho_core.reference_sampling import extract_patches, sample_bilinear, translate
from ptycho_core.reference_stitch import (
    COVERAGE_EPS,
    STITCH_WEIGHT_FLOOR,
    apply_flips,
    canvas_geometry,
    crop_center,
    probe_stitch_weight,
    reassemble,
    reassemble_loop,
    reassemble_weighted,
    splat_sum,
)

__all__ = [
    "COVERAGE_EPS",
    "LOG_EPS",
    "MERGE_EPS",
    "ReferencePlugin",
    "STITCH_WEIGHT_FLOOR",
    "amplitude_misfit",
    "apply_flips",
    "canvas_geometry",
    "crop_center",
    "diffract",
    "extract_from_canvas",
    "extract_patches",
    "gaussian_smooth",
    "intensity",
    "merge_canvas_side",
    "mean_photons",
    "merge_patches",
    "merge_window",
    "normalisation_factor",
    "normalize_probe",
    "physics_forward",
    "physics_scale",
    "poisson_deviance",
    "poisson_nll",
    "probe_disk_mask",
    "probe_outside_window",
    "probe_stitch_weight",
    "reassemble",
    "reassemble_loop",
    "reassemble_weighted",
    "sample_bilinear",
    "splat_sum",
    "total_loss",
    "translate",
    "window_bounds",
]


class ReferencePlugin:
    """Built-in plugin: NumPy reassembly used when a backend has none (trylast)."""

    @hookimpl(trylast=True)
    def ptycho_reassemble_patches(self, patches, positions, crop_size, canvas_shape, origin):
        """Stitch with :func:`reassemble` (see the hook specification)."""
        return reassemble(patches, positions, crop_size, canvas_shape, origin)
