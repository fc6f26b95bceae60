"""Crash safety of TensorFlow training: SIGKILL mid-epoch, ``ptycho train --resume``, NaN/inf stops.

The kill test drives the real command line (``python -m ptycho_core.cli train``) in a
subprocess on the committed canonical fixture, kills it with SIGKILL once the first
checkpoint exists and a later epoch is running, checks the checkpoint pair on disk, resumes
with a bare ``--resume`` and checks that the run ends with exactly ``nepochs`` epochs.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import numpy as np
import pytest

from ptycho import workflow
from ptycho_core import bundle
from ptycho_core.cli import main as cli_main
from ptycho_core.config import ModelConfig, TrainingConfig
from ptycho_core.errors import TrainingDivergedError
from ptycho_data import grouping
from ptycho_data.fixtures import canonical_fixture_path
from ptycho_tf import callbacks
from ptycho_tf._env import keras
from ptycho_tf.callbacks import (
    PREVIOUS_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    AtomicCheckpoint,
    DivergenceGuard,
    EpochHistory,
    PlateauCallback,
    read_checkpoint,
)
from ptycho_tf.train import LOG_FILE

NEPOCHS = 4
N_GROUPS = 4  # batch size 1: 4 optimizer steps per epoch, long enough to land a kill inside an epoch
POLL_TIMEOUT_S = 240.0


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _cli_args(out: Path, *extra: str) -> list[str]:
    return ["train", "--backend", "tensorflow", "--train-data", str(canonical_fixture_path()), "--output-dir",
            str(out), "--nepochs", str(NEPOCHS), "--batch-size", "1", "--n-groups", str(N_GROUPS),
            "--n-filters-scale", "1", "--accelerator", "cpu", *extra]


def _csv_epochs(path: Path) -> list[int]:
    with open(path, newline="") as fh:
        return [int(row["epoch"]) for row in csv.DictReader(fh)]


def _wait_for_first_checkpoint(proc: subprocess.Popen, state: Path, log: Path) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training exited (code {proc.returncode}) before it could be killed:\n"
                        f"{log.read_text()[-3000:]}")
        if state.is_file():
            return
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    pytest.fail(f"no checkpoint after {POLL_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def test_sigkill_mid_epoch_then_bare_resume_ends_at_nepochs(tmp_path):
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    log = tmp_path / "first.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "ptycho_core.cli", *_cli_args(out)], stdout=fh,
                                stderr=subprocess.STDOUT, env=env)
        try:
            _wait_for_first_checkpoint(proc, ckpts / STATE_FILE, log)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    state, weights = read_checkpoint(ckpts)  # intact: last.json parses and its sha256 matches a weights file
    assert _sha256(weights) == state["files"][WEIGHTS_FILE]
    done = int(state["epoch"])
    assert 1 <= done < NEPOCHS, f"the kill should land before the last epoch, checkpoint has {done} epochs"
    assert state["iterations"] == done * N_GROUPS
    assert len(state["history"]["loss"]) == done and all(np.isfinite(state["history"]["loss"]))
    assert set(_csv_epochs(out / LOG_FILE)) >= set(range(done))  # rows are written before their checkpoint
    assert not (out / "model").exists(), "the killed run must not have written a bundle"

    result = subprocess.run([sys.executable, "-m", "ptycho_core.cli", *_cli_args(out, "--resume")],
                            capture_output=True, text=True, env=env, timeout=POLL_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"trained {NEPOCHS} epochs" in result.stdout

    final, final_weights = read_checkpoint(ckpts)
    assert final_weights.name == WEIGHTS_FILE and not (ckpts / PREVIOUS_FILE).exists()
    assert final["epoch"] == NEPOCHS
    assert final["iterations"] == NEPOCHS * N_GROUPS  # no epoch repeated or skipped
    assert len(final["history"]["loss"]) == NEPOCHS
    assert final["history"]["loss"][:done] == state["history"]["loss"]
    assert _csv_epochs(out / LOG_FILE) == list(range(NEPOCHS))  # each epoch exactly once
    model = bundle.load_bundle(out / "model", backend="tensorflow")
    assert model.backend == "tensorflow" and model.model_config.n_filters_scale == 1


def test_bare_resume_without_a_checkpoint_is_a_config_error(tmp_path, capsys):
    code = cli_main(_cli_args(tmp_path / "empty", "--resume"))
    assert code == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "last.json" in err and str(tmp_path / "empty" / "checkpoints") in err


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A run of one epoch (2 groups, batch 1): its config and result; the tests resume from copies of it."""
    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1), train_data_file=canonical_fixture_path(),
                            nepochs=1, batch_size=1, n_groups=2, output_dir=tmp_path_factory.mktemp("one_epoch"),
                            backend="tensorflow", accelerator="cpu")
    return config, workflow.train(config)


def _resume_copy(config: TrainingConfig, tmp_path: Path) -> tuple[TrainingConfig, Path]:
    out = tmp_path / "run"
    shutil.copytree(config.output_dir, out)
    return attrs.evolve(config, nepochs=3, output_dir=out), out / "checkpoints"


def test_nan_loss_raises_and_leaves_the_last_checkpoint_unchanged(one_epoch, tmp_path, monkeypatch):
    config, ckpts = _resume_copy(one_epoch[0], tmp_path)
    before = {name: _sha256(ckpts / name) for name in (STATE_FILE, WEIGHTS_FILE)}
    original = grouping.group_for_training

    def poisoned(*args, **kwargs):
        data = copy.deepcopy(original(*args, **kwargs))
        data.X[:, 10, 10, 0] = np.nan  # corrupt amplitudes in memory, after validation
        return data

    monkeypatch.setattr(grouping, "group_for_training", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at epoch 2, batch 0.*checkpoint.*epoch 1"):
        workflow.train(config, resume_from=ckpts)
    assert {name: _sha256(ckpts / name) for name in (STATE_FILE, WEIGHTS_FILE)} == before
    assert sorted(p.name for p in ckpts.iterdir()) == [STATE_FILE, WEIGHTS_FILE]


def test_weights_turning_nan_stop_before_the_checkpoint_is_written(one_epoch, tmp_path, monkeypatch):
    config, ckpts = _resume_copy(one_epoch[0], tmp_path)
    before = {name: _sha256(ckpts / name) for name in (STATE_FILE, WEIGHTS_FILE)}
    original = DivergenceGuard.on_train_batch_end

    def corrupting(self, batch, logs=None):
        original(self, batch, logs)
        if batch == 1:  # after the last step of epoch 2, whose loss was finite: no later loss would notice
            weight = self.model.weights[0]
            weight.assign(np.full(weight.shape, np.inf, dtype=weight.dtype))

    monkeypatch.setattr(DivergenceGuard, "on_train_batch_end", corrupting)
    with pytest.raises(TrainingDivergedError, match=r"weights became NaN/inf at epoch 2"):
        workflow.train(config, resume_from=ckpts)
    assert {name: _sha256(ckpts / name) for name in (STATE_FILE, WEIGHTS_FILE)} == before


def test_a_save_cut_short_leaves_a_resumable_checkpoint(one_epoch, tmp_path, monkeypatch):
    """A crash after the new weights file took its name but before ``last.json`` did keeps the old pair usable."""
    config, ckpts = _resume_copy(one_epoch[0], tmp_path)
    state_before = json.loads((ckpts / STATE_FILE).read_text())
    weights_before = _sha256(ckpts / WEIGHTS_FILE)
    history = EpochHistory(state_before["history"])
    native = one_epoch[1].model.native
    plateau = PlateauCallback(config, state_before["plateau"])  # continues the checkpoint's schedule, as fit would
    checkpoint = AtomicCheckpoint(ckpts, 1, 3, history, plateau, DivergenceGuard(), config.seed)
    checkpoint.set_model(native)
    weight = native.weights[0]
    weight.assign(weight.numpy() + 1.0)  # different weights, so the new file differs from the committed one
    real_write = callbacks.atomic_write

    def crash_on_state(path, write):
        if Path(path).name == STATE_FILE:
            raise KeyboardInterrupt("killed before last.json was replaced")
        real_write(path, write)

    monkeypatch.setattr(callbacks, "atomic_write", crash_on_state)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(2)
    assert _sha256(ckpts / WEIGHTS_FILE) != weights_before  # the new weights took the name ...
    state, weights = read_checkpoint(ckpts)  # ... and the old pair is still found whole
    assert weights.name == PREVIOUS_FILE and _sha256(weights) == weights_before and state == state_before

    monkeypatch.setattr(callbacks, "atomic_write", real_write)
    checkpoint.save(2)  # the next save commits and drops the old file
    state, weights = read_checkpoint(ckpts)
    assert state["epoch"] == 2 and weights.name == WEIGHTS_FILE and not (ckpts / PREVIOUS_FILE).exists()
    assert int(keras.ops.convert_to_numpy(native.optimizer.iterations)) == state["iterations"]
