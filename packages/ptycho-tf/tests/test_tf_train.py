"""Training: loss goes down, trainable vs frozen intensity scale, logs, checkpoints, resume, NaN, strategy."""

from __future__ import annotations

import csv
import hashlib

import attrs
import numpy as np
import pytest
from tf_testdata import make_grouped, tiny_config

from ptycho_core.config import TrainingConfig
from ptycho_core.errors import ConfigError, TrainingDivergedError
from ptycho_tf import io
from ptycho_tf.infer import forward_model
from ptycho_tf.train import select_strategy, train_model


@pytest.fixture(scope="module")
def trained(grouped64, tmp_path_factory):
    """64 patterns, 2 epochs, trainable intensity scale (the default)."""
    cfg = tiny_config(tmp_path_factory.mktemp("train"))
    model = io.build_handle(cfg.model, cfg)
    before = forward_model(model, grouped64, cfg).loss
    return cfg, model, before, train_model(model, grouped64, cfg, verbose=0)


def test_training_lowers_the_loss(trained, grouped64):
    cfg, _, before, result = trained
    after = forward_model(result.model, grouped64, cfg).loss
    assert after < before
    assert len(result.history["loss"]) == 2 and all(np.isfinite(result.history["loss"]))
    assert result.epochs == 2 and result.model.backend == "tensorflow"
    assert result.timings["patterns_per_s"] > 0


def test_trainable_intensity_scale_moves(trained):
    cfg, _, _, result = trained
    physics = result.model.native.physics
    assert physics.intensity_scale.trainable
    assert any(v is physics.intensity_scale for v in result.model.native.trainable_weights)
    s0 = result.model.native.s0
    assert float(physics.intensity_scale.numpy()) != pytest.approx(s0, rel=0, abs=0)
    assert result.history["intensity_scale"][-1] == float(physics.intensity_scale.numpy())


def test_frozen_intensity_scale_stays_and_trainable_probe_moves(tmp_path):
    from ptycho_core import reference

    data = make_grouped(n_groups=16, seed=2)
    cfg = tiny_config(tmp_path, nepochs=1, intensity_scale_trainable=False, probe_trainable=True)
    result = train_model(io.build_handle(cfg.model, cfg), data, cfg, verbose=0)
    physics = result.model.native.physics
    assert not any(v is physics.intensity_scale for v in result.model.native.trainable_weights)
    assert float(physics.intensity_scale.numpy()) == np.float32(result.model.native.s0)
    probe = physics.probe.numpy()
    initial = reference.normalize_probe(data.probe)
    assert np.max(np.abs(probe - initial)) > 0  # trained away from the initial normalised probe
    assert np.max(np.abs(probe - initial)) < 0.1 * np.max(np.abs(initial))


def test_csv_log_and_checkpoint_files(trained):
    cfg, _, _, result = trained
    with open(cfg.output_dir / "training_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert [float(r["loss"]) for r in rows] == pytest.approx(result.history["loss"])
    ckpt = cfg.output_dir / "checkpoints"
    assert (ckpt / "last.weights.h5").is_file() and (ckpt / "last.json").is_file()
    assert not [p for p in ckpt.iterdir() if ".tmp" in p.name]


def test_resume_continues_to_nepochs(trained, grouped64, tmp_path):
    cfg, _, _, result = trained
    more = attrs.evolve(cfg, nepochs=3, output_dir=tmp_path / "resumed")
    resumed = train_model(result.model, grouped64, more, resume_from=cfg.output_dir / "checkpoints", verbose=0)
    assert resumed.epochs == 3
    assert resumed.history["loss"][:2] == result.history["loss"]
    assert len(resumed.history["loss"]) == 3
    steps_per_epoch = -(-grouped64.n_groups // cfg.batch_size)
    assert int(resumed.model.native.optimizer.iterations.numpy()) == 3 * steps_per_epoch


def test_resume_from_a_missing_checkpoint_is_a_config_error(trained, grouped64, tmp_path):
    cfg, model, _, _ = trained
    with pytest.raises(ConfigError, match="resume_from"):
        train_model(model, grouped64, cfg, resume_from=tmp_path / "nowhere", verbose=0)


def test_same_seed_same_history(tmp_path):
    data = make_grouped(n_groups=16, seed=4)
    runs = []
    for name in ("a", "b"):
        cfg = tiny_config(tmp_path / name, nepochs=1, batch_size=8)
        runs.append(train_model(io.build_handle(cfg.model, cfg), data, cfg, verbose=0))
    assert runs[0].history["loss"] == runs[1].history["loss"]
    wa, wb = io.export_weights(runs[0].model), io.export_weights(runs[1].model)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_nan_loss_raises_and_keeps_the_last_good_checkpoint(tmp_path):
    data = make_grouped(n_groups=16, seed=3)
    cfg = tiny_config(tmp_path, nepochs=1)
    good = train_model(io.build_handle(cfg.model, cfg), data, cfg, verbose=0)
    ckpt = cfg.output_dir / "checkpoints" / "last.weights.h5"
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    bad = make_grouped(n_groups=16, seed=3)
    bad.X[5, 10, 10, 0] = np.nan  # after validation, as corrupt data in memory would be
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at epoch 2, batch 0.*learning_rate.*kept"):
        train_model(good.model, bad, attrs.evolve(cfg, nepochs=3), resume_from=ckpt, verbose=0)
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == digest


def test_strategy_selection(tmp_path):
    base = tiny_config(tmp_path)
    assert select_strategy(base) is None
    mirrored = select_strategy(attrs.evolve(base, strategy="mirrored"))
    assert type(mirrored).__name__ == "MirroredStrategy" and mirrored.num_replicas_in_sync == 1
    with pytest.raises(ConfigError, match="devices: 64 requested"):
        select_strategy(attrs.evolve(base, devices=64))
    with pytest.raises(ConfigError, match=r"num_nodes: the tensorflow backend trains on one node.*got 2"):
        select_strategy(attrs.evolve(base, strategy="ddp", num_nodes=2))


def test_gpu_requested_without_gpu_is_a_config_error(tmp_path):
    from ptycho_tf._env import tf
    from ptycho_tf.infer import device_scope

    if tf.config.list_logical_devices("GPU"):
        pytest.skip("a GPU is visible")
    with pytest.raises(ConfigError, match="'gpu' requested"):
        device_scope("gpu")
    with pytest.raises(ConfigError, match="'gpu' requested"):
        select_strategy(attrs.evolve(tiny_config(tmp_path), accelerator="gpu", strategy="mirrored"))


def test_mirrored_training_with_realspace_term_runs(tmp_path):
    data = make_grouped(n_groups=16, seed=6)
    cfg = tiny_config(tmp_path, nepochs=1, strategy="mirrored", realspace_weight=1.0, mae_weight=0.1)
    result = train_model(io.build_handle(cfg.model, cfg), data, cfg, verbose=0)
    assert np.isfinite(result.history["loss"][0])
    assert float(result.model.native.physics.intensity_scale.numpy()) != np.float32(result.model.native.s0)


def test_realspace_term_needs_ground_truth(tmp_path):
    data = make_grouped(n_groups=4, seed=6)
    data = type(data)(X=data.X, offsets=data.offsets, centroids=data.centroids, indices=data.indices,
                      probe=data.probe)
    cfg = tiny_config(tmp_path, nepochs=1, realspace_weight=1.0)
    with pytest.raises(ConfigError, match="realspace_weight"):
        train_model(io.build_handle(cfg.model, cfg), data, cfg, verbose=0)


def test_model_and_config_must_agree(trained, grouped64):
    cfg, model, _, _ = trained
    other = TrainingConfig(model=attrs.evolve(cfg.model, n_filters_scale=2), backend="tensorflow")
    with pytest.raises(ConfigError, match="differs from the model's config"):
        train_model(model, grouped64, other, verbose=0)


def test_xla_compiled_training_matches_uncompiled(tmp_path):
    """TrainingConfig.compile = True trains through XLA (jit_compile), gridsize 2 physics included."""
    data = make_grouped(n_groups=16, seed=4, gridsize=2)
    runs = {}
    for compiled in (False, True):
        cfg = tiny_config(tmp_path / str(compiled), gridsize=2, nepochs=2, batch_size=8, compile=compiled)
        runs[compiled] = train_model(io.build_handle(cfg.model, cfg), data, cfg, verbose=0)
    assert runs[True].model.native.jit_compile and not runs[False].model.native.jit_compile
    # Adam amplifies rounding (and two runs in one process already differ slightly at gridsize 2),
    # so the weights are not compared: the first epoch's loss agrees and training goes on lowering it
    assert runs[True].history["loss"][0] == pytest.approx(runs[False].history["loss"][0], rel=1e-3)
    assert runs[True].history["loss"][1] < runs[True].history["loss"][0]


def test_train_step_is_traced_once(tmp_path, monkeypatch):
    """Adam's variables exist before fit, so Keras traces the train step once (not twice) per run."""
    from ptycho_tf._env import keras
    from ptycho_tf.module import PtychoModel

    traces = []

    def counting_train_step(self, data):
        traces.append(1)  # Python runs here only while the step is being traced
        return keras.Model.train_step(self, data)

    monkeypatch.setattr(PtychoModel, "train_step", counting_train_step, raising=False)
    data = make_grouped(n_groups=16, seed=4)
    cfg = tiny_config(tmp_path, nepochs=2, batch_size=8)
    result = train_model(io.build_handle(cfg.model, cfg), data, cfg, verbose=0)
    assert result.epochs == 2
    assert len(traces) == 1


# The sequence of packages/ptycho-core/tests/test_schedule.py: every backend halves at the same epochs.
SCHEDULE_LOSSES = [10.0, 8.0, 8.0, 8.0, 7.9999, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0]
SCHEDULE_RATES = [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4, 1.25e-4, 1e-4]


def test_plateau_callback_halves_the_optimiser_rate_like_the_core_schedule(tmp_path):
    from types import SimpleNamespace

    from ptycho_tf._env import keras
    from ptycho_tf.callbacks import PlateauCallback

    config = attrs.evolve(tiny_config(tmp_path), learning_rate=1e-3, early_stop_patience=5)
    model = SimpleNamespace(optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate), stop_training=False)
    callback = PlateauCallback(config)
    callback.set_model(model)
    rates, stopped = [], None
    for epoch, loss in enumerate(SCHEDULE_LOSSES):
        callback.on_epoch_end(epoch, {"loss": loss})
        rates.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
        if model.stop_training and stopped is None:
            stopped = epoch + 1
    assert rates == pytest.approx(SCHEDULE_RATES, rel=1e-6)  # the optimiser keeps its rate in float32
    assert stopped == 11 == callback.stopped_epoch


def test_time_budget_stops_after_the_first_epoch_past_it(tmp_path, grouped64, caplog):
    cfg = attrs.evolve(tiny_config(tmp_path), nepochs=5, max_train_seconds=1e-6)
    with caplog.at_level("INFO", logger="ptycho_tf.train"):
        result = train_model(io.build_handle(cfg.model, cfg), grouped64, cfg, verbose=0)
    assert result.epochs == 1 and len(result.history["loss"]) == 1
    assert "time budget of 1e-06 s reached" in caplog.text


def test_early_stop_ends_training_on_a_plateau(tmp_path, grouped64):
    # a rate this small leaves the weights (and so the epoch's mean loss) unchanged: a plateau from epoch 2
    cfg = attrs.evolve(tiny_config(tmp_path), nepochs=6, learning_rate=1e-12, early_stop_patience=1,
                       intensity_scale_trainable=False)
    result = train_model(io.build_handle(cfg.model, cfg), grouped64, cfg, verbose=0)
    assert result.epochs == 2 and len(result.history["loss"]) == 2
    assert len(result.history["deviance"]) == 2 and len(result.history["misfit"]) == 2
    assert min(result.history["deviance"]) >= 0 and 0 < result.history["misfit"][-1] < 10
