"""A pure-NumPy fake backend for testing the conformance suite (registered in-process, no entry point).

Its "network" is a per-pixel complex gain applied to every channel of X; the physics is
the NumPy reference. :class:`BrokenFakeBackend` has two deliberate contract violations
(positions as (y, x) pairs and transposed reassembly) that the suite must catch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptycho_core import hookimpl, reference
from ptycho_core.config import TrainingConfig, effective_nphotons
from ptycho_core.contracts import BackendInfo, ForwardOutput, InferenceResult, ModelHandle, TrainResult
from ptycho_core.errors import BundleError, ConfigError

WEIGHTS_FILE = "fake.npz"
WEIGHT_NAMES = ("gain", "phase", "intensity_scale", "probe.real", "probe.imag")


class FakeBackend:
    """Hook implementations of backend ``fakebackend``."""

    backend_id = "fakebackend"

    def _handle(self, model_config, training_config, native: dict) -> ModelHandle:
        return ModelHandle(backend=self.backend_id, model_config=model_config, training_config=training_config,
                           native=native)

    @hookimpl
    def ptycho_register_backend(self) -> BackendInfo:
        return BackendInfo(id=self.backend_id, distribution="ptycho-fake", version="0.0.1", framework="numpy",
                           framework_versions={"numpy": np.__version__}, devices=("cpu",), weight_format=WEIGHTS_FILE)

    @hookimpl
    def ptycho_build_model(self, model_config, training_config):
        tc = training_config if training_config is not None else TrainingConfig(model=model_config,
                                                                                backend=self.backend_id)
        rng = np.random.default_rng(tc.seed)
        N = model_config.N
        native = {
            "gain": (1.0 + 0.05 * rng.normal(size=(N, N))).astype(np.float32),
            "phase": (0.1 * rng.normal(size=(N, N))).astype(np.float32),
            "intensity_scale": np.array(reference.physics_scale(effective_nphotons(tc), N), dtype=np.float32),
            "probe.real": np.zeros((N, N), np.float32),
            "probe.imag": np.zeros((N, N), np.float32),
        }
        return self._handle(model_config, training_config, native)

    @staticmethod
    def _patches(native: dict, X: np.ndarray) -> np.ndarray:
        gain = native["gain"] * np.exp(1j * native["phase"])
        return (X * gain[None, :, :, None]).astype(np.complex64)

    @staticmethod
    def _probe(native: dict, model_config, data) -> np.ndarray:
        probe = native["probe.real"] + 1j * native["probe.imag"]
        if np.any(probe != 0):
            return probe.astype(np.complex64)
        return reference.normalize_probe(data.probe, model_config.probe_scale, model_config.probe_mask,
                                         model_config.gaussian_smoothing_sigma)

    def _forward(self, native: dict, model_config, data, config) -> ForwardOutput:
        patches = self._patches(native, data.X)
        probe = self._probe(native, model_config, data)
        out = reference.physics_forward(patches, data.offsets, probe, gridsize=model_config.gridsize,
                                        object_big=model_config.object_big, scale=float(native["intensity_scale"]))
        s0 = reference.physics_scale(effective_nphotons(config), model_config.N)
        loss = reference.total_loss(out["lam"], data.X, s0, patches=patches, Y=data.Y, nll_weight=config.nll_weight,
                                    mae_weight=config.mae_weight, realspace_weight=config.realspace_weight)
        return ForwardOutput(patches=patches, amplitude=out["amplitude"], loss=loss)

    @hookimpl
    def ptycho_forward(self, model, data, config):
        return self._forward(model.native, model.model_config, data, config)

    @hookimpl
    def ptycho_train(self, model, data, config, resume_from):
        native = {k: np.array(v, copy=True) for k, v in model.native.items()}
        probe = self._probe(native, model.model_config, data)
        native["probe.real"], native["probe.imag"] = probe.real.astype(np.float32), probe.imag.astype(np.float32)
        losses = []
        for _ in range(config.nepochs):
            losses.append(self._forward(native, model.model_config, data, config).loss)
            native["gain"] = (native["gain"] * 0.99).astype(np.float32)
        trained = self._handle(model.model_config, config, native)
        return TrainResult(model=trained, history={"loss": losses}, epochs=config.nepochs)

    @hookimpl
    def ptycho_infer(self, model, data, config):
        patches = self._patches(model.native, data.X)
        if model.model_config.stitches_group_object:  # gridsize > 1: the merged group objects at the centroids
            merged = reference.merge_patches(patches, data.offsets, model.model_config.gridsize)[1]
            return InferenceResult(patches=merged, positions=data.centroids)
        flat = np.moveaxis(patches, -1, 1).reshape(-1, data.N, data.N)
        return InferenceResult(patches=flat, positions=data.positions.reshape(-1, 2))

    @hookimpl
    def ptycho_export_weights(self, model):
        return {k: np.array(v, dtype=np.float32, copy=True) for k, v in model.native.items()}

    @hookimpl
    def ptycho_import_weights(self, model_config, training_config, weights):
        missing = [k for k in WEIGHT_NAMES if k not in weights]
        if missing:
            raise ConfigError(f"weights: missing {missing}")
        native = {k: np.array(weights[k], dtype=np.float32, copy=True) for k in WEIGHT_NAMES}
        return self._handle(model_config, training_config, native)

    @hookimpl
    def ptycho_save_model(self, model, directory):
        np.savez(Path(directory) / WEIGHTS_FILE, **self.ptycho_export_weights(model))
        return [WEIGHTS_FILE]

    @hookimpl
    def ptycho_load_model(self, directory, manifest, model_config, training_config):
        owner = manifest.get("backend")
        if owner != self.backend_id or not (Path(directory) / WEIGHTS_FILE).is_file():
            raise BundleError(f"{directory}: bundle of backend {owner!r} has no {WEIGHTS_FILE}; not loadable by "
                              f"{self.backend_id!r}")
        with np.load(Path(directory) / WEIGHTS_FILE, allow_pickle=False) as f:
            weights = {k: f[k] for k in f.files}
        return self.ptycho_import_weights(model_config, training_config, weights)


class BrokenFakeBackend(FakeBackend):
    """Violates two contracts: channel-major patch order and transposed reassembly."""

    backend_id = "brokenfake"

    @hookimpl
    def ptycho_infer(self, model, data, config):
        result = super().ptycho_infer(model, data, config)
        return InferenceResult(patches=result.patches, positions=result.positions[:, ::-1])  # (y, x), not (x, y)

    @hookimpl
    def ptycho_reassemble_patches(self, patches, positions, crop_size, canvas_shape, origin):
        return reference.reassemble(np.swapaxes(patches, 1, 2), positions, crop_size, canvas_shape, origin)
