"""Batched prediction of object patches (inference mode, no gradients) and the single-batch forward pass."""

from __future__ import annotations

import contextlib
import time

import numpy as np

from ptycho_core.config import InferenceConfig, TrainingConfig, effective_nphotons
from ptycho_core.contracts import ForwardOutput, GroupedData, InferenceResult, ModelHandle
from ptycho_core.errors import ConfigError
from ptycho_tf._env import tf
from ptycho_tf.module import BACKEND_ID, PtychoModel, normalized_probe
from ptycho_tf.physics import centre_crop, merge


def device_scope(accelerator: str):
    """A ``tf.device`` context for ``'cpu'``/``'gpu'``; ``'auto'`` keeps TensorFlow's placement."""
    if accelerator == "cpu":
        return tf.device("/CPU:0")
    if accelerator == "gpu":
        if not tf.config.list_logical_devices("GPU"):
            raise ConfigError("accelerator: 'gpu' requested but TensorFlow sees no GPU; use 'cpu' or 'auto' "
                              "(the tensorflow-cpu wheel has no GPU support; install tensorflow[and-cuda])")
        return tf.device("/GPU:0")
    return contextlib.nullcontext()


def _predict_fn(native: PtychoModel, merged: bool = False):
    """A ``tf.function`` (traced once per model and input shape) mapping X to complex patches.

    ``merged``: the function takes ``(X, offsets)`` and returns each group's merged object
    (physics.md s5 steps 1-2, with the model's ``window_side``), (B, N, N).
    """
    attr = "_ptycho_predict_merged_fn" if merged else "_ptycho_predict_fn"
    fn = getattr(native, attr, None)
    if fn is None:
        N, C = native.model_config.N, native.model_config.channels
        x_spec = tf.TensorSpec([None, N, N, C], tf.float32)
        if merged:
            gridsize, window = native.model_config.gridsize, native.model_config.window_side

            @tf.function(input_signature=[x_spec, tf.TensorSpec([None, C, 2], tf.float64)], reduce_retracing=True)
            def fn(X, offsets):
                return centre_crop(merge(native.patches(X, training=False), offsets, gridsize, window), N)
        else:
            @tf.function(input_signature=[x_spec], reduce_retracing=True)
            def fn(X):
                return native.patches(X, training=False)

        setattr(native, attr, fn)
    return fn


def predict_patches(native: PtychoModel, X: np.ndarray, batch_size: int,
                    offsets: np.ndarray | None = None) -> np.ndarray:
    """Network output for ``X`` (B, N, N, C) in batches of ``batch_size``: (B, N, N, C) complex64 NumPy.

    With ``offsets`` (B, C, 2): each group's merged object instead, (B, N, N, 1).
    """
    N, C = native.model_config.N, native.model_config.channels
    if offsets is None:
        fn = _predict_fn(native)
        out = [fn(tf.constant(X[start:start + batch_size], tf.float32)).numpy()
               for start in range(0, X.shape[0], batch_size)]
    else:
        fn = _predict_fn(native, merged=True)
        out = [fn(tf.constant(X[start:start + batch_size], tf.float32),
                  tf.constant(offsets[start:start + batch_size], tf.float64)).numpy()[..., None]
               for start in range(0, X.shape[0], batch_size)]
    if not out:
        return np.zeros((0, N, N, C if offsets is None else 1), np.complex64)
    return np.concatenate(out).astype(np.complex64, copy=False)


def infer_model(model: ModelHandle, data: GroupedData, config: InferenceConfig) -> InferenceResult:
    """What to stitch for every group of ``data`` (physics.md s6).

    Returns
    -------
    InferenceResult
        With ``model_config.stitches_group_object`` (gridsize > 1, ``object_big``): one merged
        group object per group, ``patches`` (B, N, N) at ``positions`` = the group centroids.
        Otherwise the network's patches flattened group-major (patch ``b*C + c``), (B*C, N, N)
        at centroid + offset. ``metadata`` holds the backend id, the accelerator and the time taken.
    """
    native: PtychoModel = model.native
    mc = model.model_config
    data.check_fits(mc)
    merged = mc.stitches_group_object
    t0 = time.perf_counter()
    with device_scope(config.accelerator):
        grouped = predict_patches(native, data.X, config.batch_size, data.offsets if merged else None)
    seconds = time.perf_counter() - t0
    patches = np.moveaxis(grouped, -1, 1).reshape(-1, mc.N, mc.N)  # (B, C, N, N) -> group-major
    return InferenceResult(
        patches=patches,
        positions=data.centroids if merged else data.positions.reshape(-1, 2),
        metadata={"backend": BACKEND_ID, "accelerator": config.accelerator, "seconds": seconds},
    )


def forward_model(model: ModelHandle, data: GroupedData, config: TrainingConfig) -> ForwardOutput:
    """Network + physics + loss for all of ``data`` as one batch (inference mode).

    The probe is the model's when it holds one (trained, loaded or imported), otherwise
    ``reference.normalize_probe(data.probe, ...)``; the intensity scale is the model's; the
    loss uses ``s0`` from ``config.nphotons`` and the term weights of ``config``.
    """
    native: PtychoModel = model.native
    data.check_fits(model.model_config)
    if config.realspace_weight != 0 and data.Y is None:
        raise ConfigError("TrainingConfig.realspace_weight: > 0 needs ground-truth patches (GroupedData.Y is None); "
                          "set realspace_weight = 0 or provide an objectGuess")
    from ptycho_tf.physics import losses, physics_scale

    probe = None
    if not native.physics.probe_is_set():
        probe = tf.constant(normalized_probe(data.probe, model.model_config))
    with device_scope(config.accelerator):
        X = tf.constant(data.X, tf.float32)
        offsets = tf.constant(data.offsets, tf.float64)
        patches = native.patches(X, training=False)
        lam, _ = native.physics(patches, offsets, probe)
        Y = None if data.Y is None or config.realspace_weight == 0 else tf.constant(data.Y, tf.complex64)
        terms = losses(lam, X, physics_scale(effective_nphotons(config), model.model_config.N), patches=patches, Y=Y,
                       nll_weight=config.nll_weight, mae_weight=config.mae_weight,
                       realspace_weight=config.realspace_weight)
    return ForwardOutput(patches=patches.numpy(), amplitude=tf.sqrt(lam).numpy(), loss=float(terms["loss"]))
