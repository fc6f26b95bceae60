"""Reconstruct one ptycho scan with pty-chi (ePIE or LSQML), for ``benchmarks/quality.py --amortised``.

Runs in pty-chi's own virtualenv (``python benchmarks/ptychi_env.py`` makes it; pty-chi needs
torchvision, which cannot import beside the project's torch pin), as a subprocess: it imports only
NumPy, torch and ptychi, never a ptycho package. ::

    .venv-ptychi/bin/python benchmarks/ptychi_runner.py scan.npz out.npz --method epie --epochs 100

Input: an NPZ with the DATA-001 keys ``diffraction`` (n, N, N) measured amplitudes (zero frequency
at the centre), ``xcoords`` / ``ycoords`` (n,) scan centres in object pixels, ``probeGuess`` (N, N)
and the object shape as ``object_shape`` (2,) or from ``objectGuess`` (what quality.py writes; a
DATA-001 file works too). Output: ``out.npz`` with ``object`` (H, W) complex64 on that object grid,
and one line ``PTYCHI_RESULT {json}`` on stdout: method, epochs, wall times, versions.

Conventions (docs/physics.md s1-s2 against pty-chi 2.2.0's source), each in one helper below:

- Intensities: pty-chi fits intensities, ours are amplitudes, so the data are ``A**2`` (photon
  counts). They are passed with zero frequency at the centre and ``fft_shift=True``
  (``PtychographyDataset`` fft-shifts them to pty-chi's unshifted forward model).
- FFT: pty-chi's far field is ``torch.fft.fft2`` unnormalised (``FourierPropagator(norm=None)``);
  ours is ``fft2 / N`` (orthonormal). The probe is therefore passed as ``probeGuess / N``:
  ``|fft2(P / N * O)|**2 == |fft2(P * O) / N|**2``, so the object keeps our scale.
- Probe: one OPR mode, one incoherent mode, shape (1, 1, N, N), on the object pixel grid as ours;
  held fixed (``optimizable=False``), and neither pty-chi's object/probe ambiguity removal nor
  LSQML's first-epoch probe-intensity rescaling runs (both would rescale the "fixed" probe).
- Positions: no position correction. Ours put patch pixel ``(r, c)`` at object pixel
  ``(y - N//2 + r, x - N//2 + c)``; pty-chi at ``round(p) + o - (N - 1) / 2 + (r, c)`` with ``p``
  the given (row, col) position and ``o`` the "position origin" of the object buffer. With the
  object buffer = our grid padded by ``margin`` pixels, ``p = (y, x)`` unchanged and
  ``o = margin - 0.5`` (``SPECIFIED``) give the same pixels. pty-chi rounds ``p`` to snap patches
  to the grid (sub-pixel residuals go to a probe shift), so the 0.5 must sit in ``o``, not ``p``.
- Object: flat start (ones) on the padded buffer, one slice; the result is cropped back to our
  grid (:func:`to_our_grid`).
- Steps: minibatches of :data:`BATCH_SIZE`, SGD with lr 1; ePIE object step :data:`EPIE_ALPHA`;
  LSQML with pty-chi's defaults (Gaussian noise model, optimal step x 0.9). Seeded, deterministic.

The helpers above :func:`reconstruct` are pure NumPy (importable without torch or ptychi; tested
in ``packages/ptycho/tests/test_ptychi_benchmark.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

METHODS = ("epie", "lsqml")
#: Minibatch size of both methods (pty-chi's default ``ReconstructorOptions.batch_size``).
BATCH_SIZE = 100
#: ePIE object step ``alpha`` (Maiden 2017 table 1; pty-chi's default is 0.1, which at 100 epochs left the
#: camera / coins scan at SSIM 0.57 / 0.70 against 0.98 / 0.99 with 1, the classic ePIE step).
EPIE_ALPHA = 1.0
#: Zero border added around our object grid for pty-chi's object buffer (cropped off afterwards).
MARGIN = 4


def read_input(path: str | Path) -> dict:
    """The fields the runner needs from a quality.py / DATA-001 NPZ: amplitudes, positions (n, 2) as
    (x, y), probe and object shape."""
    with np.load(path, allow_pickle=False) as z:
        amplitudes = np.asarray(z["diffraction"], dtype=np.float32)
        positions = np.stack([z["xcoords"], z["ycoords"]], axis=1).astype(np.float64)
        probe = np.asarray(z["probeGuess"], dtype=np.complex64)
        shape = tuple(int(v) for v in (z["object_shape"] if "object_shape" in z else z["objectGuess"].shape))
    n, N, M = amplitudes.shape
    if N != M or probe.shape != (N, N) or positions.shape != (n, 2) or len(shape) != 2:
        raise ValueError(f"{path}: expected (n, N, N) amplitudes, (N, N) probe, n positions and an (H, W) object "
                         f"shape, got {amplitudes.shape}, {probe.shape}, {positions.shape}, {shape}")
    return {"amplitudes": amplitudes, "positions": positions, "probe": probe, "object_shape": shape}


def intensities(amplitudes: np.ndarray) -> np.ndarray:
    """pty-chi's data: measured intensities ``A**2`` (zero frequency still at the centre)."""
    return np.square(amplitudes, dtype=np.float32)


def ptychi_probe(probe: np.ndarray) -> np.ndarray:
    """Our (N, N) probe as pty-chi's (1 OPR mode, 1 incoherent mode, N, N), divided by N for its
    unnormalised FFT."""
    N = probe.shape[-1]
    return (probe / N).astype(np.complex64)[None, None]


def ptychi_positions(positions_xy: np.ndarray, margin: int = MARGIN) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """pty-chi's ``(position_y_px, position_x_px, position_origin_coords)`` for our ``(x, y)`` positions
    on an object buffer of our grid padded by ``margin``: positions unchanged, origin
    ``margin - 0.5`` (module docstring)."""
    pos = np.asarray(positions_xy, dtype=np.float64)
    return pos[:, 1].copy(), pos[:, 0].copy(), [margin - 0.5, margin - 0.5]


def ptychi_patch_origin(pos_yx: np.ndarray, origin: list[float], N: int) -> np.ndarray:
    """Buffer (row, col) of patch pixel (0, 0) at integer positions, pty-chi's rule
    (``image_proc.extract_patches_integer``): ``round(p) + o - (N - 1) / 2``."""
    return np.round(np.asarray(pos_yx)) + np.asarray(origin) - (N - 1) / 2.0


def buffer_shape(object_shape: tuple[int, int], margin: int = MARGIN) -> tuple[int, int]:
    """pty-chi's object buffer: our grid plus ``margin`` on every side."""
    return object_shape[0] + 2 * margin, object_shape[1] + 2 * margin


def to_our_grid(buffer: np.ndarray, object_shape: tuple[int, int], margin: int = MARGIN) -> np.ndarray:
    """Crop pty-chi's (H + 2 margin, W + 2 margin) object (one slice, or (1, ...)) back to our (H, W) grid."""
    image = np.asarray(buffer)
    image = image[0] if image.ndim == 3 else image
    H, W = object_shape
    if image.shape != buffer_shape(object_shape, margin):
        raise ValueError(f"expected a {buffer_shape(object_shape, margin)} buffer, got {image.shape}")
    return image[margin:margin + H, margin:margin + W].astype(np.complex64)


def reconstruct(scan: dict, method: str, epochs: int, seed: int, threads: int | None = None,
                batch_size: int = BATCH_SIZE, epie_alpha: float = EPIE_ALPHA,
                margin: int = MARGIN) -> tuple[np.ndarray, dict]:
    """Run pty-chi on ``scan`` (from :func:`read_input`); returns the object on our grid and timings."""
    t0 = time.perf_counter()
    import torch

    if threads:
        torch.set_num_threads(threads)
    import ptychi
    import ptychi.api as api
    from ptychi.api.task import PtychographyTask

    import_s = time.perf_counter() - t0
    options = api.EPIEOptions() if method == "epie" else api.LSQMLOptions()
    ro = options.reconstructor_options
    ro.num_epochs = epochs
    ro.batch_size = batch_size
    ro.default_device = api.Devices.CPU
    ro.random_seed = seed
    ro.allow_nondeterministic_algorithms = False  # seeded and reproducible
    if method == "lsqml":
        ro.noise_model = api.NoiseModels.GAUSSIAN  # pty-chi's default and PtychoShelves'
        ro.rescale_probe_intensity_in_first_epoch = False  # the probe is fixed and already in photon units

    oo = options.object_options
    oo.optimizable = True  # SGD, lr 1 (pty-chi's default); LSQML: its optimal step x 0.9 (default)
    if method == "epie":
        oo.alpha = epie_alpha
    oo.remove_object_probe_ambiguity.enabled = False  # it would rescale the fixed probe every 10 epochs
    pos_y, pos_x, origin = ptychi_positions(scan["positions"], margin)
    oo.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    oo.position_origin_coords = origin
    options.probe_options.optimizable = False  # fixed probe, as our refinement (physics.md s8)
    options.probe_position_options.optimizable = False  # no position correction
    options.data_options.fft_shift = True  # our patterns have zero frequency at the centre

    task = PtychographyTask(
        options,
        diffraction_data=intensities(scan["amplitudes"]),
        object_data=np.ones((1, *buffer_shape(scan["object_shape"], margin)), np.complex64),
        probe_data=ptychi_probe(scan["probe"]),
        probe_position_x_px=pos_x,
        probe_position_y_px=pos_y,
    )
    setup_s = time.perf_counter() - t0 - import_s
    t1 = time.perf_counter()
    task.run()
    reconstruct_s = time.perf_counter() - t1
    obj = to_our_grid(task.get_data_to_cpu("object", as_numpy=True), scan["object_shape"], margin)
    info = {"method": method, "epochs": epochs, "batch_size": batch_size, "seed": seed,
            "epie_alpha": epie_alpha if method == "epie" else None,
            "reconstruct_s": reconstruct_s, "setup_s": setup_s, "import_s": import_s,
            "total_s": time.perf_counter() - t0, "threads": torch.get_num_threads(),
            "ptychi": getattr(ptychi, "__version__", "unknown"), "torch": torch.__version__}
    return obj, info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", type=Path, help="NPZ written by quality.py (or a DATA-001 file)")
    p.add_argument("output", type=Path, help="NPZ to write: 'object', (H, W) complex64 on our grid")
    p.add_argument("--method", choices=METHODS, default="epie")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"minibatch size (default {BATCH_SIZE})")
    p.add_argument("--epie-alpha", type=float, default=EPIE_ALPHA, help=f"ePIE object step (default {EPIE_ALPHA})")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    obj, info = reconstruct(read_input(args.input), args.method, args.epochs, args.seed, args.threads,
                            args.batch_size, args.epie_alpha)
    info["total_s"] = time.perf_counter() - t0  # read + import + setup + run + crop
    np.savez(args.output, object=obj)
    print("PTYCHI_RESULT " + json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
