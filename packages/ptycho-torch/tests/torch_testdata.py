"""Synthetic test data and configs for the ptycho-torch tests (imported by conftest.py and the DDP script)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from ptycho_ci.conformance_data import gaussian_probe
from ptycho_core.config import ModelConfig, TrainingConfig
from ptycho_core.contracts import GroupedData


def smooth_object(size: int = 128, seed: int = 0) -> np.ndarray:
    """A random smooth complex object (amplitude in [0.5, 1], phase in [-1, 1])."""
    rng = np.random.default_rng(seed)
    amp = gaussian_filter(rng.random((size, size)), 4)
    phase = gaussian_filter(rng.random((size, size)), 4)
    amp = 0.5 + 0.5 * (amp - amp.min()) / np.ptp(amp)
    phase = 2.0 * (phase - phase.min()) / np.ptp(phase) - 1.0
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def make_grouped(*, N: int = 64, gridsize: int = 1, n_groups: int = 64, seed: int = 0,
                 object_size: int = 128) -> GroupedData:
    """Simulated GroupedData: noise-free amplitudes of random sub-pixel scan positions.

    Groups of C = gridsize**2 nearest neighbours (seed point + C-1 closest); offsets are
    relative to the group centroid; ``Y`` holds the ground-truth object patches.
    """
    from ptycho_core import reference

    rng = np.random.default_rng(seed)
    obj = smooth_object(object_size, seed)
    C = gridsize * gridsize
    lo, hi = N / 2 + 4, object_size - N / 2 - 4
    n_pos = max(n_groups * C, 8)
    pos = rng.uniform(lo, hi, size=(n_pos, 2))
    seeds = rng.choice(n_pos, size=n_groups, replace=n_groups > n_pos)
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    idx = np.argsort(dist[seeds], axis=1)[:, :C]  # (B, C), first column is the seed itself
    group_pos = pos[idx]  # (B, C, 2)
    centroids = group_pos.mean(axis=1)
    offsets = group_pos - centroids[:, None, :]
    probe = gaussian_probe(N)
    probe_n = reference.normalize_probe(probe)
    patches = reference.extract_patches(obj, group_pos.reshape(-1, 2), N)  # (B*C, N, N)
    amps = reference.diffract(patches * probe_n)
    k = reference.normalisation_factor(amps)
    X = (k * amps).reshape(n_groups, C, N, N).transpose(0, 2, 3, 1)
    Y = patches.reshape(n_groups, C, N, N).transpose(0, 2, 3, 1)
    return GroupedData(X=X, offsets=offsets, centroids=centroids, indices=idx, probe=probe, norm_factor=k, Y=Y,
                       object_shape=obj.shape)


def tiny_training_config(tmp_path, *, gridsize: int = 1, **kw) -> TrainingConfig:
    """A fast TrainingConfig: nfs=1, 2 epochs, output under ``tmp_path``, CPU."""
    model = ModelConfig(N=64, gridsize=gridsize, n_filters_scale=1)
    base = {"model": model, "nepochs": 2, "batch_size": 16, "output_dir": tmp_path / "run", "backend": "pytorch",
            "accelerator": "cpu", "seed": 3}
    base.update(kw)
    return TrainingConfig(**base)
