"""Training with a Lightning Trainer (physics.md s5, docs/conventions.md s3.7).

Fused Adam + the plateau schedule of ptycho_core.schedule (PlateauCallback) on the epoch
training loss, seeded, Lightning's TQDM progress bar, a CSV log under ``output_dir/logs``,
checkpoints (``last.ckpt`` and the best one) under ``output_dir/checkpoints`` every
``checkpoint_every`` epochs written atomically, ``resume_from`` continuing to ``nepochs`` in
total, and NaN/inf detection.

Crash safety: every checkpoint file goes through :class:`AtomicCheckpointIO` (temporary file,
fsync, ``os.replace``), so a process killed at any moment leaves the previous ``last.ckpt``
intact; ``last.ckpt`` is always that name (no ``last-v1.ckpt`` when the folder has one).
Weights that are no longer finite raise :class:`~ptycho_core.errors.TrainingDivergedError`
before the epoch's checkpoint is written. The CSV log is flushed every epoch; a resumed run
appends to the newest ``logs/version_*/metrics.csv``, cut back to the checkpoint's epochs.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ptycho_core import training_log
from ptycho_core.config import TrainingConfig
from ptycho_core.contracts import GroupedData, ModelHandle, TrainResult
from ptycho_core.errors import ConfigError, TrainingDivergedError
from ptycho_core.schedule import PlateauSchedule
from ptycho_torch.module import PtychoLightningModule
from ptycho_torch.pinn import config_to_dict, grouped_tensors, normalized_probe
from ptycho_torch.progress import ProgressBar
from ptycho_torch.runtime import atomic_torch_save, fit_threads, resolve_accelerator

__all__ = ["AtomicCheckpointIO", "History", "PlateauCallback", "PtychoLightningModule", "atomic_torch_save",
           "make_trainer", "resolve_accelerator", "train_model"]

BACKEND_ID = "pytorch"
log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO writing through :func:`atomic_torch_save` (local paths)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, path)


class History(Callback):
    """Per-epoch history (loss, deviance, misfit, intensity scale, learning rate, seconds), kept in checkpoints."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {key: [] for key in training_log.HISTORY_KEYS}
        self.epochs_run = 0
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path and trainer.is_global_zero and isinstance(trainer.logger, CSVLogger):
            continue_csv_log(Path(trainer.logger.log_dir) / "metrics.csv", trainer.current_epoch, self.history)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        bad = [name for name, p in pl_module.state_dict().items()
               if p.is_floating_point() or p.is_complex()
               if not bool(torch.isfinite(p).all())]
        if bad:  # raised before ModelCheckpoint runs, so the last good checkpoint stays
            raise TrainingDivergedError(
                f"training diverged: the weights {', '.join(bad[:3])} became NaN/inf in epoch "
                f"{trainer.current_epoch + 1}; lower TrainingConfig.learning_rate or check the data for bad values; "
                "the last good checkpoint is kept under output_dir/checkpoints")
        metrics = trainer.callback_metrics
        self.history["loss"].append(float(metrics["train_loss"]))
        self.history["deviance"].append(float(metrics["deviance"]))
        self.history["misfit"].append(float(metrics["misfit"]))
        self.history["intensity_scale"].append(float(pl_module.physics.intensity_scale.detach()))
        self.history["lr"].append(float(trainer.optimizers[0].param_groups[0]["lr"]))
        self.history["epoch_s"].append(time.perf_counter() - self._t0)
        self.epochs_run += 1

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: [float(v) for v in vals] for k, vals in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: list(v) for k, v in state_dict["history"].items()}


class PlateauCallback(Callback):
    """The learning-rate schedule and early stop of :mod:`ptycho_core.schedule` on the epoch's ``train_loss``.

    Runs after :class:`History` (which records the rate the epoch used) and before the
    checkpoint, so a checkpoint holds the rate of the next epoch and the schedule's state.
    """

    def __init__(self, config: TrainingConfig) -> None:
        self.schedule = PlateauSchedule.from_state(None, config.learning_rate, config.early_stop_patience,
                                                   config.max_train_seconds)
        self.stopped_epoch: int | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        lr = self.schedule.step(float(trainer.callback_metrics["train_loss"]))
        for group in trainer.optimizers[0].param_groups:
            group["lr"] = lr
        if self.schedule.stop and self.stopped_epoch is None:
            self.stopped_epoch = trainer.current_epoch + 1
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule.state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        started = self.schedule.started  # the time budget counts from this run's start
        self.schedule = PlateauSchedule.from_state(state_dict.get("schedule"), self.schedule.lr,
                                                   self.schedule.stop_patience, self.schedule.max_seconds)
        self.schedule.started = started


def continue_csv_log(path: Path, start_epoch: int, history: dict[str, list[float]]) -> None:
    """Make Lightning's CSV log of an interrupted run end at ``start_epoch`` completed epochs, before appending.

    :func:`ptycho_core.training_log.continue_csv_log` with Lightning's columns (``step`` of
    rebuilt rows left empty).
    """
    training_log.continue_csv_log(path, start_epoch, history,
                                  fields=["deviance", "epoch", "intensity_scale", "misfit", "step", "train_loss"],
                                  columns={"train_loss": "loss", "intensity_scale": "intensity_scale",
                                           "deviance": "deviance", "misfit": "misfit"})


def _log_version(out: Path, resume: bool) -> int | None:
    """The newest ``logs/version_N`` number when resuming (its CSV is continued), else ``None`` (a new one)."""
    if not resume:
        return None
    numbers = [int(d.name[len("version_"):]) for d in (out / "logs").glob("version_*")
               if d.is_dir() and d.name[len("version_"):].isdigit()]
    return max(numbers) if numbers else None


def _strategy(config: TrainingConfig, accelerator: str) -> Any:
    if config.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend="gloo" if accelerator == "cpu" else None,
                           checkpoint_io=AtomicCheckpointIO())
    return "auto"  # 'mirrored' is TensorFlow's name for data-parallel training; here it is Lightning's default


def make_trainer(config: TrainingConfig, history: History, *, enable_progress_bar: bool = True,
                 resume: bool = False, schedule: PlateauCallback | None = None) -> L.Trainer:
    """A Lightning Trainer configured from ``config`` (see the module docstring).

    ``resume=True`` continues the newest CSV log under ``output_dir/logs`` instead of starting a new one.
    """
    accelerator = resolve_accelerator(config.accelerator)
    out = Path(config.output_dir)
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="epoch{epoch:03d}", auto_insert_metric_name=False,
        monitor="train_loss", mode="min", save_top_k=1, save_last=True,
        every_n_epochs=config.checkpoint_every, save_on_train_epoch_end=True, enable_version_counter=False,
    )
    strategy = _strategy(config, accelerator)
    return L.Trainer(
        accelerator=accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=strategy,
        max_epochs=config.nepochs,
        logger=CSVLogger(str(out), name="logs", version=_log_version(out, resume), flush_logs_every_n_steps=1),
        callbacks=[history, schedule if schedule is not None else PlateauCallback(config), checkpoint,
                   *([ProgressBar()] if enable_progress_bar else [])],
        plugins=None if config.strategy == "ddp" else [AtomicCheckpointIO()],
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
        deterministic=True if accelerator == "cpu" else "warn",
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )


def cpp_compiler_available() -> bool:
    """Whether Inductor can find a C++ compiler: ``CXX`` set, or ``g++`` / ``clang++`` on PATH."""
    return bool(os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++"))


def check_compiler(config: TrainingConfig) -> None:
    """``TrainingConfig.compile`` on a CPU needs a C++ compiler (Inductor builds its kernels with it)."""
    if not config.compile or resolve_accelerator(config.accelerator) != "cpu":
        return
    if not cpp_compiler_available():
        raise ConfigError("TrainingConfig.compile: torch.compile on a CPU needs a C++ compiler and none was found "
                          "(no g++ or clang++ on PATH, CXX not set); install one or train with compile = false")


def _prepare_module(model: ModelHandle, data: GroupedData, config: TrainingConfig,
                    resume_from: Path | None) -> PtychoLightningModule:
    """A module built for ``config`` carrying the weights of ``model`` and the initial probe/scale."""
    module = PtychoLightningModule(model_config=config_to_dict(model.model_config),
                                   training_config=config_to_dict(config))
    module.load_state_dict(model.native.state_dict())
    module.set_compiled(config.compile)
    if resume_from is None:
        if not (config.probe_trainable and module.physics.probe_is_set()):
            module.physics.set_probe(normalized_probe(data.probe, model.model_config))
        previous = model.training_config
        if previous is None or previous.nphotons != config.nphotons:
            with torch.no_grad():
                module.physics.intensity_scale.fill_(module.s0)
    return module


class LazyGroupsDataset(Dataset):
    """Map-style dataset over the groups of a lazy ``GroupedData``: a batch is one read of ``X[rows]``.

    ``__getitems__`` (which the DataLoader calls with the sampler's indices of a whole batch)
    gathers the batch from the lazy source and returns the channels-first tensors that
    :func:`~ptycho_torch.pinn.grouped_tensors` gives for in-memory data, so with the same
    sampler the batches are the same; collate with :func:`batch_as_is`.
    """

    def __init__(self, data: GroupedData, with_y: bool = False) -> None:
        self.X, self.Y = data.X, data.Y if with_y else None
        self.offsets = torch.from_numpy(np.ascontiguousarray(data.offsets, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.X)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        rows = np.asarray(indices, dtype=np.int64)
        out = (_channels_first(self.X[rows], torch.float32), self.offsets[torch.from_numpy(rows)])
        if self.Y is not None:
            out = (*out, _channels_first(self.Y[rows], torch.complex64))
        return out

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[0] for t in self.__getitems__([index]))


def _channels_first(batch: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """(b, N, N, C) NumPy -> (b, C, N, N) tensor with the standard strides of a fresh tensor.

    (A transposed NumPy array with C = 1 is contiguous but keeps odd strides on the size-1
    axis, which can send convolutions down another kernel and change the rounding.)
    """
    src = torch.from_numpy(np.asarray(batch)).permute(0, 3, 1, 2)
    return torch.empty(src.shape, dtype=dtype).copy_(src)


def batch_as_is(batch: Any) -> Any:
    """``collate_fn`` for :class:`LazyGroupsDataset`, whose ``__getitems__`` already returns a batch."""
    return batch


def _loader(data: GroupedData, config: TrainingConfig) -> DataLoader:
    with_y = data.Y is not None and config.realspace_weight > 0
    if config.realspace_weight > 0 and data.Y is None:
        raise ConfigError("TrainingConfig.realspace_weight: > 0 needs ground-truth patches (GroupedData.Y is None); "
                          "set realspace_weight = 0 or provide an objectGuess")
    gen = torch.Generator().manual_seed(config.seed)
    if data.is_lazy:  # read batch by batch; the same sampler (and seed) as below gives the same batches
        return DataLoader(LazyGroupsDataset(data, with_y), batch_size=config.batch_size, shuffle=True,
                          generator=gen, num_workers=0, collate_fn=batch_as_is)
    dataset = TensorDataset(*grouped_tensors(data, with_y=with_y))
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=gen, num_workers=0)


def train_model(model: ModelHandle, data: GroupedData, config: TrainingConfig, resume_from: Path | None = None,
                *, enable_progress_bar: bool = True) -> TrainResult:
    """Train ``model`` on ``data`` for ``config.nepochs`` epochs in total (see the module docstring).

    Raises
    ------
    ptycho_core.errors.TrainingDivergedError
        The loss became NaN or infinite; the checkpoints written so far are kept.
    ptycho_core.errors.ConfigError
        Data and model do not fit, or ``config.model`` differs from the model's config.
    """
    if config.model != model.model_config:
        raise ConfigError(f"TrainingConfig.model: {config.model} differs from the model's config "
                          f"{model.model_config}; train with the config the model was built with")
    data.check_fits(model.model_config)
    if resume_from is not None and not Path(resume_from).is_file():
        raise ConfigError(f"resume_from: checkpoint {resume_from} does not exist")
    t_start = time.perf_counter()
    L.seed_everything(config.seed, workers=True, verbose=False)
    check_compiler(config)
    if resolve_accelerator(config.accelerator) == "cpu":
        fit_threads()
    module = _prepare_module(model, data, config, resume_from)
    loader = _loader(data, config)
    history = History()
    schedule = PlateauCallback(config)
    trainer = make_trainer(config, history, enable_progress_bar=enable_progress_bar,
                           resume=resume_from is not None, schedule=schedule)
    t_fit = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        if resume_from is not None:
            warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
            warnings.filterwarnings("ignore", message=".*Experiment logs directory .* exists and is not empty.*")
        trainer.fit(module, loader, ckpt_path=None if resume_from is None else str(resume_from), weights_only=True)
    t_end = time.perf_counter()
    if schedule.stopped_epoch is not None:
        log.info("%s", schedule.schedule.stop_message(schedule.stopped_epoch))
    module = module.cpu().eval()
    module.set_compiled(False)  # inference and later training runs start from the plain network
    module.trainer = None  # detach: the returned model must not keep the Trainer and its data alive
    trained = ModelHandle(backend=BACKEND_ID, model_config=model.model_config, training_config=config, native=module,
                          metadata={"epochs": int(trainer.current_epoch)})
    epochs_run = history.epochs_run
    run_seconds = history.history["epoch_s"][-epochs_run:] if epochs_run else []
    timings = {"total_s": t_end - t_start, "fit_s": t_end - t_fit,
               "epoch_s_mean": (sum(run_seconds) / epochs_run) if epochs_run else 0.0,
               "patterns_per_s": (epochs_run * data.n_groups * data.channels / (t_end - t_fit)) if epochs_run else 0.0}
    return TrainResult(model=trained, history=history.history, epochs=int(trainer.current_epoch), timings=timings,
                       checkpoint_dir=Path(config.output_dir) / "checkpoints")
