"""The physics layer inside training (docs/conventions.md s3) and the losses, in TensorFlow.

Layout is channels-last like the NumPy contracts: object patches (B, N, N, C) complex64,
amplitudes and intensities (B, N, N, C) float32, offsets (B, C, 2) as (x, y). Offsets stay
float64 (the contract dtype): the bilinear weights are the fractional parts of the shifts,
and rounding offsets of a few pixels to float32 costs ~1e-4 relative accuracy in the merge
(the denominator is small at the window edge), against ~1e-7 when the fractions are
formed in float64 and rounded once.
Every operation works per group: nothing mixes the groups of a batch. Bilinear
translation gathers the two neighbours along rows, then along columns (a translation is
uniform, so the 4-neighbour bilinear stencil is separable), vectorised over all images
with one shift per image; there is no Python loop over patches or groups.
"""

from __future__ import annotations

import numpy as np

from ptycho_core.errors import ConfigError
from ptycho_tf._env import keras, tf

MERGE_EPS = 1e-3
LOG_EPS = 1e-12


def _shift_axis(x: tf.Tensor, d: tf.Tensor, axis: int) -> tf.Tensor:
    """Bilinear shift of real ``x`` (L, H, W) by ``d`` (L,) pixels along ``axis`` (1: rows, 2: cols), zero fill."""
    length = tf.shape(x)[axis]
    base = tf.floor(-d)
    frac = tf.cast(-d - base, x.dtype)  # exact in float64, then rounded once
    base_i = tf.cast(base, tf.int32)
    pos = tf.range(length)
    out = None
    for step, weight in ((0, 1.0 - frac), (1, frac)):
        idx = pos[None, :] + base_i[:, None] + step  # (L, length)
        valid = tf.logical_and(idx >= 0, idx < length)
        w = weight[:, None] * tf.cast(valid, x.dtype)
        gathered = tf.gather(x, tf.clip_by_value(idx, 0, length - 1), axis=axis, batch_dims=1)
        term = gathered * (w[:, :, None] if axis == 1 else w[:, None, :])
        out = term if out is None else out + term
    return out


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
    dx = tf.cast(dx, tf.float64)
    dy = tf.cast(dy, tf.float64)
    if img.dtype.is_complex:
        both = tf.concat([tf.math.real(img), tf.math.imag(img)], axis=0)
        dx2, dy2 = tf.concat([dx, dx], axis=0), tf.concat([dy, dy], axis=0)
        moved = _shift_axis(_shift_axis(both, dy2, 1), dx2, 2)
        re, im = tf.split(moved, 2, axis=0)
        return tf.complex(re, im)
    return _shift_axis(_shift_axis(img, dy, 1), dx, 2)


def canvas_side(N: int, gridsize: int) -> int:
    """Side ``S = N + (gridsize - 1) * 4 + 10`` of the per-group merge canvas."""
    return N + (gridsize - 1) * 4 + 10


def central_window(N: int) -> np.ndarray:
    """(N, N) float32 window: 1 on rows and columns ``[N/4, 3N/4)``, 0 elsewhere."""
    w = np.zeros((N, N), dtype=np.float32)
    w[N // 4: 3 * N // 4, N // 4: 3 * N // 4] = 1.0
    return w


def _pad_to(x: tf.Tensor, N: int, S: int) -> tf.Tensor:
    """Zero-pad the last two axes of (L, N, N) to (L, S, S) with ``(S - N) // 2`` before."""
    lo = (S - N) // 2
    return tf.pad(x, [[0, 0], [lo, S - N - lo], [lo, S - N - lo]])


def _flat_offsets(offsets: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    off = tf.cast(offsets, tf.float64)
    return tf.reshape(off[..., 0], [-1]), tf.reshape(off[..., 1], [-1])


def _translated_window(N: int, S: int, L: int, dx: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:
    """``T(pad(w))`` for ``L`` shifts, (L, S, S) float32, from the window's two 1-D profiles.

    The window is separable (``w = u v^T`` with ``u = v`` the 1-D box) and the bilinear
    translation shifts rows and columns independently, so ``T(pad(w)) = T_y(u) T_x(v)^T``: two
    1-D shifts and an outer product instead of a 2-D translation (the window is not learned,
    so nothing here needs a gradient).
    """
    lo = (S - N) // 2
    box = np.zeros(S, dtype=np.float32)
    box[lo:lo + N] = central_window(N)[N // 2]  # the window's middle row is its 1-D profile
    profile = tf.broadcast_to(tf.constant(box), [L, S])
    rows = _shift_axis(profile[:, :, None], dy, 1)  # (L, S, 1)
    cols = _shift_axis(profile[:, None, :], dx, 2)  # (L, 1, S)
    return rows * cols


def merge(patches: tf.Tensor, offsets: tf.Tensor, gridsize: int) -> tf.Tensor:
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

    Returns
    -------
    tf.Tensor
        (B, S, S) complex64 canvases.
    """
    N, C = patches.shape[1], patches.shape[3]
    S = canvas_side(N, gridsize)
    B = tf.shape(patches)[0]
    w = tf.constant(central_window(N))
    flat = tf.reshape(tf.transpose(patches, [0, 3, 1, 2]), [-1, N, N])  # (B*C, N, N), group-major
    dx, dy = _flat_offsets(offsets)
    num = translate(_pad_to(flat * tf.cast(w, flat.dtype), N, S), dx, dy)
    den = _translated_window(N, S, B * C, dx, dy)
    num = tf.reduce_sum(tf.reshape(num, [B, C, S, S]), axis=1)
    den = tf.reduce_sum(tf.reshape(den, [B, C, S, S]), axis=1)
    return num / tf.cast(den + MERGE_EPS, num.dtype)


def centre_crop(canvas: tf.Tensor, N: int) -> tf.Tensor:
    """Rows/cols ``[(S-N)//2, (S-N)//2 + N)`` of the last two axes of (L, S, S)."""
    start = (canvas.shape[-1] - N) // 2
    return canvas[..., start:start + N, start:start + N]


def extract(canvas: tf.Tensor, offsets: tf.Tensor, N: int) -> tf.Tensor:
    """Per-channel patches ``crop_N(T(canvas, -dx_c, -dy_c))``: (B, S, S) -> (B, N, N, C)."""
    C = offsets.shape[1]
    S = canvas.shape[-1]
    stacked = tf.reshape(tf.repeat(canvas[:, None], C, axis=1), [-1, S, S])  # (B*C, S, S)
    dx, dy = _flat_offsets(offsets)
    moved = centre_crop(translate(stacked, -dx, -dy), N)
    return tf.transpose(tf.reshape(moved, [-1, C, N, N]), [0, 2, 3, 1])


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
    whatever the trainability flags were.
    """

    def __init__(self, *, N: int, gridsize: int, object_big: bool, scale: float, scale_trainable: bool,
                 probe_trainable: bool, **kwargs) -> None:
        kwargs.setdefault("autocast", False)  # keep float64 offsets (see the module docstring)
        super().__init__(**kwargs)
        self.N, self.gridsize, self.object_big = int(N), int(gridsize), bool(object_big)
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
            obj = extract(merge(patches, offsets, self.gridsize), offsets, self.N)
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
        ``nll``, ``mae`` (and ``realspace`` when weighted) and ``loss``.
    """
    target = float(s0) * tf.cast(X, tf.float32)
    k = tf.square(target)
    out = {"nll": tf.reduce_mean(lam - k * tf.math.log(lam + LOG_EPS))}
    out["mae"] = tf.reduce_mean(tf.abs(tf.sqrt(lam + LOG_EPS) - target))
    total = tf.constant(0.0, tf.float32)
    if nll_weight != 0:
        total = total + float(nll_weight) * out["nll"]
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
