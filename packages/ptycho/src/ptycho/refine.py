"""Iterative refinement of a reconstructed object against the measured amplitudes (NumPy).

The network reconstructs in one forward pass; an iterative phase-retrieval solver is slower
but converges to the data. :func:`refine_object` combines them: the stitched network output
is the starting guess of a few passes of a block-parallel ePIE-style update with the probe
held fixed (physics.md s8):

1. The work canvas covers every N x N scan window (plus one pixel for bilinear sampling).
   Pixels of the starting guess that are exactly 0 (nothing was stitched there) start at the
   mean of the stitched pixels.
2. The guess is multiplied by the real scale ``s = sum(A |F|) / sum(|F|^2)`` that best fits its
   far-field amplitudes ``|F|`` to the measured ``A`` (the network's output has no absolute
   amplitude scale).
3. Each pass visits the positions in a seeded random order, ``batch_size`` at a time. For a
   block: exit waves ``psi = P * extract(O)``, far field ``F = fftshift(fft2(psi)) / N``
   (physics.md s2), amplitude projection ``F' = A F / |F|``, back to ``psi'``, and the object
   update ``O += step * splat(conj(P) (psi' - psi)) / (splat(|P|^2) + 1e-3 max splat(|P|^2))``,
   where ``extract`` is the bilinear patch extraction of the reference and ``splat`` its
   adjoint (the bilinear splat of :func:`ptycho_core.reference.reassemble` without the
   normalisation).
4. The result is cropped back to the canvas of the starting guess, so shapes and origins do
   not change.

Only NumPy is used; the cost per pass is two FFTs of every pattern. ``diffraction`` may be an
array or anything with a ``read(indices)`` method (a lazily read dataset), read one block at a
time.

The loop (:class:`_Blocks`) computes exactly these formulas, faster than calling the reference
functions: the bilinear weights and canvas indices of every window are the same in every pass;
the probe is multiplied by the checkerboard ``(-1)^(r+c)``, which turns ``fftshift(fft2(x))``
into ``fft2`` of the checkered wave for even N (so no shift is ever made, and the factors
``1/N`` and ``N`` of the two transforms cancel in the amplitude projection); and the exit waves
and their transforms are single precision (complex64) while the object canvas and every sum
stay double precision. ``test_refine`` checks one block update against the reference functions.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import numpy as np

from ptycho_core.errors import ConfigError, DataError
from ptycho_core.reference_physics import _far_field
from ptycho_core.reference_sampling import extract_patches
from ptycho_core.reference_stitch import _spread, canvas_geometry, splat_sum_weighted

__all__ = ["RefineResult", "refine_object"]

REGULARISATION = 1e-3
"""Added to the probe-intensity denominator, as a fraction of its maximum over the block."""
_CHUNK = 16
"""Windows interpolated together in :meth:`_Blocks.exit_waves` (the temporaries stay in cache: 3x faster than a
whole block of 64 on one thread)."""


@attrs.frozen
class RefineResult:
    """Outcome of :func:`refine_object`."""

    object: np.ndarray
    """Refined object on the canvas of the starting guess, complex64 (H, W)."""
    misfit: list[float]
    """Relative amplitude misfit ``sum((|F| - A)^2) / sum(A^2)``: the starting guess after scaling,
    then one value per pass (accumulated over the pass, each block before its update)."""
    scale: float
    """Scale applied to the starting guess before the first pass."""
    seconds: float
    """Wall time of the refinement."""


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _reader(diffraction: Any, n: int, N: int) -> Any:
    if hasattr(diffraction, "read"):
        shape = tuple(diffraction.diffraction.shape) if hasattr(diffraction, "diffraction") else None
        if shape is not None and shape != (n, N, N):
            raise DataError(f"diffraction: expected shape ({n}, {N}, {N}) to match positions and probe, got {shape}")
        return lambda idx: np.asarray(diffraction.read(idx), dtype=np.float64)
    a = np.asarray(diffraction)
    if a.shape != (n, N, N):
        raise DataError(f"diffraction: expected shape ({n}, {N}, {N}) to match positions and probe, got {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise DataError("diffraction: expected finite, non-negative amplitudes")
    return lambda idx: a[idx].astype(np.float64)


class _Blocks:
    """The block update of :func:`refine_object` on one work canvas of ``shape``, positions fixed.

    ``local``: window centres ``(x, y)`` on the canvas, every window inside it with one pixel to spare
    (the work canvas of :func:`refine_object`). Same formulas as ``extract_patches``, ``_far_field``
    and ``splat_sum_weighted`` of ptycho_core (see the module docstring for what is done differently).
    """

    def __init__(self, probe: np.ndarray, local: np.ndarray, shape: tuple[int, int]):
        N = probe.shape[0]
        self.N, self.even = N, N % 2 == 0
        top = np.floor(local[:, 1]) - N // 2  # canvas row / column of window pixel (0, 0), rounded down
        left = np.floor(local[:, 0]) - N // 2
        self.fr = local[:, 1] - N // 2 - top  # bilinear fractions, in [0, 1)
        self.fc = local[:, 0] - N // 2 - left
        self.corner = top.astype(np.int64) * shape[1] + left.astype(np.int64)  # flat index of the block corner
        k = np.arange(N + 1)
        self.offsets = k[:, None] * shape[1] + k[None, :]  # (N+1, N+1) flat offsets of a block
        if top.min() < 0 or left.min() < 0 or top.max() + N >= shape[0] or left.max() + N >= shape[1]:
            raise ValueError(f"refine: a window's (N+1) x (N+1) block leaves the work canvas {shape}")  # a bug here
        checker = np.where((k[:N, None] + k[None, :N]) % 2, -1.0, 1.0) if self.even else 1.0
        self.probe_c = (probe * checker).astype(np.complex64)
        self.conj_probe_c = np.conj(self.probe_c)
        self.power = (np.abs(probe) ** 2).astype(np.float32)

    def exit_waves(self, work: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(flat block indices (p, N+1, N+1), P * extract(work))`` of positions ``idx`` (checkered for even N)."""
        N = self.N
        flat = self.corner[idx, None, None] + self.offsets
        fr, fc = self.fr[idx, None, None].astype(np.float32), self.fc[idx, None, None].astype(np.float32)
        psi = np.empty((len(idx), N, N), np.complex64)
        source = work.ravel()
        for s in range(0, len(idx), _CHUNK):  # a chunk's temporaries stay in cache
            sl = slice(s, s + _CHUNK)
            block = source[flat[sl]].astype(np.complex64)
            rows = block[:, :N] * (1.0 - fr[sl]) + block[:, 1:] * fr[sl]
            psi[sl] = (rows[:, :, :N] * (1.0 - fc[sl]) + rows[:, :, 1:] * fc[sl]) * self.probe_c
        return flat, psi

    def update(self, work: np.ndarray, idx: np.ndarray, A: np.ndarray, step: float) -> float:
        """One block update of ``work`` in place from measured amplitudes ``A`` (p, N, N); returns the block's
        ``sum((|F| - A)^2)`` before the update."""
        N = self.N
        flat, psi = self.exit_waves(work, idx)
        # far = N F of the reference (fft2 of the checkered wave is fftshift(fft2(psi)) for even N)
        far = np.fft.fft2(psi) if self.even else np.fft.fftshift(np.fft.fft2(psi), axes=(-2, -1))
        mag = np.abs(far)
        err = float(np.sum((mag / N - A) ** 2, dtype=np.float64))
        target = (A * N / np.maximum(mag, 1e-30)).astype(np.float32) * far  # N F' (amplitude projection)
        if not self.even:
            target = np.fft.ifftshift(target, axes=(-2, -1))
        dpsi = np.fft.ifft2(target) - psi
        fr, fc = self.fr[idx].astype(np.float32), self.fc[idx].astype(np.float32)
        upd = np.empty((len(idx), N + 1, N + 1), np.complex64)
        wgt = np.empty((len(idx), N + 1, N + 1), np.float32)
        for s in range(0, len(idx), _CHUNK):  # the adjoint of exit_waves, with the probe intensity under it
            sl = slice(s, s + _CHUNK)
            upd[sl] = _spread(self.conj_probe_c * dpsi[sl], fr[sl], fc[sl])
            wgt[sl] = _spread(np.broadcast_to(self.power, dpsi[sl].shape), fr[sl], fc[sl])
        size = work.size
        flat = flat.ravel()
        re = np.bincount(flat, weights=upd.real.ravel(), minlength=size)
        im = np.bincount(flat, weights=upd.imag.ravel(), minlength=size)
        weight = np.bincount(flat, weights=wgt.ravel(), minlength=size)
        denom = weight + REGULARISATION * float(weight.max())
        work += (step * (re + 1j * im) / denom).reshape(work.shape)
        return err


class _ReferenceBlocks:
    """The block update of :class:`_Blocks` written with the reference functions of ptycho_core in double precision:
    the definition ``test_refine`` checks :class:`_Blocks` against, and the bound of ``benchmarks/run.py --only
    refine`` (the loop of :func:`refine_object` before it was made faster)."""

    def __init__(self, probe: np.ndarray, local: np.ndarray, shape: tuple[int, int]):
        self.probe, self.local = np.asarray(probe, np.complex128), local

    def update(self, work: np.ndarray, idx: np.ndarray, A: np.ndarray, step: float) -> float:
        N = self.probe.shape[0]
        psi = extract_patches(work, self.local[idx], N).astype(np.complex128) * self.probe
        far = _far_field(psi)
        mag = np.abs(far)
        err = float(np.sum((mag - A) ** 2))
        dpsi = np.fft.ifft2(np.fft.ifftshift(A * far / np.maximum(mag, 1e-30) * N, axes=(-2, -1))) - psi
        update, weight = splat_sum_weighted(np.conj(self.probe) * dpsi, np.abs(self.probe) ** 2, self.local[idx],
                                            work.shape, (0, 0))
        work += step * update / (weight + REGULARISATION * float(weight.max()))
        return err


def refine_object(initial: Any, origin: Any, diffraction: Any, positions: Any, probe: Any, iterations: int, *,
                  batch_size: int = 64, step: float = 1.0, seed: int = 0, progress: bool | None = None) -> RefineResult:
    """Refine a stitched object with ``iterations`` passes of a block-parallel ePIE update.

    Parameters
    ----------
    initial : array_like, shape (H, W)
        Starting guess (complex), e.g. a stitched network reconstruction; exact zeros mark
        pixels where nothing was stitched.
    origin : (int, int)
        Object pixel ``(x0, y0)`` of ``initial[0, 0]`` (the reconstruction's origin).
    diffraction : array_like, shape (P, N, N), or an object with ``read(indices)``
        Measured amplitudes (zero frequency at index N//2), e.g. ``Dataset.diffraction``.
    positions : array_like, shape (P, 2)
        Scan positions ``(x, y)`` in object pixels.
    probe : array_like, shape (N, N)
        The probe in the units of the data (``probeGuess``); it is not updated.
    iterations : int
        Passes over all positions (0 returns the scaled starting guess).
    batch_size : int
        Positions per object update (default 64).
    step : float
        Update step in (0, 2] (default 1).
    seed : int
        Seed of the order in which positions are visited.
    progress : bool or None
        tqdm progress bar over passes; None shows it only when stderr is a terminal.

    Returns
    -------
    RefineResult
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    iterations = _check_int(iterations, "iterations", 0)
    batch_size = _check_int(batch_size, "batch_size", 1)
    seed = _check_int(seed, "seed", 0)
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0.0 < step <= 2.0:
        raise ConfigError(f"step: expected a number in (0, 2], got {step!r}")
    obj0 = np.asarray(initial)
    if obj0.ndim != 2 or obj0.size == 0 or not np.all(np.isfinite(obj0)):
        raise DataError(f"initial: expected a finite 2-D object, got shape {obj0.shape}")
    P = np.asarray(probe)
    if P.ndim != 2 or P.shape[0] != P.shape[1] or not np.all(np.isfinite(P)):
        raise DataError(f"probe: expected a finite square (N, N) array, got shape {P.shape}")
    P = P.astype(np.complex128)
    N = P.shape[0]
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2 or pos.shape[0] == 0 or not np.all(np.isfinite(pos)):
        raise DataError(f"positions: expected a finite (P, 2) array of (x, y), got shape {pos.shape}")
    read = _reader(diffraction, pos.shape[0], N)
    ox, oy = (int(v) for v in origin)

    # work canvas: every scan window, plus the starting guess's own canvas
    (wh, ww), (wx, wy) = canvas_geometry(pos, N)
    x0, y0 = min(wx, ox), min(wy, oy)
    x1, y1 = max(wx + ww, ox + obj0.shape[1]), max(wy + wh, oy + obj0.shape[0])
    stitched = obj0 != 0
    if not np.any(stitched):
        raise DataError("initial: the starting guess is zero everywhere")
    work = np.full((y1 - y0, x1 - x0), np.mean(obj0[stitched]), dtype=np.complex128)
    r0, c0 = oy - y0, ox - x0
    inner = work[r0:r0 + obj0.shape[0], c0:c0 + obj0.shape[1]]
    inner[stitched] = obj0[stitched]
    local = pos - np.array([x0, y0], dtype=np.float64)  # positions on the work canvas

    blocks = [np.arange(s, min(s + batch_size, len(pos))) for s in range(0, len(pos), batch_size)]
    cross = power = measured = 0.0
    for idx in blocks:  # least-squares scale of the starting guess
        amp = np.abs(_far_field(extract_patches(work, local[idx], N).astype(np.complex128) * P))
        A = read(idx)
        cross += float(np.sum(A * amp))
        power += float(np.sum(amp * amp))
        measured += float(np.sum(A * A))
    if not power > 0:
        raise DataError("initial: the starting guess gives no diffracted intensity with this probe")
    scale = cross / power
    work *= scale
    # misfit of the scaled guess from the same sums: sum((s amp - A)^2) = sum(A^2) - cross^2 / power
    misfit = [max(measured - cross * cross / power, 0.0) / max(measured, 1e-300)]

    rng = np.random.default_rng(seed)
    blocks = _Blocks(P, local, work.shape)
    for _ in tqdm(range(iterations), desc="refine", unit="pass", disable=not _show(progress), leave=False):
        order = rng.permutation(len(pos))
        err = 0.0
        for s in range(0, len(order), batch_size):
            idx = np.sort(order[s:s + batch_size])
            err += blocks.update(work, idx, read(idx), step)
        misfit.append(err / max(measured, 1e-300))  # a pass visits every position once
    out = work[r0:r0 + obj0.shape[0], c0:c0 + obj0.shape[1]].astype(np.complex64)
    return RefineResult(object=out, misfit=misfit, scale=float(scale), seconds=time.perf_counter() - start)


def object_misfit(obj: Any, origin: Any, diffraction: Any, positions: Any, probe: Any) -> float:
    """How well a stitched object explains the measured patterns, without any ground truth.

    The relative amplitude misfit ``sum((|F| - A)^2) / sum(A^2)`` over every scan position, after
    the one real least-squares scale of physics.md s8 (the network's output has no absolute
    amplitude scale): 0 when the object reproduces every pattern; a flat object leaves the part its
    missing structure accounts for (0.03-0.12 on the simulated scans of docs/amortised.md, whose
    patterns' central peak a flat object already fits). The first value of :func:`refine_object`'s
    ``misfit``, with the same arguments and no pass.
    """
    return refine_object(obj, origin, diffraction, positions, probe, 0, progress=False).misfit[0]


def _show(progress: bool | None) -> bool:
    if progress is None:
        import sys

        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)
