"""Hook implementations of the ``tensorflow`` backend (entry point ``ptycho.backends: tensorflow``).

TensorFlow and Keras are imported inside the hooks (through :mod:`ptycho_tf._env`), so
importing this module to register the backend stays cheap; the framework loads on the first
operation or when :func:`ptycho_register_backend` lists the devices.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

from ptycho_core.contracts import BackendInfo
from ptycho_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
    from ptycho_core.contracts import ForwardOutput, GroupedData, InferenceResult, ModelHandle, TrainResult

BACKEND_ID = "tensorflow"
DISTRIBUTION = "ptycho-tf"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def devices() -> tuple[str, ...]:
    """``('cpu',)`` plus ``'gpu:<i> (<name>)'`` for every GPU TensorFlow sees."""
    from ptycho_tf._env import tf

    found = ["cpu"]
    for i, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        details = tf.config.experimental.get_device_details(gpu)
        found.append(f"gpu:{i} ({details.get('device_name', gpu.name)})")
    return tuple(found)


@hookimpl
def ptycho_register_backend() -> BackendInfo:
    """Backend id, versions, devices and weight format."""
    tf_dist = "tensorflow-cpu" if _version("tensorflow-cpu") != "unknown" else "tensorflow"
    return BackendInfo(
        id=BACKEND_ID,
        distribution=DISTRIBUTION,
        version=_version(DISTRIBUTION),
        framework="tensorflow",
        framework_versions={"tensorflow": _version(tf_dist), "keras": _version("keras")},
        devices=devices(),
        weight_format="model.weights.h5 (Keras HDF5 weights; architecture rebuilt from config.json)",
        description="PtychoPINN on TensorFlow / Keras 3",
    )


@hookimpl
def ptycho_build_model(model_config: ModelConfig, training_config: TrainingConfig | None) -> ModelHandle:
    from ptycho_tf.io import build_handle

    return build_handle(model_config, training_config)


@hookimpl
def ptycho_train(model: ModelHandle, data: GroupedData, config: TrainingConfig,
                 resume_from: Path | None) -> TrainResult:
    import contextlib
    import sys

    from ptycho_core.console import show_progress
    from ptycho_tf.train import train_model

    if not show_progress(config.progress):
        return train_model(model, data, config, resume_from, verbose=0)
    with contextlib.redirect_stdout(sys.stderr):  # Keras draws its progress bar on stdout
        return train_model(model, data, config, resume_from, verbose=1)


@hookimpl
def ptycho_infer(model: ModelHandle, data: GroupedData, config: InferenceConfig) -> InferenceResult:
    from ptycho_tf.infer import infer_model

    return infer_model(model, data, config)


@hookimpl
def ptycho_forward(model: ModelHandle, data: GroupedData, config: TrainingConfig) -> ForwardOutput:
    from ptycho_tf.infer import forward_model

    return forward_model(model, data, config)


@hookimpl
def ptycho_save_model(model: ModelHandle, directory: Path) -> list[str]:
    from ptycho_tf.io import save_model

    return save_model(model, directory)


@hookimpl
def ptycho_load_model(directory: Path, manifest: dict, model_config: ModelConfig,
                      training_config: TrainingConfig | None) -> ModelHandle:
    from ptycho_tf.io import load_model

    return load_model(directory, manifest, model_config, training_config)


@hookimpl
def ptycho_export_weights(model: ModelHandle) -> dict[str, np.ndarray]:
    from ptycho_tf.io import export_weights

    return export_weights(model)


@hookimpl
def ptycho_import_weights(model_config: ModelConfig, training_config: TrainingConfig | None,
                          weights: dict[str, np.ndarray]) -> ModelHandle:
    from ptycho_tf.io import import_weights

    return import_weights(model_config, training_config, weights)


@hookimpl
def ptycho_reassemble_patches(patches: np.ndarray, positions: np.ndarray, crop_size: int,
                              canvas_shape: tuple[int, int], origin: tuple[int, int]) -> np.ndarray:
    from ptycho_tf.reassemble import reassemble_tf

    return reassemble_tf(patches, positions, crop_size, canvas_shape, origin)
