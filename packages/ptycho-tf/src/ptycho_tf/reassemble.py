"""Native TensorFlow stitching (physics.md s6, docs/conventions.md s4): bilinear scatter-add, no loop per patch.

Every patch contributes its central ``M x M`` crop. A patch's sub-pixel offset is the same
for all of its pixels, so the four bilinear weights are per patch and the splat is separable:
each crop is spread onto an (M+1) x (M+1) block with its weights (dense, vectorised over
patches), then values (real, imag) and coverage are accumulated with one weighted ``tf.math.bincount``
into a flat float64 canvas: one bin per canvas pixel and channel, plus a "dropped" pixel for
contributions that fall outside the canvas. Patches are processed in chunks (vectorised
inside a chunk) to bound memory. The code is device-agnostic: it runs where TensorFlow
places it (a GPU when one is visible).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ptycho_core.errors import DataError
from ptycho_core.reference_stitch import COVERAGE_EPS
from ptycho_tf._env import tf

CHUNK_ELEMENTS = 1 << 20
"""Crop pixels per chunk (times 4 bilinear corners)."""

@tf.function(reduce_retracing=True)
def _splat(patches: tf.Tensor, pos: tf.Tensor, origin: tf.Tensor, H: tf.Tensor, W: tf.Tensor) -> tf.Tensor:
    """Sums of one chunk: complex crops (P, M, M), ``pos`` (P, 2) float64 -> (H*W + 1, 3) [re, im, coverage].

    The bilinear splat is separable with per-patch weights, so each crop is first spread onto
    an (M+1) x (M+1) block (``block[a, b] = sum wr[dr] wc[dc] crop[a-dr, b-dc]``), and the
    blocks are then added at integer canvas positions with one weighted bincount.
    """
    re = tf.cast(tf.math.real(patches), tf.float64)
    crops = tf.stack([re, tf.cast(tf.math.imag(patches), tf.float64), tf.ones_like(re)], axis=-1)
    M = tf.shape(crops)[1]
    half = tf.cast(M // 2, tf.float64)
    # canvas row/column of crop pixel (0, 0); clamping only moves crops that lie wholly off the
    # canvas (keeps far-away positions inside the int32 range)
    lo = -tf.cast(M, tf.float64) - 2.0
    cols0 = tf.clip_by_value(pos[:, 0] - half - origin[0], lo, tf.cast(W, tf.float64) + 1.0)
    rows0 = tf.clip_by_value(pos[:, 1] - half - origin[1], lo, tf.cast(H, tf.float64) + 1.0)
    c_floor, r_floor = tf.floor(cols0), tf.floor(rows0)
    fc, fr = (cols0 - c_floor)[:, None, None, None], (rows0 - r_floor)[:, None, None, None]
    cp = tf.pad(crops, [[0, 0], [1, 1], [1, 1], [0, 0]])
    rows = (1.0 - fr) * cp[:, 1:M + 2] + fr * cp[:, 0:M + 1]  # (P, M+1, M+2, 3)
    block = (1.0 - fc) * rows[:, :, 1:M + 2] + fc * rows[:, :, 0:M + 1]  # (P, M+1, M+1, 3)
    ar = tf.range(M + 1, dtype=tf.int32)
    r = (tf.cast(r_floor, tf.int32)[:, None] + ar[None, :])[:, :, None]  # (P, M+1, 1)
    c = (tf.cast(c_floor, tf.int32)[:, None] + ar[None, :])[:, None, :]  # (P, 1, M+1)
    inside = (r >= 0) & (r < H) & (c >= 0) & (c < W)  # (P, M+1, M+1)
    ids = tf.where(inside, r * W + c, H * W)  # outside -> the dropped pixel
    # one weighted bincount over (pixel, channel) pairs: much faster than a segment sum on CPU
    flat = tf.reshape(ids[..., None] * 3 + tf.range(3, dtype=tf.int32), [-1])
    length = (H * W + 1) * 3
    sums = tf.math.bincount(flat, weights=tf.reshape(block, [-1]), minlength=length, maxlength=length,
                            dtype=tf.float64)
    return tf.reshape(sums, [-1, 3])


def reassemble_tf(patches: np.ndarray, positions: np.ndarray, crop_size: int, canvas_shape: tuple[int, int],
                  origin: tuple[int, int], device: str | None = None) -> np.ndarray:
    """Stitch ``patches`` (P, N, N) at ``positions`` (P, 2) (x, y) onto an (H, W) canvas.

    Parameters
    ----------
    patches : array_like, shape (P, N, N)
        Complex patches (flips already applied by the core).
    positions : array_like, shape (P, 2)
        Global (x, y) patch centres in object pixels.
    crop_size : int
        ``M``: side of the central crop used from every patch.
    canvas_shape : (int, int)
        ``(H, W)`` of the output.
    origin : (int, int)
        Object pixel ``(x0, y0)`` of canvas pixel ``[0, 0]``.
    device : str, optional
        TensorFlow device string (e.g. ``'/GPU:0'``); default: TensorFlow's placement.

    Returns
    -------
    numpy.ndarray
        (H, W) complex64 ``sum / (coverage + 1e-9)`` (0 where nothing landed).
    """
    p = np.asarray(patches)
    pos = np.asarray(positions, dtype=np.float64)
    if p.ndim != 3 or p.shape[1] != p.shape[2]:
        raise DataError(f"patches: expected shape (P, N, N), got {p.shape}")
    if pos.shape != (p.shape[0], 2):
        raise DataError(f"positions: expected shape ({p.shape[0]}, 2) of (x, y) pairs, got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise DataError("positions: contains NaN or infinite values; expected finite numbers")
    N, M = int(p.shape[1]), int(crop_size)
    if not 1 <= M <= N:
        raise DataError(f"crop_size: expected 1 <= M <= N = {N}, got {M}")
    H, W = int(canvas_shape[0]), int(canvas_shape[1])
    if H < 1 or W < 1:
        raise DataError(f"canvas_shape: expected positive (H, W), got {canvas_shape}")
    if 3 * (H * W + 1) >= 2**31:
        raise DataError(f"canvas_shape: {canvas_shape} is too large for int32 bin indices (H * W < 715,827,882)")
    start = N // 2 - M // 2
    crops = p[:, start:start + M, start:start + M].astype(np.complex64)
    chunk = max(1, CHUNK_ELEMENTS // (M * M))
    org = tf.constant([float(origin[0]), float(origin[1])], tf.float64)
    with tf.device(device) if device else contextlib.nullcontext():
        total = tf.zeros([H * W + 1, 3], tf.float64)
        for i in range(0, crops.shape[0], chunk):
            total += _splat(tf.constant(crops[i:i + chunk]), tf.constant(pos[i:i + chunk]), org,
                            tf.constant(H, tf.int32), tf.constant(W, tf.int32))
        sums = total[:-1].numpy()
    obj = (sums[:, 0] + 1j * sums[:, 1]) / (sums[:, 2] + COVERAGE_EPS)
    return obj.astype(np.complex64).reshape(H, W)
