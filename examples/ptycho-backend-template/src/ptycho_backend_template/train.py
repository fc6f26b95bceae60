"""Training of the template model: Adam on finite-difference gradients of the reference loss.

The model has ten (eleven with a trainable intensity scale) parameters, so the gradient is
estimated with forward differences, ``P + 1`` evaluations of
:func:`~ptycho_backend_template.model.physics_and_loss` per batch (the first one is the batch
loss itself). This is slow for large data but needs no autodiff framework and uses exactly the
reference physics and loss.

Per epoch the groups are shuffled with ``numpy.random.default_rng([seed, epoch])`` and visited
in batches of ``batch_size``; the epoch loss is the group-weighted mean of the batch losses
before each update. Checkpoints (``epoch{E:03d}.npz`` and ``last.npz``, written atomically with
``np.savez``, read with ``allow_pickle=False``) go to ``output_dir/checkpoints`` every
``checkpoint_every`` epochs and after the last one; they hold the float64 optimiser state, so a
resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ptycho_backend_template.io import validated_weights
from ptycho_backend_template.model import (
    BACKEND_ID,
    MODEL_PARAMETERS,
    TemplateModel,
    initial_weights,
    physics_and_loss,
)
from ptycho_core import reference
from ptycho_core.config import effective_nphotons
from ptycho_core.contracts import ModelHandle, TrainResult
from ptycho_core.errors import ConfigError, TrainingDivergedError
from ptycho_core.serialize import to_dict
from ptycho_core.training_log import atomic_write

if TYPE_CHECKING:
    from ptycho_core.config import ModelConfig, TrainingConfig
    from ptycho_core.contracts import GroupedData

CHECKPOINT_FORMAT = "ptycho-backend-template-checkpoint"
CHECKPOINT_VERSION = 1
LOG_SCALE = "log_intensity_scale"
FD_STEP = 1e-4
"""Step of the forward differences (the parameters are O(1) numbers; the loss is float64)."""
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
HISTORY_KEYS = ("loss", "intensity_scale", "lr", "epoch_s")
CHECKPOINT_KEYS = ("checkpoint.version", "checkpoint.epoch", "checkpoint.model_config", "checkpoint.trainable",
                   "checkpoint.theta", "adam.m", "adam.v", "adam.t", *(f"history.{key}" for key in HISTORY_KEYS))


def trainable_names(config: TrainingConfig) -> list[str]:
    """Names of the optimised quantities, in the order of the parameter vector."""
    return [*MODEL_PARAMETERS, *([LOG_SCALE] if config.intensity_scale_trainable else [])]


def _pack(weights: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    parts = []
    for name in names:
        if name == LOG_SCALE:
            parts.append(np.array([math.log(float(weights["intensity_scale"]))]))
        else:
            parts.append(np.asarray(weights[name], dtype=np.float64).ravel())
    return np.concatenate(parts)


def _unpack(theta: np.ndarray, names: list[str], fixed_scale: float) -> tuple[dict[str, np.ndarray], float]:
    params: dict[str, np.ndarray] = {}
    scale, i = fixed_scale, 0
    for name in names:
        if name == LOG_SCALE:
            scale, i = math.exp(theta[i]), i + 1
            continue
        shape = MODEL_PARAMETERS[name]
        size = int(np.prod(shape, dtype=np.int64))
        params[name] = theta[i:i + size].reshape(shape)
        i += size
    return params, scale


def _loss_and_gradient(theta: np.ndarray, names: list[str], fixed_scale: float, batch: GroupedData,
                       probe_n: np.ndarray, model_config: ModelConfig,
                       config: TrainingConfig) -> tuple[float, np.ndarray]:
    def loss_at(t: np.ndarray) -> float:
        params, scale = _unpack(t, names, fixed_scale)
        return physics_and_loss(params, scale, batch, probe_n, model_config, config)["loss"]

    loss = loss_at(theta)
    grad = np.empty_like(theta)
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = FD_STEP
        grad[i] = (loss_at(theta + step) - loss) / FD_STEP
    return loss, grad


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, write)


def _config_json(model_config: ModelConfig) -> str:
    return json.dumps(to_dict(model_config), sort_keys=True)


def write_checkpoint(directory: Path, *, epoch: int, weights: dict[str, np.ndarray], theta: np.ndarray,
                     names: list[str], adam: dict[str, np.ndarray], history: dict[str, list[float]],
                     model_config: ModelConfig) -> Path:
    """Write ``epoch{epoch:03d}.npz`` and ``last.npz`` into ``directory``; return the epoch file."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {name: np.asarray(value) for name, value in weights.items()}
    arrays.update({
        "checkpoint.format": np.array(CHECKPOINT_FORMAT),
        "checkpoint.version": np.array(CHECKPOINT_VERSION, dtype=np.int64),
        "checkpoint.epoch": np.array(epoch, dtype=np.int64),
        "checkpoint.model_config": np.array(_config_json(model_config)),
        "checkpoint.trainable": np.array(names),
        "checkpoint.theta": theta.astype(np.float64),
        "adam.m": adam["m"], "adam.v": adam["v"], "adam.t": np.array(adam["t"], dtype=np.int64),
    })
    arrays.update({f"history.{key}": np.asarray(history[key], dtype=np.float64) for key in HISTORY_KEYS})
    path = directory / f"epoch{epoch:03d}.npz"
    _atomic_savez(path, arrays)
    _atomic_savez(directory / "last.npz", arrays)
    return path


def read_checkpoint(path: Path, names: list[str], model_config: ModelConfig) -> dict:
    """Read a checkpoint written by :func:`write_checkpoint` for the same model and trainable set.

    ``path`` is a checkpoint file or a checkpoints folder (then its ``last.npz``; a bare
    ``ptycho train --resume`` passes the folder for backends the core does not know).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.npz"
    if not path.is_file():
        raise ConfigError(f"resume_from: checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # not a zip, a truncated file, or pickled objects
        raise ConfigError(f"resume_from: {path} is not a readable {BACKEND_ID} checkpoint (.npz): {exc}") from None
    if str(arrays.get("checkpoint.format", "")) != CHECKPOINT_FORMAT:
        raise ConfigError(f"resume_from: {path} is not a {BACKEND_ID} checkpoint ('checkpoint.format' "
                          f"{CHECKPOINT_FORMAT!r} expected)")
    missing = [key for key in CHECKPOINT_KEYS if key not in arrays]
    if missing or int(arrays["checkpoint.version"]) != CHECKPOINT_VERSION:
        raise ConfigError(f"resume_from: {path} is not a version {CHECKPOINT_VERSION} {BACKEND_ID} checkpoint "
                          f"(missing {missing})" if missing else
                          f"resume_from: {path} has checkpoint version {int(arrays['checkpoint.version'])}, "
                          f"this {BACKEND_ID} reads version {CHECKPOINT_VERSION}")
    if str(arrays["checkpoint.model_config"]) != _config_json(model_config):
        raise ConfigError(f"resume_from: {path} was written for model config {arrays['checkpoint.model_config']}, "
                          f"not {_config_json(model_config)}")
    saved = [str(n) for n in arrays["checkpoint.trainable"]]
    if saved != names:
        raise ConfigError(f"resume_from: {path} optimised {saved}, this run optimises {names} "
                          "(TrainingConfig.intensity_scale_trainable changed?)")
    size = _pack(initial_weights(model_config, None), names).size
    for key in ("checkpoint.theta", "adam.m", "adam.v"):
        if arrays[key].shape != (size,) or not np.isfinite(arrays[key]).all():
            raise ConfigError(f"resume_from: {path}: {key!r} must hold {size} finite numbers, "
                              f"got shape {arrays[key].shape}")
    return arrays


def _adam_step(theta: np.ndarray, grad: np.ndarray, adam: dict, lr: float) -> np.ndarray:
    b1, b2 = ADAM_BETAS
    adam["t"] += 1
    adam["m"] = b1 * adam["m"] + (1 - b1) * grad
    adam["v"] = b2 * adam["v"] + (1 - b2) * grad * grad
    m_hat = adam["m"] / (1 - b1 ** adam["t"])
    v_hat = adam["v"] / (1 - b2 ** adam["t"])
    return theta - lr * m_hat / (np.sqrt(v_hat) + ADAM_EPS)


def _diverged(loss: float, epoch: int, batch: int, lr: float) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"training diverged: loss or gradient is {loss} at epoch {epoch + 1}, batch {batch}; lower "
        f"TrainingConfig.learning_rate (now {lr:g}) or check the data for bad values; the last good checkpoint "
        "is kept under output_dir/checkpoints"
    )


def train_model(model: ModelHandle, data: GroupedData, config: TrainingConfig,
                resume_from: Path | None = None) -> TrainResult:
    """Train ``model`` on ``data`` until ``config.nepochs`` epochs in total (see the module docstring).

    Raises
    ------
    ptycho_core.errors.ConfigError
        The config differs from the model's, the data do not fit, the probe is asked to be
        trainable, or ``resume_from`` is not a checkpoint of this model.
    ptycho_core.errors.TrainingDivergedError
        The loss or its gradient became NaN or infinite (the checkpoints written so far are kept).
    """
    mc = model.model_config
    if config.model != mc:
        raise ConfigError(f"TrainingConfig.model: {config.model} differs from the model's config {mc}; "
                          "train with the config the model was built with")
    data.check_fits(mc)
    if config.probe_trainable:
        raise ConfigError(f"TrainingConfig.probe_trainable: the {BACKEND_ID} backend keeps the probe fixed; "
                          "set probe_trainable = false")
    t_start = time.perf_counter()
    native = model.native.copy()
    names = trainable_names(config)
    checkpoints = Path(config.output_dir) / "checkpoints"
    if resume_from is None:
        native.set_probe(reference.normalize_probe(data.probe, mc.probe_scale, mc.probe_mask,
                                                   mc.gaussian_smoothing_sigma))
        previous = model.training_config
        if previous is None or previous.nphotons != config.nphotons:
            s0 = reference.physics_scale(effective_nphotons(config), mc.N)
            native.weights["intensity_scale"] = np.float32(s0).reshape(())
        theta = _pack(native.weights, names)
        adam = {"m": np.zeros_like(theta), "v": np.zeros_like(theta), "t": 0}
        history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
        start = 0
    else:
        arrays = read_checkpoint(resume_from, names, mc)
        native = TemplateModel(validated_weights(arrays, mc.N, f"resume_from: {resume_from}", ConfigError), mc.N)
        theta = np.array(arrays["checkpoint.theta"], dtype=np.float64)
        adam = {"m": np.array(arrays["adam.m"]), "v": np.array(arrays["adam.v"]), "t": int(arrays["adam.t"])}
        history = {key: [float(v) for v in arrays[f"history.{key}"]] for key in HISTORY_KEYS}
        start = int(arrays["checkpoint.epoch"])
    probe_n = native.probe
    fixed_scale = native.intensity_scale
    lr = float(config.learning_rate)
    B = data.n_groups
    t_fit = time.perf_counter()
    for epoch in range(start, config.nepochs):
        t0 = time.perf_counter()
        order = np.random.default_rng([config.seed, epoch]).permutation(B)
        total = 0.0
        for i, lo in enumerate(range(0, B, config.batch_size)):
            batch = data.batch(order[lo:lo + config.batch_size])
            loss, grad = _loss_and_gradient(theta, names, fixed_scale, batch, probe_n, mc, config)
            if not (math.isfinite(loss) and np.isfinite(grad).all()):
                raise _diverged(loss, epoch, i, lr)
            total += loss * batch.n_groups
            theta = _adam_step(theta, grad, adam, lr)
        params, scale = _unpack(theta, names, fixed_scale)
        native.weights.update({name: np.asarray(value, dtype=np.float32) for name, value in params.items()})
        native.weights["intensity_scale"] = np.float32(scale).reshape(())
        history["loss"].append(total / B)
        history["intensity_scale"].append(float(native.weights["intensity_scale"]))
        history["lr"].append(lr)
        history["epoch_s"].append(time.perf_counter() - t0)
        done = epoch + 1
        if done % config.checkpoint_every == 0 or done == config.nepochs:
            write_checkpoint(checkpoints, epoch=done, weights=native.weights, theta=theta, names=names, adam=adam,
                             history=history, model_config=mc)
    t_end = time.perf_counter()
    epochs = max(start, config.nepochs)
    run = history["epoch_s"][start:]
    trained = ModelHandle(backend=BACKEND_ID, model_config=mc, training_config=config, native=native,
                          metadata={"epochs": epochs})
    timings = {"total_s": t_end - t_start, "fit_s": t_end - t_fit,
               "epoch_s_mean": (sum(run) / len(run)) if run else 0.0,
               "patterns_per_s": (len(run) * B * data.channels / (t_end - t_fit)) if run else 0.0}
    return TrainResult(model=trained, history=history, epochs=epochs, timings=timings, checkpoint_dir=checkpoints)
