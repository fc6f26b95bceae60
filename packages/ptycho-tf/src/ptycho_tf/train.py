"""Training with ``model.fit`` (physics.md s5, docs/conventions.md s3.7).

Adam (``learning_rate``) + the plateau schedule of :mod:`ptycho_core.schedule` (halve after
2 epochs without a lower loss, floor 1e-4; optional early stop) on the epoch training loss
(the Poisson deviance plus any weighted terms), seeded (``keras.utils.set_random_seed``), Keras' progress bar, a CSV log
(``output_dir/training_log.csv``), atomic checkpoints (``output_dir/checkpoints/last.*``)
every ``checkpoint_every`` epochs, ``resume_from`` continuing to ``nepochs`` in total
(``initial_epoch``), NaN/inf detection (TerminateOnNaN plus a guard that raises
:class:`~ptycho_core.errors.TrainingDivergedError`), and ``tf.distribute.MirroredStrategy``
when several devices or ``strategy='mirrored'`` are requested.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from ptycho_core.config import TrainingConfig
from ptycho_core.contracts import GroupedData, ModelHandle, TrainResult
from ptycho_core.errors import BundleError, ConfigError, TrainingDivergedError
from ptycho_tf._env import keras, tf
from ptycho_tf.callbacks import (
    AtomicCheckpoint,
    DivergenceGuard,
    EpochHistory,
    PlateauCallback,
    continue_csv_log,
    read_checkpoint,
)
from ptycho_tf.infer import device_scope
from ptycho_tf.io import load_weights_file
from ptycho_tf.module import BACKEND_ID, PtychoModel, normalized_probe

LOG_FILE = "training_log.csv"
log = logging.getLogger(__name__)


def select_strategy(config: TrainingConfig) -> tf.distribute.Strategy | None:
    """``MirroredStrategy`` over ``config.devices`` devices when data parallelism is asked for, else ``None``.

    Data parallelism is asked for by ``devices > 1`` or ``strategy`` ``'mirrored'`` (or
    ``'ddp'``, PyTorch's name for the same thing). GPUs are used when visible and allowed by
    ``accelerator``, otherwise CPU devices (several logical CPUs need
    ``tf.config.set_logical_device_configuration`` before TensorFlow starts).
    """
    if config.num_nodes > 1:
        raise ConfigError(
            f"TrainingConfig.num_nodes: the tensorflow backend trains on one node (MirroredStrategy), got "
            f"{config.num_nodes}; set num_nodes = 1, or use the pytorch backend for multi-node DDP"
        )
    if config.devices == 1 and config.strategy == "auto":
        return None
    gpus = tf.config.list_logical_devices("GPU") if config.accelerator != "cpu" else []
    if config.accelerator == "gpu" and not gpus:
        raise ConfigError("accelerator: 'gpu' requested but TensorFlow sees no GPU; use 'cpu' or 'auto'")
    found = gpus or tf.config.list_logical_devices("CPU")
    kind = "GPU" if gpus else "CPU"
    if len(found) < config.devices:
        raise ConfigError(
            f"TrainingConfig.devices: {config.devices} requested but TensorFlow sees {len(found)} {kind} device(s) "
            f"({', '.join(d.name for d in found)}); lower devices, or for CPUs configure logical devices with "
            "tf.config.set_logical_device_configuration before TensorFlow starts"
        )
    return tf.distribute.MirroredStrategy(devices=[d.name for d in found[: config.devices]])


def _prepare_model(model: ModelHandle, data: GroupedData, config: TrainingConfig,
                   state: dict | None, weights_path: Path | None) -> PtychoModel:
    """A compiled model for ``config`` with the weights of ``model``, or of the checkpoint, and the initial probe/scale.

    Resuming loads the checkpoint's weights file into the compiled model with its optimizer
    built, which restores the network, the physics weights and the Adam state.
    """
    native = PtychoModel(model.model_config, config, seed=config.seed)
    native.copy_weights_from(model.native)
    lr = config.learning_rate if state is None else float(state["learning_rate"])
    native.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), jit_compile=bool(config.compile))
    # Adam's slot variables exist before fit: a tf.function that creates variables on its first
    # call is traced twice, and tracing this train step costs seconds
    native.optimizer.build(native.trainable_variables)
    if weights_path is not None:
        try:
            load_weights_file(native, weights_path)
        except BundleError as exc:
            raise ConfigError(f"resume_from: the checkpoint does not fit this model and TrainingConfig (were "
                              f"intensity_scale_trainable / probe_trainable changed?): {exc}") from None
        saved_steps = int(state.get("iterations", -1))
        if int(keras.ops.convert_to_numpy(native.optimizer.iterations)) != saved_steps:
            raise ConfigError(f"resume_from: {weights_path} did not restore the optimizer state "
                              f"(expected {saved_steps} steps)")
        native.optimizer.learning_rate = lr
        return native
    if not (config.probe_trainable and native.physics.probe_is_set()):
        native.physics.set_probe(normalized_probe(data.probe, model.model_config))
    previous = model.training_config
    if previous is None or previous.nphotons != config.nphotons:
        native.physics.intensity_scale.assign(native.s0)
    return native


def _dataset(data: GroupedData, config: TrainingConfig) -> tf.data.Dataset:
    """Shuffled (seeded, every epoch) batches of ``{'X', 'offsets'}`` (+ ``Y`` for the real-space term).

    A ``tf.data.Dataset`` rather than NumPy arrays because Keras casts float64 arrays to
    float32, and the offsets stay float64 (see :mod:`ptycho_tf.physics`).
    """
    if config.realspace_weight > 0 and data.Y is None:
        raise ConfigError("TrainingConfig.realspace_weight: > 0 needs ground-truth patches (GroupedData.Y is None); "
                          "set realspace_weight = 0 or provide an objectGuess")
    if data.is_lazy:
        return _lazy_dataset(data, config)
    x = {"X": tf.constant(data.X, tf.float32), "offsets": tf.constant(data.offsets, tf.float64)}
    elements = (x, tf.constant(data.Y, tf.complex64)) if config.realspace_weight > 0 else (x,)
    ds = tf.data.Dataset.from_tensor_slices(elements)
    ds = ds.shuffle(data.n_groups, seed=config.seed, reshuffle_each_iteration=True)
    return ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


def _lazy_dataset(data: GroupedData, config: TrainingConfig) -> tf.data.Dataset:
    """Like :func:`_dataset` for a lazy ``X`` (and ``Y``): group indices are shuffled, each batch is one read.

    The indices go through the same seeded ``shuffle`` as the in-memory elements (the order
    depends only on the count and the seed), so both give the same batches; the patterns of a
    batch are gathered by a ``tf.numpy_function`` calling ``X[rows]``.
    """
    N, C = data.N, data.channels
    with_y = config.realspace_weight > 0
    offsets = tf.constant(data.offsets, tf.float64)
    lazy_x, lazy_y = data.X, data.Y

    def read(rows):
        return (lazy_x[rows], lazy_y[rows]) if with_y else (lazy_x[rows],)

    def gather(rows):
        dtypes = [tf.float32, tf.complex64] if with_y else [tf.float32]
        out = tf.numpy_function(read, [rows], dtypes, stateful=False)
        x = {"X": tf.ensure_shape(out[0], [None, N, N, C]), "offsets": tf.gather(offsets, rows)}
        return (x, tf.ensure_shape(out[1], [None, N, N, C])) if with_y else (x,)

    ds = tf.data.Dataset.range(data.n_groups)
    ds = ds.shuffle(data.n_groups, seed=config.seed, reshuffle_each_iteration=True)
    return ds.batch(config.batch_size).map(gather).prefetch(tf.data.AUTOTUNE)


def _diverged_error(info: dict, checkpoint: AtomicCheckpoint, start_epoch: int) -> TrainingDivergedError:
    saved = checkpoint.last_saved_epoch
    where = checkpoint.directory / "last.weights.h5"
    if saved is not None:
        kept = f"the last good checkpoint ({where}, epoch {saved}) is kept"
    elif start_epoch > 0:
        kept = f"the checkpoint resumed from (epoch {start_epoch}) is kept unchanged"
    else:
        kept = "no checkpoint had been written yet"
    return TrainingDivergedError(
        f"training diverged: loss is {info['loss']} at epoch {info['epoch']}, batch {info['batch']}; "
        f"lower TrainingConfig.learning_rate (now {info['lr']:g}) or check the data for bad values "
        f"(NaN/inf amplitudes, wrong normalisation); {kept}"
    )


def train_model(model: ModelHandle, data: GroupedData, config: TrainingConfig, resume_from: Path | None = None,
                *, verbose: int | str = 1) -> TrainResult:
    """Train ``model`` on ``data`` for ``config.nepochs`` epochs in total (see the module docstring).

    Parameters
    ----------
    model : ModelHandle
        A tensorflow-backend model (built, loaded or trained before).
    data : GroupedData
        Training groups (``X``, ``offsets``, ``probe``; ``Y`` for the real-space term).
    config : TrainingConfig
        ``config.model`` must equal the model's config.
    resume_from : path, optional
        ``last.json``, ``last.weights.h5`` or the ``checkpoints`` folder of an earlier run.
    verbose : int or str
        Keras verbosity: 1 shows the progress bar, 0 is silent.

    Raises
    ------
    ptycho_core.errors.TrainingDivergedError
        The loss became NaN or infinite; the checkpoints written before are kept.
    ptycho_core.errors.ConfigError
        Data and model do not fit, the checkpoint is unusable, or devices are missing.
    """
    if config.model != model.model_config:
        raise ConfigError(f"TrainingConfig.model: {config.model} differs from the model's config "
                          f"{model.model_config}; train with the config the model was built with")
    data.check_fits(model.model_config)
    dataset = _dataset(data, config)
    state, weights_path = (None, None) if resume_from is None else read_checkpoint(resume_from)
    start_epoch = 0 if state is None else min(int(state["epoch"]), config.nepochs)
    t_start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    strategy = select_strategy(config)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with scope, device_scope(config.accelerator) if strategy is None else contextlib.nullcontext():
        native = _prepare_model(model, data, config, state, weights_path)
        history = EpochHistory(None if state is None else state["history"])
        guard = DivergenceGuard()
        plateau = PlateauCallback(config, None if state is None else state.get("plateau"))
        checkpoint = AtomicCheckpoint(out / "checkpoints", config.checkpoint_every, config.nepochs, history,
                                      plateau, guard, config.seed)
        if state is not None:  # the log ends where the checkpoint does; the resumed epochs are appended
            continue_csv_log(out / LOG_FILE, start_epoch, history.history)
        # the CSV row of an epoch is written before its checkpoint, so a checkpointed epoch always has its row
        callbacks = [history, guard, plateau,
                     keras.callbacks.CSVLogger(str(out / LOG_FILE), append=state is not None),
                     checkpoint, keras.callbacks.TerminateOnNaN()]
        t_fit = time.perf_counter()
        if start_epoch < config.nepochs:
            native.fit(dataset, epochs=config.nepochs, initial_epoch=start_epoch, callbacks=callbacks,
                       shuffle=False, verbose=verbose)  # the dataset shuffles itself (seeded)
        t_end = time.perf_counter()
    if guard.diverged is not None:
        raise _diverged_error(guard.diverged, checkpoint, start_epoch)
    if plateau.stopped_epoch is not None:
        log.info("%s", plateau.schedule.stop_message(plateau.stopped_epoch))
    epochs_run = history.epochs_run
    run_seconds = history.history["epoch_s"][-epochs_run:] if epochs_run else []
    fit_s = t_end - t_fit
    timings = {"total_s": t_end - t_start, "fit_s": fit_s,
               "epoch_s_mean": (sum(run_seconds) / epochs_run) if epochs_run else 0.0,
               "patterns_per_s": (epochs_run * data.n_groups * data.channels / fit_s) if epochs_run else 0.0}
    trained = ModelHandle(backend=BACKEND_ID, model_config=model.model_config, training_config=config,
                          native=native, metadata={"epochs": len(history.history["loss"])})
    return TrainResult(model=trained, history=history.history, epochs=len(history.history["loss"]),
                       timings=timings, checkpoint_dir=out / "checkpoints")
