"""Crash safety of PyTorch training: SIGKILL mid-epoch, ``ptycho train --resume``, NaN/inf stops.

The kill test drives the real command line (``python -m ptycho_core.cli train``) in a
subprocess on the committed canonical fixture, kills it with SIGKILL once the first
checkpoint exists and a later epoch is running, checks the checkpoint on disk, resumes with a
bare ``--resume`` and checks that the run ends with exactly ``nepochs`` epochs.
"""

from __future__ import annotations

import csv
import hashlib
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
import torch

from ptycho import workflow
from ptycho_core import bundle
from ptycho_core.cli import main as cli_main
from ptycho_core.config import ModelConfig, TrainingConfig
from ptycho_core.errors import TrainingDivergedError
from ptycho_data.fixtures import canonical_fixture_path
from ptycho_torch.module import PtychoLightningModule
from ptycho_torch.train import AtomicCheckpointIO, History, make_trainer

NEPOCHS = 4
N_GROUPS = 4  # batch size 1: 4 optimizer steps per epoch, long enough to land a kill inside an epoch
POLL_TIMEOUT_S = 240.0


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _cli_args(out: Path, *extra: str) -> list[str]:
    return ["train", "--backend", "pytorch", "--train-data", str(canonical_fixture_path()), "--output-dir", str(out),
            "--nepochs", str(NEPOCHS), "--batch-size", "1", "--n-groups", str(N_GROUPS), "--n-filters-scale", "1",
            "--accelerator", "cpu", *extra]


def _csv_epochs(out: Path) -> list[int]:
    """Epoch numbers of the rows of every CSV log under ``out/logs`` (rows cut by a kill are skipped)."""
    epochs = []
    for path in sorted((out / "logs").glob("version_*/metrics.csv")):
        with open(path, newline="") as fh:
            epochs += [int(row["epoch"]) for row in csv.DictReader(fh) if row.get("train_loss") and row.get("epoch")]
    return epochs


def _history_state(ckpt: dict) -> dict[str, list[float]]:
    states = [v for k, v in ckpt.get("callbacks", {}).items() if k.endswith("History")]
    assert len(states) == 1, f"expected one History callback state in the checkpoint, got {list(ckpt['callbacks'])}"
    return states[0]["history"]


def _wait_for_first_epoch(proc: subprocess.Popen, out: Path, log: Path) -> None:
    """Poll until the first checkpoint exists and its epoch's CSV row is written (a later epoch is running)."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    last = out / "checkpoints" / "last.ckpt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training exited (code {proc.returncode}) before it could be killed:\n"
                        f"{log.read_text()[-3000:]}")
        if last.is_file() and _csv_epochs(out):
            return
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    pytest.fail(f"no checkpoint after {POLL_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def test_sigkill_mid_epoch_then_bare_resume_ends_at_nepochs(tmp_path):
    out = tmp_path / "run"
    log = tmp_path / "first.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "ptycho_core.cli", *_cli_args(out)], stdout=fh,
                                stderr=subprocess.STDOUT, env=env)
        try:
            _wait_for_first_epoch(proc, out, log)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    last = out / "checkpoints" / "last.ckpt"
    digest = _sha256(last)
    ckpt = torch.load(last, weights_only=True)  # intact: a complete pickle-free torch file
    killed_history = _history_state(ckpt)
    done = len(killed_history["loss"])
    assert 1 <= done < NEPOCHS, f"the kill should land before the last epoch, checkpoint has {done} epochs"
    assert ckpt["global_step"] == done * N_GROUPS
    assert all(bool(torch.isfinite(v).all()) for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert not (out / "model").exists(), "the killed run must not have written a bundle"

    result = subprocess.run([sys.executable, "-m", "ptycho_core.cli", *_cli_args(out, "--resume")],
                            capture_output=True, text=True, env=env, timeout=POLL_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"trained {NEPOCHS} epochs" in result.stdout

    final = torch.load(last, weights_only=True)
    history = _history_state(final)
    assert len(history["loss"]) == NEPOCHS
    assert history["loss"][:done] == killed_history["loss"]  # the resumed run continued the checkpoint's history
    assert final["global_step"] == NEPOCHS * N_GROUPS  # no epoch repeated or skipped
    assert sorted(p.name for p in (out / "checkpoints").glob("last*.ckpt")) == ["last.ckpt"]
    assert _sha256(last) != digest
    assert _csv_epochs(out) == list(range(NEPOCHS))  # one CSV log, each epoch exactly once
    model = bundle.load_bundle(out / "model", backend="pytorch")
    assert model.backend == "pytorch" and model.model_config.n_filters_scale == 1
    state = model.native.state_dict()
    for name, value in final["state_dict"].items():
        assert torch.equal(state[name], value), f"bundle weights differ from the final checkpoint at {name}"


def test_bare_resume_without_a_checkpoint_is_a_config_error(tmp_path, capsys):
    code = cli_main(_cli_args(tmp_path / "empty", "--resume"))
    assert code == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "last.ckpt" in err and str(tmp_path / "empty" / "checkpoints") in err


def test_checkpoints_go_through_the_atomic_checkpoint_io(tmp_path):
    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1), output_dir=tmp_path, backend="pytorch",
                            accelerator="cpu")
    trainer = make_trainer(config, History(), enable_progress_bar=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> TrainingConfig:
    """A run of one epoch (2 groups, batch 1) whose ``last.ckpt`` the divergence tests resume from."""
    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1), train_data_file=canonical_fixture_path(),
                            nepochs=1, batch_size=1, n_groups=2, output_dir=tmp_path_factory.mktemp("one_epoch"),
                            backend="pytorch", accelerator="cpu")
    workflow.train(config)
    return config


def _resume_copy(one_epoch: TrainingConfig, tmp_path: Path) -> tuple[TrainingConfig, Path]:
    out = tmp_path / "run"
    shutil.copytree(one_epoch.output_dir, out)
    return attrs.evolve(one_epoch, nepochs=3, output_dir=out), out / "checkpoints" / "last.ckpt"


def test_nan_loss_raises_and_leaves_the_last_checkpoint_unchanged(one_epoch, tmp_path, monkeypatch):
    config, last = _resume_copy(one_epoch, tmp_path)
    before = _sha256(last)
    original = PtychoLightningModule.compute

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.current_epoch >= 1 and self.global_step >= 3:  # one good step in epoch 2, then NaN
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(PtychoLightningModule, "compute", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at epoch 2, batch 1"):
        workflow.train(config, resume_from=last)
    assert _sha256(last) == before
    assert sorted(p.name for p in last.parent.glob("*.ckpt")) == sorted(
        p.name for p in (one_epoch.output_dir / "checkpoints").glob("*.ckpt"))


def test_weights_turning_nan_stop_before_the_checkpoint_is_written(one_epoch, tmp_path, monkeypatch):
    config, last = _resume_copy(one_epoch, tmp_path)
    before = _sha256(last)
    def corrupting(self, outputs, batch, batch_idx):
        if batch_idx == 1:  # after the last step of epoch 2, whose loss was finite: no later loss would notice
            with torch.no_grad():
                next(self.net.parameters()).fill_(float("inf"))

    monkeypatch.setattr(PtychoLightningModule, "on_train_batch_end", corrupting, raising=False)
    with pytest.raises(TrainingDivergedError, match=r"weights .* became NaN/inf in epoch 2"):
        workflow.train(config, resume_from=last)
    assert _sha256(last) == before
    ckpt = torch.load(last, weights_only=True)
    assert len(_history_state(ckpt)["loss"]) == 1
    assert all(np.isfinite(v.numpy()).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
