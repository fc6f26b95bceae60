"""Keras callbacks of training: history, divergence guard, resumable plateau schedule, atomic checkpoints.

A checkpoint is two files under ``output_dir/checkpoints``, each written to a temporary
file and moved into place with ``os.replace`` (:mod:`ptycho_core.atomic`, so both get the
umask's mode):

- ``last.weights.h5``: Keras' weights file of the compiled model: the network and physics
  weights and the Adam state (arrays only, no pickles);
- ``last.json``: written second; the completed epoch, learning rate, plateau state, history and
  the sha256 of the weights file, so a torn pair of files is detected on resume.

``last.json`` is the commit point. Before a new ``last.weights.h5`` takes the name, the one
``last.json`` refers to is renamed ``previous.weights.h5`` and is only deleted once the new
``last.json`` is in place, so a process killed at any moment (SIGKILL included) leaves a
``last.json`` whose weights file exists with the recorded sha256; :func:`read_checkpoint`
picks whichever of the two files matches. Weights that are no longer finite are never saved.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_core import atomic, training_log
from ptycho_core.config import TrainingConfig
from ptycho_core.errors import ConfigError
from ptycho_core.schedule import PlateauSchedule
from ptycho_tf._env import keras

STATE_FILE = "last.json"
WEIGHTS_FILE = "last.weights.h5"
PREVIOUS_FILE = "previous.weights.h5"


atomic_write = training_log.atomic_write
atomic_file = atomic.atomic_file


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class EpochHistory(keras.callbacks.Callback):
    """Per-epoch loss, deviance, misfit, intensity scale, learning rate and seconds (``training_log.HISTORY_KEYS``).

    Adds ``intensity_scale`` to the epoch logs.
    """

    def __init__(self, previous: dict[str, list[float]] | None = None) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {key: [] for key in training_log.HISTORY_KEYS}
        for key, values in (previous or {}).items():
            self.history[key] = [float(v) for v in values]
        self.epochs_run = 0
        self._t0 = 0.0
        self._lr = float("nan")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()
        self._lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        scale = float(keras.ops.convert_to_numpy(self.model.physics.intensity_scale))
        logs["intensity_scale"] = scale
        for key in ("loss", "deviance", "misfit"):
            self.history[key].append(float(logs.get(key, float("nan"))))
        self.history["intensity_scale"].append(scale)
        self.history["lr"].append(self._lr)
        self.history["epoch_s"].append(time.perf_counter() - self._t0)
        self.epochs_run += 1


class DivergenceGuard(keras.callbacks.Callback):
    """Stop training at the first batch whose (running mean) loss is NaN or infinite, and remember where."""

    def __init__(self) -> None:
        super().__init__()
        self.diverged: dict[str, Any] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss) and self.diverged is None:
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self.diverged = {"epoch": self._epoch + 1, "batch": int(batch), "loss": loss, "lr": lr}
            self.model.stop_training = True


class PlateauCallback(keras.callbacks.Callback):
    """The learning-rate schedule and early stop of :mod:`ptycho_core.schedule` on the epoch's ``loss``.

    Runs after :class:`EpochHistory` (which records the rate the epoch used); ``state``
    (from :meth:`state`) continues the schedule of a checkpoint.
    """

    def __init__(self, config: TrainingConfig, state: dict | None = None) -> None:
        super().__init__()
        self.schedule = PlateauSchedule.from_state(state, config.learning_rate, config.early_stop_patience,
                                                   config.max_train_seconds)
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        lr = self.schedule.step(float((logs or {}).get("loss", float("nan"))))
        self.model.optimizer.learning_rate = lr
        if self.schedule.stop and self.stopped_epoch is None:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True

    def state(self) -> dict:
        """The schedule's state as plain numbers (:meth:`ptycho_core.schedule.PlateauSchedule.state`)."""
        return self.schedule.state()


class AtomicCheckpoint(keras.callbacks.Callback):
    """Write ``last.*`` every ``every`` epochs and after the final epoch, unless the loss went bad."""

    def __init__(self, directory: Path, every: int, total_epochs: int, history: EpochHistory,
                 plateau: PlateauCallback, guard: DivergenceGuard, seed: int) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.every, self.total_epochs, self.seed = int(every), int(total_epochs), int(seed)
        self.history, self.plateau, self.guard = history, plateau, guard
        self.last_saved_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        done = epoch + 1
        if self.guard.diverged is not None or not math.isfinite(float((logs or {}).get("loss", 0.0))):
            return
        if done % self.every == 0 or done == self.total_epochs:
            if not all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in self.model.weights):
                lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
                self.guard.diverged = {"epoch": done, "batch": "last", "lr": lr,
                                       "loss": "finite but the weights became NaN/inf"}
                self.model.stop_training = True
                return
            self.save(done)

    def save(self, epoch: int) -> None:
        """Write the two files of a checkpoint after ``epoch`` completed epochs (see the module docstring)."""
        model = self.model
        weights_path = self.directory / WEIGHTS_FILE
        previous = self.directory / PREVIOUS_FILE
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic_file(weights_path) as tmp:  # the temporary keeps the .weights.h5 suffix Keras wants
            model.save_weights(str(tmp))
            digest = sha256_file(tmp)
            committed = _committed_weights(self.directory)
            if committed is not None and committed.name == WEIGHTS_FILE:
                os.replace(weights_path, previous)  # keep the weights last.json refers to until it is replaced
        state = {
            "epoch": int(epoch),
            "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
            "plateau": self.plateau.state(),
            "history": self.history.history,
            "seed": self.seed,
            "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
            "files": {WEIGHTS_FILE: digest},
        }
        atomic_write(self.directory / STATE_FILE, lambda tmp: Path(tmp).write_text(json.dumps(state, indent=2)))
        previous.unlink(missing_ok=True)
        self.last_saved_epoch = int(epoch)


def _committed_weights(directory: Path) -> Path | None:
    """The weights file (``last`` or ``previous``) matching the sha256 in ``directory/last.json``, if any."""
    try:
        expected = json.loads((directory / STATE_FILE).read_text())["files"][WEIGHTS_FILE]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for name in (WEIGHTS_FILE, PREVIOUS_FILE):
        path = directory / name
        if path.is_file() and sha256_file(path) == expected:
            return path
    return None


def resolve_checkpoint(resume_from: str | os.PathLike) -> Path:
    """The ``last.json`` of a checkpoint given as that file, its ``.weights.h5`` or the checkpoint folder."""
    path = Path(resume_from)
    if path.is_dir():
        path = path / STATE_FILE
    elif path.name.endswith(".weights.h5"):
        path = path.with_name(path.name[: -len(".weights.h5")] + ".json")
    if not path.is_file():
        raise ConfigError(f"resume_from: checkpoint {resume_from} does not exist (expected {STATE_FILE}, "
                          f"{WEIGHTS_FILE} or the checkpoints folder written by an earlier run)")
    return path


def read_checkpoint(resume_from: str | os.PathLike) -> tuple[dict, Path]:
    """Read and verify a checkpoint: returns ``(state, weights_path)``."""
    state_path = resolve_checkpoint(resume_from)
    try:
        state = json.loads(state_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"resume_from: {state_path} is not valid JSON ({exc})") from None
    for key in ("epoch", "learning_rate", "files", "history"):
        if key not in state:
            raise ConfigError(f"resume_from: {state_path} lacks the {key!r} entry of a ptycho_tf checkpoint")
    path = _committed_weights(state_path.parent)
    if path is None:
        raise ConfigError(f"resume_from: {state_path.parent / WEIGHTS_FILE} is missing or does not match the sha256 "
                          f"in {state_path.name} (files changed by hand?); resume from an intact checkpoint")
    return state, path


def continue_csv_log(path: Path, start_epoch: int, history: dict[str, list[float]]) -> None:
    """Make the Keras CSV log of an interrupted run end at ``start_epoch`` completed epochs, before appending.

    :func:`ptycho_core.training_log.continue_csv_log` with the columns of Keras' ``CSVLogger``.
    """
    training_log.continue_csv_log(path, start_epoch, history,
                                  fields=["epoch", "deviance", "intensity_scale", "learning_rate", "loss", "misfit"],
                                  columns={"loss": "loss", "deviance": "deviance", "misfit": "misfit",
                                           "intensity_scale": "intensity_scale", "learning_rate": "lr"})
