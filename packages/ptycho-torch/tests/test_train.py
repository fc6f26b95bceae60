"""Training: loss goes down, intensity scale, determinism, checkpoints, resume, NaN handling."""

from __future__ import annotations

import csv

import attrs
import numpy as np
import pytest
import torch
from torch_testdata import tiny_training_config

from ptycho_core.config import effective_nphotons
from ptycho_core.errors import ConfigError, TrainingDivergedError
from ptycho_torch.module import PtychoLightningModule
from ptycho_torch.pinn import physics_scale
from ptycho_torch.plugin import TorchBackend
from ptycho_torch.train import atomic_torch_save, cpp_compiler_available, train_model

plugin = TorchBackend.as_plugin()  # the generated hook implementations, called directly


def _train(data, config, resume_from=None):
    model = plugin.ptycho_build_model(config.model, config)
    return train_model(model, data, config, resume_from, enable_progress_bar=False)


def test_tiny_training_run_lowers_the_loss(tmp_path, grouped64):
    config = tiny_training_config(tmp_path, nepochs=2)
    model = plugin.ptycho_build_model(config.model, config)
    before = plugin.ptycho_forward(model, grouped64, config).loss
    result = train_model(model, grouped64, config, enable_progress_bar=False)
    after = plugin.ptycho_forward(result.model, grouped64, config).loss
    assert after < before
    assert result.epochs == 2
    assert len(result.history["loss"]) == 2 and all(np.isfinite(result.history["loss"]))
    assert result.timings["fit_s"] > 0
    ckpts = config.output_dir / "checkpoints"
    assert (ckpts / "last.ckpt").is_file()
    assert result.checkpoint_dir == ckpts
    logs = sorted((config.output_dir / "logs").glob("version_*/metrics.csv"))
    assert logs, "CSV logger wrote no metrics.csv"
    rows = [r for r in csv.DictReader(logs[-1].open()) if r.get("train_loss")]
    assert len(rows) == 2
    assert float(rows[-1]["train_loss"]) == pytest.approx(result.history["loss"][-1], rel=1e-6)


def test_trainable_intensity_scale_changes(tmp_path, grouped64):
    config = tiny_training_config(tmp_path, nepochs=1, intensity_scale_trainable=True)
    result = _train(grouped64, config)
    s0 = physics_scale(effective_nphotons(config), 64)
    s = float(result.model.native.physics.intensity_scale.detach())
    assert isinstance(result.model.native.physics.intensity_scale, torch.nn.Parameter)
    assert abs(s - s0) > 1e-3
    assert result.history["intensity_scale"][-1] == pytest.approx(s)


def test_frozen_intensity_scale_stays(tmp_path, grouped64):
    config = tiny_training_config(tmp_path, nepochs=1, intensity_scale_trainable=False)
    result = _train(grouped64, config)
    phys = result.model.native.physics
    assert not isinstance(phys.intensity_scale, torch.nn.Parameter)
    assert float(phys.intensity_scale) == np.float32(physics_scale(effective_nphotons(config), 64))


def test_seeded_training_is_deterministic_on_cpu(tmp_path, grouped64):
    a = _train(grouped64, tiny_training_config(tmp_path / "a", nepochs=1))
    b = _train(grouped64, tiny_training_config(tmp_path / "b", nepochs=1))
    assert a.history["loss"] == b.history["loss"]
    for (name, pa), (_, pb) in zip(a.model.native.state_dict().items(), b.model.native.state_dict().items()):
        assert torch.equal(pa, pb), name


def test_checkpoint_is_weights_only_and_loads_without_arguments(tmp_path, grouped64):
    config = tiny_training_config(tmp_path, nepochs=1)
    result = _train(grouped64, config)
    path = config.output_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    assert isinstance(ckpt["hyper_parameters"]["model_config"], dict)
    assert ckpt["hyper_parameters"]["training_config"]["output_dir"] == str(config.output_dir)
    module = PtychoLightningModule.load_from_checkpoint(path, map_location="cpu")
    for name, value in result.model.native.state_dict().items():
        assert torch.equal(module.state_dict()[name], value), name


def test_resume_continues_to_nepochs(tmp_path, grouped64):
    first = tiny_training_config(tmp_path, nepochs=1)
    r1 = _train(grouped64, first)
    last = first.output_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0
    second = attrs.evolve(first, nepochs=2)
    r2 = _train(grouped64, second, resume_from=last)
    assert r2.epochs == 2
    assert len(r2.history["loss"]) == 2
    assert r2.history["loss"][0] == r1.history["loss"][0]
    assert torch.load(last, weights_only=True)["epoch"] == 1


def test_resume_from_missing_checkpoint_is_an_error(tmp_path, grouped64):
    config = tiny_training_config(tmp_path, nepochs=1)
    with pytest.raises(ConfigError, match="resume_from"):
        _train(grouped64, config, resume_from=tmp_path / "nope.ckpt")


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path, grouped64, monkeypatch):
    original = PtychoLightningModule.compute

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.current_epoch >= 1:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(PtychoLightningModule, "compute", poisoned)
    config = tiny_training_config(tmp_path, nepochs=3)
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, batch 0.*learning_rate"):
        _train(grouped64, config)
    last = config.output_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_gridsize2_with_trainable_probe_and_all_loss_terms(tmp_path, grouped64_g2):
    config = tiny_training_config(tmp_path, gridsize=2, nepochs=1, batch_size=8, probe_trainable=True,
                                  mae_weight=0.5, realspace_weight=0.1)
    model = plugin.ptycho_build_model(config.model, config)
    result = train_model(model, grouped64_g2, config, enable_progress_bar=False)
    phys = result.model.native.physics
    from ptycho_torch.pinn import normalized_probe

    initial = normalized_probe(grouped64_g2.probe, config.model)
    assert isinstance(phys.probe_real, torch.nn.Parameter)
    assert not torch.equal(phys.probe, initial), "a trainable probe must change"
    assert np.isfinite(result.history["loss"][0])


def test_realspace_weight_without_ground_truth_is_a_config_error(tmp_path, grouped64):
    data = attrs.evolve(grouped64, Y=None)
    config = tiny_training_config(tmp_path, nepochs=1, realspace_weight=1.0)
    with pytest.raises(ConfigError, match="realspace_weight"):
        _train(data, config)


def test_data_that_does_not_fit_the_model_is_a_config_error(tmp_path, grouped64_g2):
    config = tiny_training_config(tmp_path, nepochs=1)
    with pytest.raises(ConfigError, match="4 patterns"):
        _train(grouped64_g2, config)


def test_atomic_save_keeps_previous_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"w": torch.ones(3)}, path)

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_compile_without_a_cpp_compiler_is_a_config_error(tmp_path, grouped64, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match="TrainingConfig.compile: torch.compile on a CPU needs a C\\+\\+ compiler"):
        _train(grouped64, tiny_training_config(tmp_path, nepochs=1, compile=True))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.skipif(not cpp_compiler_available(),
                    reason="torch.compile on a CPU needs a C++ compiler; this machine has none")
def test_compiled_training_step_matches_eager_and_leaves_plain_weights(tmp_path, grouped64):
    """TrainingConfig.compile runs the network through torch.compile: same training up to rounding."""
    eager = _train(grouped64, tiny_training_config(tmp_path / "eager", nepochs=1))
    compiled = _train(grouped64, tiny_training_config(tmp_path / "compiled", nepochs=1, compile=True))
    assert compiled.history["loss"][0] == pytest.approx(eager.history["loss"][0], rel=1e-3)
    a, b = eager.model.native.state_dict(), compiled.model.native.state_dict()
    assert list(a) == list(b)  # no '_orig_mod' names: checkpoints and bundles are unchanged
    config = tiny_training_config(tmp_path / "init", nepochs=1)
    init = plugin.ptycho_build_model(config.model, config).native.state_dict()  # seeded: both runs' start
    for name in a:  # the two runs differ by rounding, far less than what training changed
        if a[name].is_floating_point():
            step = float(torch.linalg.vector_norm(a[name] - init[name]))
            assert float(torch.linalg.vector_norm(a[name] - b[name])) <= 0.05 * step + 1e-7, name
    assert compiled.model.native._compiled_net is None  # inference uses the plain network
    ckpt = torch.load(tmp_path / "compiled" / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert set(ckpt["state_dict"]) == set(a)


# The sequence of packages/ptycho-core/tests/test_schedule.py: every backend halves at the same epochs.
SCHEDULE_LOSSES = [10.0, 8.0, 8.0, 8.0, 7.9999, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0]
SCHEDULE_RATES = [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4, 1.25e-4, 1e-4]


def test_plateau_callback_halves_the_optimiser_rate_like_the_core_schedule(tmp_path):
    from types import SimpleNamespace

    from ptycho_torch.train import PlateauCallback

    config = tiny_training_config(tmp_path, learning_rate=1e-3, early_stop_patience=5)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))], lr=config.learning_rate)
    trainer = SimpleNamespace(optimizers=[optimizer], callback_metrics={}, current_epoch=0, should_stop=False)
    callback = PlateauCallback(config)
    rates, stopped = [], None
    for epoch, loss in enumerate(SCHEDULE_LOSSES):
        trainer.current_epoch, trainer.callback_metrics["train_loss"] = epoch, torch.tensor(loss)
        callback.on_train_epoch_end(trainer, None)
        rates.append(optimizer.param_groups[0]["lr"])
        if trainer.should_stop and stopped is None:
            stopped = epoch + 1
    assert rates == pytest.approx(SCHEDULE_RATES, rel=1e-12)
    assert stopped == 11 == callback.stopped_epoch
    assert callback.state_dict()["schedule"]["lr"] == pytest.approx(1e-4)


def test_time_budget_stops_after_the_first_epoch_past_it(tmp_path, grouped64, caplog):
    config = tiny_training_config(tmp_path, nepochs=5, max_train_seconds=1e-6)
    with caplog.at_level("INFO", logger="ptycho_torch.train"):
        result = _train(grouped64, config)
    assert result.epochs == 1 and len(result.history["loss"]) == 1
    assert "time budget of 1e-06 s reached" in caplog.text


def test_early_stop_ends_training_on_a_plateau(tmp_path, grouped64):
    # a rate this small leaves the weights (and so the epoch's mean loss) unchanged: a plateau from epoch 2
    config = tiny_training_config(tmp_path, nepochs=6, learning_rate=1e-12, early_stop_patience=1,
                                  intensity_scale_trainable=False)
    result = _train(grouped64, config)
    assert result.epochs == 2 and len(result.history["loss"]) == 2
    assert len(result.history["deviance"]) == 2 and len(result.history["misfit"]) == 2
    assert min(result.history["deviance"]) >= 0 and 0 < result.history["misfit"][-1] < 10


def test_default_photons_come_from_the_data(tmp_path):
    """Issue 18: 1e6-photon data trained with the defaults gets s = sqrt(1e6)/(N/2) = 31.25, not ~988 (1e9)."""
    from ptycho import workflow
    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    data = simulate_dataset(SimulationConfig(n_positions=16, nphotons=1e6, seed=2), progress=False)
    config = tiny_training_config(tmp_path, nepochs=1)
    assert config.nphotons is None  # the default: measured from the data
    result = workflow.train(config, dataset=data)
    assert result.model.training_config.nphotons == pytest.approx(1e6, rel=1e-3)
    assert result.history["intensity_scale"][-1] == pytest.approx(31.25, rel=0.05)
