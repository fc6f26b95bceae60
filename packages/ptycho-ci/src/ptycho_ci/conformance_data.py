"""Tiny synthetic inputs of the backend conformance suite, built with the NumPy reference.

Everything is seeded and small (N = 64, a few groups), so a backend's conformance run
stays within seconds on a CPU.
"""

from __future__ import annotations

import numpy as np

from ptycho_core import reference
from ptycho_core.config import ModelConfig
from ptycho_core.contracts import GroupedData

OBJECT_SIZE = 128
NEIGHBOUR_STEP = 5.0


def smooth_object(size: int = OBJECT_SIZE, seed: int = 0) -> np.ndarray:
    """A smooth complex object from a few random plane waves (amplitude in [0.5, 1], |phase| <= 1)."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[:size, :size] / size
    amp, phase = np.zeros((size, size)), np.zeros((size, size))
    for target in (amp, phase):
        for _ in range(4):
            fr, fc, shift = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
            target += np.cos(2 * np.pi * (fr * r + fc * c) + shift)
    amp = 0.5 + 0.5 * (amp - amp.min()) / np.ptp(amp)
    phase = 2.0 * (phase - phase.min()) / np.ptp(phase) - 1.0
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def gaussian_probe(N: int) -> np.ndarray:
    """A smooth complex probe of width about N/4 with a gentle phase curvature."""
    r, c = np.mgrid[:N, :N] - N / 2
    rho2 = (r**2 + c**2) / (N / 4) ** 2
    return (np.exp(-rho2) * np.exp(0.3j * rho2)).astype(np.complex64)


def synthetic_grouped(model_config: ModelConfig, n_groups: int = 4, seed: int = 0) -> GroupedData:
    """Noise-free grouped data for ``model_config`` (its N, gridsize and probe settings).

    Each group is a seed position and its C - 1 neighbours on a jittered square of side
    ``NEIGHBOUR_STEP`` pixels; offsets are relative to the group centroid, ``Y`` holds the
    true object patches and ``X = k * diffract(patch * probe_n)`` (physics.md s3).
    """
    N, g = model_config.N, model_config.gridsize
    C = g * g
    rng = np.random.default_rng(seed)
    size = max(OBJECT_SIZE, N + int(NEIGHBOUR_STEP * g) + 24)
    obj = smooth_object(size, seed)
    grid = np.stack(np.meshgrid(np.arange(g), np.arange(g), indexing="xy"), axis=-1).reshape(C, 2) * NEIGHBOUR_STEP
    lo, hi = N / 2 + 2, size - N / 2 - 2 - NEIGHBOUR_STEP * (g - 1)
    seeds = rng.uniform(lo, hi, size=(n_groups, 1, 2))
    positions = seeds + grid[None] + rng.uniform(-0.5, 0.5, size=(n_groups, C, 2))
    centroids = positions.mean(axis=1)
    offsets = positions - centroids[:, None, :]
    probe = gaussian_probe(N)
    probe_n = reference.normalize_probe(probe, model_config.probe_scale, model_config.probe_mask,
                                        model_config.gaussian_smoothing_sigma)
    patches = reference.extract_patches(obj, positions.reshape(-1, 2), N)
    amplitudes = reference.diffract(patches * probe_n)
    k = reference.normalisation_factor(amplitudes)
    X = (k * amplitudes).reshape(n_groups, C, N, N).transpose(0, 2, 3, 1)
    Y = patches.reshape(n_groups, C, N, N).transpose(0, 2, 3, 1)
    return GroupedData(X=X, offsets=offsets, centroids=centroids, indices=np.arange(n_groups * C).reshape(n_groups, C),
                       probe=probe, norm_factor=k, Y=Y, object_shape=obj.shape)


def marker_object(size: int = 96) -> np.ndarray:
    """An asymmetric letter "F" (amplitude 1, phase 0.5) on a 0.2 background: flips and transposes show."""
    amp = np.full((size, size), 0.2)
    phase = np.zeros((size, size))
    top, left, h, w, t = size // 4, size // 3, size // 2, size // 3, max(size // 16, 2)
    for rows, cols in ((slice(top, top + h), slice(left, left + t)),                # stem
                       (slice(top, top + t), slice(left, left + w)),                # top bar
                       (slice(top + h // 2 - t // 2, top + h // 2 + t - t // 2), slice(left, left + 2 * w // 3))):
        amp[rows, cols] = 1.0
        phase[rows, cols] = 0.5
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def marker_scan(size: int = 96, N: int = 64, crop: int = 16, step: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Integer scan positions (x, y) on a square grid whose crops tile the marker, and their patches."""
    obj = marker_object(size)
    axis = np.arange(crop, size - crop + 1, step, dtype=np.float64)
    xs, ys = np.meshgrid(axis, axis, indexing="xy")
    positions = np.stack([xs.ravel(), ys.ravel()], axis=1)
    return positions, reference.extract_patches(obj, positions, N)


def random_patches(N: int, count: int = 12, seed: int = 0, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Random complex patches at random sub-pixel positions inside a ``size`` square object."""
    rng = np.random.default_rng(seed)
    patches = (rng.normal(size=(count, N, N)) + 1j * rng.normal(size=(count, N, N))).astype(np.complex64)
    positions = rng.uniform(size * 0.3, size * 0.7, size=(count, 2))
    return patches, positions
