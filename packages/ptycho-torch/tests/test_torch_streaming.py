"""Training and inference on a lazy dataset (read batch by batch) equal the in-memory path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptycho import workflow
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_data import grouping
from ptycho_data.fixtures import canonical_fixture_path
from ptycho_data.grouping import group_for_inference, group_for_training
from ptycho_data.lazy import open_lazy_dataset, save_lazy_dataset
from ptycho_data.npz import load_dataset
from ptycho_torch.infer import infer_model
from ptycho_torch.plugin import TorchBackend
from ptycho_torch.train import train_model

plugin = TorchBackend.as_plugin()  # the generated hook implementations, called directly

BATCH = 8


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    ds = load_dataset(canonical_fixture_path())
    path = tmp_path_factory.mktemp("lazy") / "scan"
    save_lazy_dataset(ds, path)
    return ds, path


def _one_batch_at_most(grouped):
    grouped.X.max_fetch = BATCH  # reading more than one batch at once raises DataError
    if grouped.Y is not None:
        grouped.Y.max_fetch = BATCH
    return grouped


@pytest.mark.parametrize("gridsize,realspace", [(1, 0.0), (2, 0.5)])
def test_training_on_lazy_equals_in_memory(stored, tmp_path, gridsize, realspace):
    ds, path = stored
    mc = ModelConfig(N=64, gridsize=gridsize, n_filters_scale=1)
    tc = TrainingConfig(model=mc, nepochs=2, batch_size=BATCH, backend="pytorch", accelerator="cpu",
                        realspace_weight=realspace, n_groups=24, output_dir=tmp_path / "a", seed=3)
    model = plugin.ptycho_build_model(mc, tc)
    eager = train_model(model, group_for_training(ds, tc), tc, enable_progress_bar=False)
    lazy_data = _one_batch_at_most(group_for_training(open_lazy_dataset(path), tc))
    assert lazy_data.is_lazy
    tc_b = TrainingConfig(model=mc, nepochs=2, batch_size=BATCH, backend="pytorch", accelerator="cpu",
                          realspace_weight=realspace, n_groups=24, output_dir=tmp_path / "b", seed=3)
    lazy = train_model(model, lazy_data, tc_b, enable_progress_bar=False)
    np.testing.assert_allclose(lazy.history["loss"], eager.history["loss"], rtol=1e-5)
    a, b = eager.model.native.state_dict(), lazy.model.native.state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)


def test_inference_on_lazy_equals_in_memory(stored, tmp_path):
    ds, path = stored
    mc = ModelConfig(N=64, n_filters_scale=1)
    model = plugin.ptycho_build_model(mc, None)
    icfg = InferenceConfig(model=mc, batch_size=BATCH, backend="pytorch", accelerator="cpu")
    eager = infer_model(model, group_for_inference(ds, icfg), icfg)
    lazy = infer_model(model, _one_batch_at_most(group_for_inference(open_lazy_dataset(path), icfg)), icfg)
    np.testing.assert_allclose(lazy.patches, eager.patches, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(lazy.positions, eager.positions)


def test_workflow_streams_a_lazy_directory(stored, tmp_path, monkeypatch):
    _, path = stored
    npz = canonical_fixture_path()
    mc = ModelConfig(N=64, n_filters_scale=1)
    common = dict(model=mc, nepochs=1, batch_size=BATCH, backend="pytorch", accelerator="cpu", seed=1)
    eager_model = workflow.train(TrainingConfig(train_data_file=npz, output_dir=tmp_path / "e", **common))
    # lazy sources refuse reads of more than one batch; inference streams in chunks of 10 groups
    monkeypatch.setattr(grouping, "MAX_FETCH_BYTES", BATCH * 64 * 64 * 8)
    monkeypatch.setattr(workflow, "STREAM_CHUNK_BYTES", 10 * 64 * 64 * 8)
    lazy_model = workflow.train(TrainingConfig(train_data_file=path, output_dir=tmp_path / "l", **common))
    np.testing.assert_allclose(lazy_model.history["loss"], eager_model.history["loss"], rtol=1e-5)
    for weight in ("probe", "uniform"):  # the streamed stitch sums each chunk's weights: the same object
        icfg = InferenceConfig(model=mc, batch_size=BATCH, backend="pytorch", accelerator="cpu", stitch_weight=weight)
        eager = workflow.infer(InferenceConfig(test_data_file=npz, output_dir=tmp_path / f"ei{weight}", **_kw(icfg)),
                               model=eager_model.model, write=False)
        lazy = workflow.infer(InferenceConfig(test_data_file=path, output_dir=tmp_path / f"li{weight}", **_kw(icfg)),
                              model=eager_model.model)
        assert lazy.metadata.streamed and not eager.metadata.streamed
        assert lazy.object.shape == eager.object.shape and lazy.origin == eager.origin
        scale = np.abs(eager.object).max()
        np.testing.assert_allclose(lazy.object, eager.object, rtol=0, atol=1e-5 * scale)
        assert (tmp_path / f"li{weight}" / "reconstruction.npz").is_file()


def _kw(cfg):
    return dict(model=cfg.model, batch_size=cfg.batch_size, backend=cfg.backend, accelerator=cfg.accelerator,
                stitch_weight=cfg.stitch_weight)
