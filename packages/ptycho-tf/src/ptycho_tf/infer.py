"""Batched prediction of object patches (inference mode, no gradients) and the single-batch forward pass."""

from __future__ import annotations

import contextlib
import time

import numpy as np

from ptycho_core.config import InferenceConfig, TrainingConfig
from ptycho_core.contracts import ForwardOutput, GroupedData, InferenceResult, ModelHandle
from ptycho_core.errors import ConfigError
from ptycho_tf._env import tf
from ptycho_tf.module import BACKEND_ID, PtychoModel, check_data, normalized_probe


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


def _predict_fn(native: PtychoModel):
    """A ``tf.function`` (traced once per model and input shape) mapping X to (real, imag) patches."""
    fn = getattr(native, "_ptycho_predict_fn", None)
    if fn is None:
        N, C = native.model_config.N, native.model_config.channels

        @tf.function(input_signature=[tf.TensorSpec([None, N, N, C], tf.float32)], reduce_retracing=True)
        def fn(X):
            return native.patches(X, training=False)

        native._ptycho_predict_fn = fn
    return fn


def predict_patches(native: PtychoModel, X: np.ndarray, batch_size: int) -> np.ndarray:
    """Network output for ``X`` (B, N, N, C) in batches of ``batch_size``: (B, N, N, C) complex64 NumPy."""
    fn = _predict_fn(native)
    out = [fn(tf.constant(X[start:start + batch_size], tf.float32)).numpy()
           for start in range(0, X.shape[0], batch_size)]
    if not out:
        N, C = native.model_config.N, native.model_config.channels
        return np.zeros((0, N, N, C), np.complex64)
    return np.concatenate(out).astype(np.complex64, copy=False)


def infer_model(model: ModelHandle, data: GroupedData, config: InferenceConfig) -> InferenceResult:
    """Object patches for every group of ``data``, flattened group-major (patch ``b*C + c``).

    Returns
    -------
    InferenceResult
        ``patches`` (B*C, N, N) complex64, ``positions`` (B*C, 2) = centroid + offset (x, y),
        ``metadata`` with the backend id, the accelerator and the time taken.
    """
    native: PtychoModel = model.native
    check_data(model.model_config, data)
    t0 = time.perf_counter()
    with device_scope(config.accelerator):
        grouped = predict_patches(native, data.X, config.batch_size)
    seconds = time.perf_counter() - t0
    N = model.model_config.N
    patches = np.moveaxis(grouped, -1, 1).reshape(-1, N, N)  # (B, C, N, N) -> group-major
    return InferenceResult(
        patches=patches,
        positions=data.positions.reshape(-1, 2),
        metadata={"backend": BACKEND_ID, "accelerator": config.accelerator, "seconds": seconds},
    )


def forward_model(model: ModelHandle, data: GroupedData, config: TrainingConfig) -> ForwardOutput:
    """Network + physics + loss for all of ``data`` as one batch (inference mode).

    The probe is the model's when it holds one (trained, loaded or imported), otherwise
    ``reference.normalize_probe(data.probe, ...)``; the intensity scale is the model's; the
    loss uses ``s0`` from ``config.nphotons`` and the term weights of ``config``.
    """
    native: PtychoModel = model.native
    check_data(model.model_config, data)
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
        terms = losses(lam, X, physics_scale(config.nphotons, model.model_config.N), patches=patches, Y=Y,
                       nll_weight=config.nll_weight, mae_weight=config.mae_weight,
                       realspace_weight=config.realspace_weight)
    return ForwardOutput(patches=patches.numpy(), amplitude=tf.sqrt(lam).numpy(), loss=float(terms["loss"]))
