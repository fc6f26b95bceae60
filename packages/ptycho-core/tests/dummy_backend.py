"""A tiny NumPy backend used by ptycho-core's tests (installed via a temporary dist-info).

Its "model" is one complex gain per pixel: patches = gain * X. Enough to exercise
dispatch, bundles and the workflow plumbing without a framework.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptycho_core import hookimpl
from ptycho_core.contracts import BackendInfo, InferenceResult, ModelHandle, TrainResult

BACKEND_ID = "dummy"
CALLS: list[str] = []


@hookimpl
def ptycho_register_backend():
    return BackendInfo(id=BACKEND_ID, distribution="ptycho-dummy", version="0.1", framework="numpy",
                       framework_versions={"numpy": np.__version__}, devices=("cpu",), weight_format="gain.npy")


@hookimpl
def ptycho_build_model(model_config, training_config):
    CALLS.append("build")
    rng = np.random.default_rng(0 if training_config is None else training_config.seed)
    gain = rng.normal(size=(model_config.N, model_config.N)).astype(np.float32)
    return ModelHandle(backend=BACKEND_ID, model_config=model_config, training_config=training_config, native=gain)


@hookimpl
def ptycho_train(model, data, config, resume_from):
    CALLS.append("train")
    gain = model.native * 0.5
    trained = ModelHandle(backend=BACKEND_ID, model_config=model.model_config, training_config=config, native=gain)
    return TrainResult(model=trained, history={"loss": [2.0, 1.0][: config.nepochs]}, epochs=config.nepochs)


@hookimpl
def ptycho_infer(model, data, config):
    CALLS.append("infer")
    x = np.moveaxis(data.X, -1, 1).reshape(-1, data.N, data.N)
    patches = (x * model.native).astype(np.complex64)
    return InferenceResult(patches=patches, positions=data.positions.reshape(-1, 2), metadata={"backend": BACKEND_ID})


@hookimpl
def ptycho_save_model(model, directory):
    np.save(Path(directory) / "gain.npy", model.native, allow_pickle=False)
    return ["gain.npy"]


@hookimpl
def ptycho_load_model(directory, manifest, model_config, training_config):
    gain = np.load(Path(directory) / "gain.npy", allow_pickle=False)
    return ModelHandle(backend=BACKEND_ID, model_config=model_config, training_config=training_config, native=gain)
