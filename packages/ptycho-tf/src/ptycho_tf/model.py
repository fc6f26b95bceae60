"""The PtychoPINN network (physics.md s4, docs/conventions.md s5) as a Keras 3 functional model.

Input ``X`` (B, N, N, C) float32 amplitudes; outputs ``[amplitude, phase]``, each
(B, N, N, C) float32. The complex patch ``A * exp(i * phi)`` is formed by the physics
layer and by inference (:func:`ptycho_tf.physics.to_complex`), so no complex tensor crosses
a Keras layer boundary. Every convolution is named by its canonical weight prefix
(``encoder.0.conv1``, ``amp.big.out``, ...; docs/conventions.md s6), so the canonical
export is a lookup by layer name.
"""

from __future__ import annotations

import math

import numpy as np

from ptycho_core.architecture import PROBE_BIG_BORDER as BIG_BORDER
from ptycho_core.architecture import decoder_filters, encoder_filters, probe_big_filters
from ptycho_core.config import ALLOWED_N, ModelConfig
from ptycho_core.errors import ConfigError
from ptycho_tf._env import keras


@keras.saving.register_keras_serializable(package="ptycho_tf")
class PiTanh(keras.layers.Layer):
    """Phase activation ``pi * tanh(x)``."""

    def call(self, x):
        return math.pi * keras.ops.tanh(x)


@keras.saving.register_keras_serializable(package="ptycho_tf")
class OuterMask(keras.layers.Layer):
    """Multiply by a mask that is 0 in the central ``[N/4, 3N/4)`` square and 1 elsewhere."""

    def __init__(self, N: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.N = int(N)
        mask = np.ones((self.N, self.N, 1), dtype=np.float32)
        mask[self.N // 4: 3 * self.N // 4, self.N // 4: 3 * self.N // 4] = 0.0
        self._mask = mask

    def call(self, x):
        return x * keras.ops.convert_to_tensor(self._mask, dtype=x.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "N": self.N}


class _Seeds:
    """Deterministic per-layer initializer seeds derived from one base seed."""

    def __init__(self, base: int | None) -> None:
        self.base, self.count = base, 0

    def next(self) -> int | None:
        if self.base is None:
            return None
        self.count += 1
        return (int(self.base) * 1009 + self.count) % (2**31 - 1)


def _conv(x, filters: int, name: str, seeds: _Seeds, activation: str | None = None):
    return keras.layers.Conv2D(
        filters, 3, padding="same", activation=activation, use_bias=True, name=name,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seeds.next()), bias_initializer="zeros",
    )(x)


def _down(x, filters: int, prefix: str, seeds: _Seeds):
    x = _conv(x, filters, f"{prefix}.conv1", seeds, "relu")
    x = _conv(x, filters, f"{prefix}.conv2", seeds, "relu")
    return keras.layers.MaxPooling2D(2, name=f"{prefix}.pool")(x)


def _up(x, filters: int, prefix: str, seeds: _Seeds):
    x = _conv(x, filters, f"{prefix}.conv1", seeds, "relu")
    x = _conv(x, filters, f"{prefix}.conv2", seeds, "relu")
    return keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{prefix}.upsample")(x)


def _activation(head: str, amp_activation: str):
    if head == "phase":
        return PiTanh(name="phase.activation")
    return keras.layers.Activation(amp_activation, name="amp.activation")


def _decoder(code, head: str, mc: ModelConfig, seeds: _Seeds):
    nfs, N, C = mc.n_filters_scale, mc.N, mc.channels
    x = code
    for i, f in enumerate(decoder_filters(N, nfs)):
        x = _up(x, f, f"{head}.{i}", seeds)
    if not mc.pad_object:
        x = _up(x, 32 * nfs, f"{head}.up", seeds)
        return _activation(head, mc.amp_activation)(_conv(x, C, f"{head}.out", seeds))
    centre = _conv(x[..., :-BIG_BORDER], C, f"{head}.out", seeds)
    centre = _activation(head, mc.amp_activation)(centre)
    y = keras.layers.ZeroPadding2D(N // 4, name=f"{head}.pad")(centre)
    # not at gridsize > 1 with object_big and the N/2 window: the masked merge zeroes it (physics.md s4);
    # with a wider window (ModelConfig.window_side > N/2) it fills the ring outside N/2 that the window keeps
    if mc.uses_probe_big:
        big = _up(x[..., -BIG_BORDER:], probe_big_filters(N, nfs), f"{head}.big", seeds)
        big = _conv(big, C, f"{head}.big.out", seeds, "swish")
        big = OuterMask(N, name=f"{head}.big.mask")(big)
        y = keras.layers.Add(name=f"{head}.combine")([y, big])
    return y


def build_network(model_config: ModelConfig, seed: int | None = None) -> keras.Model:
    """Build the encoder + amplitude/phase decoders for ``model_config``.

    Parameters
    ----------
    model_config : ModelConfig
        N (64, 128 or 256), gridsize, n_filters_scale, amp_activation, pad_object, probe_big (the
        outer branch is built only where ``model_config.uses_probe_big``).
    seed : int, optional
        Base seed of the Glorot-uniform kernel initialisers (deterministic weights).

    Returns
    -------
    keras.Model
        Functional model ``X (B, N, N, C) -> [amplitude, phase]`` (float32, same shape).
    """
    mc = model_config
    if mc.N not in ALLOWED_N:
        raise ConfigError(f"ModelConfig.N: expected one of {ALLOWED_N}, got {mc.N!r}")
    seeds = _Seeds(seed)
    inp = keras.Input(shape=(mc.N, mc.N, mc.channels), dtype="float32", name="X")
    x = inp
    for i, f in enumerate(encoder_filters(mc.N, mc.n_filters_scale)):
        x = _down(x, f, f"encoder.{i}", seeds)
    amp = _decoder(x, "amp", mc, seeds)
    phase = _decoder(x, "phase", mc, seeds)
    return keras.Model(inp, [amp, phase], name="ptycho_net")


def canonical_conv_names(model_config: ModelConfig) -> list[str]:
    """Canonical prefixes of every convolution (docs/conventions.md s6), in a fixed order.

    The ``{amp,phase}.big.*`` names appear only where ``model_config.uses_probe_big``.
    """
    mc = model_config
    names = []
    for i in range(len(encoder_filters(mc.N, mc.n_filters_scale))):
        names += [f"encoder.{i}.conv1", f"encoder.{i}.conv2"]
    for head in ("amp", "phase"):
        for i in range(len(decoder_filters(mc.N, mc.n_filters_scale))):
            names += [f"{head}.{i}.conv1", f"{head}.{i}.conv2"]
        if mc.pad_object:
            names.append(f"{head}.out")
            if mc.uses_probe_big:
                names += [f"{head}.big.conv1", f"{head}.big.conv2", f"{head}.big.out"]
        else:
            names += [f"{head}.up.conv1", f"{head}.up.conv2", f"{head}.out"]
    return names


def count_trainable(model: keras.Model) -> int:
    """Number of trainable scalar parameters of ``model``."""
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))
