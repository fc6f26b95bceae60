"""The physics layer inside training (docs/conventions.md s3) and the losses, in TensorFlow.

Layout is channels-last like the NumPy contracts: object patches (B, N, N, C) complex64,
amplitudes and intensities (B, N, N, C) float32, offsets (B, C, 2) as (x, y). Offsets stay
float64 (the contract dtype): the bilinear weights are the fractional parts of the shifts,
and rounding offsets of a few pixels to float32 costs ~1e-4 relative accuracy in the merge
(the denominator is small at the window edge), against ~1e-7 when the fractions are
formed in float64 and rounded once.
Every operation works per group: nothing mixes the groups of a batch. A translation is
uniform, so the 4-neighbour bilinear stencil is separable: translating an image is
``R @ img @ K^T`` with one (out, in) matrix per axis and per image, two non-zero weights per
row (:func:`_shift_matrices`). Zero padding, cropping and the separable merge window fold
into those matrices, so merge and extract are batched matrix products; their gradients are
matrix products too, where a gather's gradient is a scatter (the gather version took about
1.5-2x as long forward + backward on a CPU: docs/benchmarks-performance.md). There is no
Python loop over patches or groups.
"""

from __future__ import annotations

import numpy as np

from ptycho_core.errors import ConfigError
from ptycho_core.reference_layer import (  # one definition for all backends
    LOG_EPS,
    MERGE_EPS,
    canvas_side,
    window_bounds,
)
from ptycho_tf._env import keras, tf


def _shift_matrices(d: tf.Tensor, out_len: int, in_len: int, first: int, dtype) -> tf.Tensor:
    """Bilinear translation along one axis as matrices: (L, out_len, in_len), one per shift in ``d`` (L,).

    Row ``r`` of matrix ``l`` holds the weights that give output sample ``r`` of the signal
    translated by ``d[l]`` (content moves towards higher indices): ``1 - f`` on input index
    ``r + first + floor(-d)`` and ``f`` on the next one, with ``f = -d - floor(-d)`` formed in
    float64 and rounded once. ``first`` folds padding and cropping into the matrix: it is the
    output's start minus the input's start on the common axis (``-(S - N) // 2`` when an (N,)
    signal is padded to S, ``(S - N) // 2`` when an S-long result is cropped to N). Indices
    outside ``[0, in_len)`` get no weight, which is the zero fill of conventions s3.
    """
    d = tf.cast(d, tf.float64)
    base = tf.floor(-d)
    frac = tf.cast(-d - base, dtype)[:, None, None]
    idx = tf.range(out_len)[None, :] + tf.cast(base, tf.int32)[:, None] + first  # (L, out_len)
    return (tf.one_hot(idx, in_len, dtype=dtype) * (1.0 - frac)
            + tf.one_hot(idx + 1, in_len, dtype=dtype) * frac)


def _apply(rows: tf.Tensor, img: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
    """``rows @ img @ cols^T`` with broadcast batch axes; complex ``img`` is done as its real and imaginary parts."""
    if img.dtype.is_complex:
        both = tf.stack([tf.math.real(img), tf.math.imag(img)])
        out = tf.linalg.matmul(tf.linalg.matmul(rows, both), cols, transpose_b=True)
        return tf.complex(out[0], out[1])
    return tf.linalg.matmul(tf.linalg.matmul(rows, img), cols, transpose_b=True)


def translate(img: tf.Tensor, dx: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:
    """Translate images so content moves ``dx`` columns right and ``dy`` rows down (bilinear, zero fill).

    Parameters
    ----------
    img : tf.Tensor
        (L, H, W) float32 or complex64 images.
    dx, dy : tf.Tensor
        (L,) shifts, one per image. They are used in float64 (floor and fraction), so
        float64 offsets lose nothing to rounding; the images stay float32/complex64.

    Returns
    -------
    tf.Tensor
        ``out[l, r, c] = img[l](r - dy[l], c - dx[l])``, same shape and dtype as ``img``.
    """
    H, W, dtype = img.shape[-2], img.shape[-1], _real_dtype(img)
    return _apply(_shift_matrices(dy, H, H, 0, dtype), img, _shift_matrices(dx, W, W, 0, dtype))


def _real_dtype(x: tf.Tensor):
    return x.dtype.real_dtype if x.dtype.is_complex else x.dtype


def central_window(N: int, side: int | None = None) -> np.ndarray:
    """(N, N) float32 window: 1 on rows and columns ``[lo, hi)``, 0 elsewhere.

    ``(lo, hi) = reference.window_bounds(N, side)``: the centred window of side ``side`` pixels
    (``ModelConfig.window_side``); the default ``N // 2`` gives ``[N/4, 3N/4)``.
    """
    lo, hi = window_bounds(N, side)
    w = np.zeros((N, N), dtype=np.float32)
    w[lo:hi, lo:hi] = 1.0
    return w


def _flat_offsets(offsets: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    off = tf.cast(offsets, tf.float64)
    return tf.reshape(off[..., 0], [-1]), tf.reshape(off[..., 1], [-1])


def merge(patches: tf.Tensor, offsets: tf.Tensor, gridsize: int, window: int | None = None) -> tf.Tensor:
    """Merge the C patches of each group onto its own canvas (conventions s3.1).

    ``canvas = sum_c T(pad(O_c * w)) / (sum_c T(pad(w)) + 1e-3)`` per group.

    Parameters
    ----------
    patches : tf.Tensor
        (B, N, N, C) complex64.
    offsets : tf.Tensor
        (B, C, 2) offsets (x, y).
    gridsize : int
        ``C = gridsize**2``; sets the canvas side.
    window : int, optional
        Side in pixels of the central window ``w`` (``ModelConfig.window_side``, physics.md s5
        step 1); default ``N // 2``, rows and columns ``[N/4, 3N/4)``.

    Returns
    -------
    tf.Tensor
        (B, S, S) complex64 canvases, ``S = canvas_side(N, gridsize, window)``.
    """
    N, C = patches.shape[1], patches.shape[3]
    lo, hi = window_bounds(N, window)
    S = canvas_side(N, gridsize, hi - lo)  # a wider window widens the canvas by as much
    B = tf.shape(patches)[0]
    dx, dy = _flat_offsets(offsets)
    # The window is 1 on one square block of rows and columns [lo, hi) and 0 elsewhere
    # (central_window), so T(pad(O * w)) only sees that block of O: padding to S and the crop to
    # the block fold into the translation matrices (R, K), and T(pad(O * w)) = R O[block] K^T.
    n, first = hi - lo, -((S - N) // 2) - lo
    rows = tf.reshape(_shift_matrices(dy, S, n, first, tf.float32), [B, C, S, n])
    cols = tf.reshape(_shift_matrices(dx, S, n, first, tf.float32), [B, C, S, n])
    inside = tf.transpose(patches[:, lo:hi, lo:hi, :], [0, 3, 1, 2])  # (B, C, n, n) complex
    # real and imaginary parts side by side, so each product is one larger matmul: R_c [Re | Im]
    left = tf.linalg.matmul(rows, tf.concat([tf.math.real(inside), tf.math.imag(inside)], axis=-1))  # (B, C, S, 2n)
    # sum_c (R_c O_c) K_c^T is one product over the stacked (c, j) axis: (B, 2, S, C n) @ (B, 1, C n, S)
    left = tf.reshape(tf.transpose(tf.reshape(left, [B, C, S, 2, n]), [0, 3, 2, 1, 4]), [B, 2, S, C * n])
    right = tf.reshape(tf.transpose(cols, [0, 1, 3, 2]), [B, 1, C * n, S])
    both = tf.linalg.matmul(left, right)  # (B, 2, S, S)
    num = tf.complex(both[:, 0], both[:, 1])
    # sum_c T(pad(w)) = sum_c (R_c 1)(K_c 1)^T: the row sums of the matrices
    den = tf.linalg.matmul(tf.reduce_sum(rows, axis=-1), tf.reduce_sum(cols, axis=-1), transpose_a=True)
    return num / tf.cast(den + MERGE_EPS, num.dtype)


def centre_crop(canvas: tf.Tensor, N: int) -> tf.Tensor:
    """Rows/cols ``[(S-N)//2, (S-N)//2 + N)`` of the last two axes of (L, S, S)."""
    start = (canvas.shape[-1] - N) // 2
    return canvas[..., start:start + N, start:start + N]


def extract(canvas: tf.Tensor, offsets: tf.Tensor, N: int) -> tf.Tensor:
    """Per-channel patches ``crop_N(T(canvas, -dx_c, -dy_c))``: (B, S, S) -> (B, N, N, C)."""
    C = offsets.shape[1]
    S = canvas.shape[-1]
    B = tf.shape(canvas)[0]
    dx, dy = _flat_offsets(offsets)
    dtype = _real_dtype(canvas)
    # translating by -d and cropping the centre N x N is one (N, S) matrix per axis
    rows = tf.reshape(_shift_matrices(-dy, N, S, (S - N) // 2, dtype), [B, C, N, S])
    cols = tf.reshape(_shift_matrices(-dx, N, S, (S - N) // 2, dtype), [B, C, N, S])
    # all C row matrices of a group against its canvas, real and imaginary parts side by side:
    # (B, C N, S) @ (B, S, 2S), then each (channel, part) against its column matrix
    both = tf.concat([tf.math.real(canvas), tf.math.imag(canvas)], axis=-1)  # (B, S, 2S)
    left = tf.linalg.matmul(tf.reshape(rows, [B, C * N, S]), both)  # (B, C N, 2S)
    left = tf.reshape(tf.transpose(tf.reshape(left, [B, C, N, 2, S]), [0, 1, 3, 2, 4]), [B, C, 2 * N, S])
    moved = tf.reshape(tf.linalg.matmul(left, cols, transpose_b=True), [B, C, 2, N, N])
    return tf.transpose(tf.complex(moved[:, :, 0], moved[:, :, 1]), [0, 2, 3, 1])


def diffract_intensity(psi: tf.Tensor) -> tf.Tensor:
    """``|fftshift(fft2(psi)) / N|^2`` over the two spatial axes of (B, N, N, C) complex64 -> float32."""
    N = psi.shape[1]
    f = tf.signal.fft2d(tf.transpose(psi, [0, 3, 1, 2])) / tf.cast(N, tf.complex64)
    f = tf.roll(f, shift=[N // 2, N // 2], axis=[2, 3])  # fftshift (N even)
    inten = tf.math.real(f) ** 2 + tf.math.imag(f) ** 2
    return tf.transpose(inten, [0, 2, 3, 1])


def to_complex(amp: tf.Tensor, phase: tf.Tensor) -> tf.Tensor:
    """``amp * exp(i * phase)`` as complex64."""
    amp = tf.cast(amp, tf.float32)
    phase = tf.cast(phase, tf.float32)
    return tf.complex(amp * tf.cos(phase), amp * tf.sin(phase))


class PhysicsLayer(keras.layers.Layer):
    """Merge, extract, illuminate and diffract; holds the intensity scale ``s`` and the probe.

    ``intensity_scale`` is a scalar Keras weight, trainable when ``scale_trainable``; the
    probe is held as ``probe_real``/``probe_imag`` float32 (N, N) weights, trainable when
    ``probe_trainable``. An all-zero probe means "not set yet" (see :meth:`probe_is_set`).
    Variables are saved under their names (not their position), so a weights file loads
    whatever the trainability flags were. ``window`` is the side in pixels of the merge's
    central window (``ModelConfig.window_side``; default ``N // 2``); it matters only when
    the layer merges (C > 1 and ``object_big``).
    """

    def __init__(self, *, N: int, gridsize: int, object_big: bool, scale: float, scale_trainable: bool,
                 probe_trainable: bool, window: int | None = None, **kwargs) -> None:
        kwargs.setdefault("autocast", False)  # keep float64 offsets (see the module docstring)
        super().__init__(**kwargs)
        self.N, self.gridsize, self.object_big = int(N), int(gridsize), bool(object_big)
        # side of the merge's central window in pixels (ModelConfig.window_side; None: N // 2), checked once here
        lo, hi = window_bounds(self.N, window)
        self.window = hi - lo
        self.intensity_scale = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(float(scale)), trainable=bool(scale_trainable),
            name="intensity_scale", dtype="float32",
        )
        self.probe_real = self.add_weight(shape=(self.N, self.N), initializer="zeros",
                                          trainable=bool(probe_trainable), name="probe_real", dtype="float32")
        self.probe_imag = self.add_weight(shape=(self.N, self.N), initializer="zeros",
                                          trainable=bool(probe_trainable), name="probe_imag", dtype="float32")
        self.built = True

    def named_variables(self) -> dict:
        """``{'intensity_scale', 'probe_real', 'probe_imag'}`` -> variable."""
        return {"intensity_scale": self.intensity_scale, "probe_real": self.probe_real,
                "probe_imag": self.probe_imag}

    def save_own_variables(self, store) -> None:
        for name, var in self.named_variables().items():
            store[name] = var

    def load_own_variables(self, store) -> None:
        missing = [name for name in self.named_variables() if name not in store.keys()]
        if missing:
            raise ConfigError(f"physics layer: weights file lacks {missing}; expected intensity_scale, "
                              "probe_real and probe_imag")
        for name, var in self.named_variables().items():
            var.assign(store[name])

    @property
    def probe(self) -> tf.Tensor:
        """The current normalised probe, (N, N) complex64."""
        return tf.complex(self.probe_real, self.probe_imag)

    def probe_is_set(self) -> bool:
        """Whether a probe was set (by training, loading or weight import)."""
        return bool(np.any(keras.ops.convert_to_numpy(self.probe_real) != 0)
                    or np.any(keras.ops.convert_to_numpy(self.probe_imag) != 0))

    def set_probe(self, probe: np.ndarray) -> None:
        """Copy a normalised (N, N) complex probe into the layer."""
        p = np.asarray(probe)
        if p.shape != (self.N, self.N):
            raise ConfigError(f"probe: expected shape ({self.N}, {self.N}), got {p.shape}")
        self.probe_real.assign(p.real.astype(np.float32))
        self.probe_imag.assign(p.imag.astype(np.float32))

    def call(self, patches: tf.Tensor, offsets: tf.Tensor, probe: tf.Tensor | None = None):
        """Predicted intensity ``lambda = s^2 |F(O' P)|^2`` (B, N, N, C) and the extracted patches ``O'``.

        ``patches`` (B, N, N, C) complex64; ``offsets`` (B, C, 2); ``probe`` overrides the held probe.
        """
        C = patches.shape[-1]
        if C > 1 and self.object_big:
            obj = extract(merge(patches, offsets, self.gridsize, self.window), offsets, self.N)
        else:
            obj = patches
        p = self.probe if probe is None else tf.cast(probe, tf.complex64)
        inten = diffract_intensity(obj * p[None, :, :, None])
        return tf.square(self.intensity_scale) * inten, obj


def losses(lam: tf.Tensor, X: tf.Tensor, s0: float, *, patches: tf.Tensor | None = None,
           Y: tf.Tensor | None = None, nll_weight: float = 1.0, mae_weight: float = 0.0,
           realspace_weight: float = 0.0) -> dict[str, tf.Tensor]:
    """Loss terms of conventions s3.6 (means over all elements) and their weighted sum ``'loss'``.

    Parameters
    ----------
    lam : tf.Tensor
        Predicted intensity in photon units, (B, N, N, C).
    X : tf.Tensor
        Normalised measured amplitudes, same shape; the target intensity is ``(s0 * X)^2``.
    s0 : float
        Fixed physics scale ``sqrt(nphotons) / (N/2)``.
    patches, Y : tf.Tensor, optional
        Predicted and ground-truth complex object patches for the real-space term.
    nll_weight, mae_weight, realspace_weight : float
        Term weights; a term with weight 0 is left out of the sum.

    Returns
    -------
    dict
        ``nll``, ``deviance`` (``nll`` minus its floor at ``lam = k``: >= 0, same gradient),
        ``mae``, ``misfit`` (relative amplitude misfit, reported only), ``realspace`` when
        weighted, and ``loss = nll_weight deviance + mae_weight mae + realspace_weight realspace``.
    """
    target = float(s0) * tf.cast(X, tf.float32)
    k = tf.square(target)
    log_lam = tf.math.log(lam + LOG_EPS)
    out = {"nll": tf.reduce_mean(lam - k * log_lam)}
    # the same objective minus its floor at lam = k (reference.poisson_deviance): >= 0, same gradient
    out["deviance"] = tf.reduce_mean(lam - k - k * (log_lam - tf.math.log(k + LOG_EPS)))
    amp = tf.sqrt(lam + LOG_EPS)
    out["mae"] = tf.reduce_mean(tf.abs(amp - target))
    # reported, not optimised (reference.amplitude_misfit)
    out["misfit"] = tf.stop_gradient(tf.reduce_sum(tf.square(amp - target)) / tf.maximum(tf.reduce_sum(k), LOG_EPS))
    total = tf.constant(0.0, tf.float32)
    if nll_weight != 0:
        total = total + float(nll_weight) * out["deviance"]
    if mae_weight != 0:
        total = total + float(mae_weight) * out["mae"]
    if realspace_weight != 0:
        if Y is None or patches is None:
            raise ConfigError(
                "TrainingConfig.realspace_weight: > 0 needs ground-truth patches Y (data without objectGuess); "
                "set realspace_weight = 0 or provide an objectGuess"
            )
        out["realspace"] = tf.reduce_mean(tf.abs(patches - tf.cast(Y, tf.complex64)))
        total = total + float(realspace_weight) * out["realspace"]
    out["loss"] = total
    return out


def physics_scale(nphotons: float, N: int) -> float:
    """``s0 = sqrt(nphotons) / (N/2)`` (the NumPy reference's formula)."""
    from ptycho_core import reference

    return float(reference.physics_scale(nphotons, N))
