"""Hook implementations of the ``numpy-template`` backend (entry point ``ptycho.backends: numpy-template``).

Each hook is a thin function that hands over to the module doing the work, so importing
this module (which the registry does when the backend is selected) stays cheap. Only NumPy
arrays and the contract objects of :mod:`ptycho_core.contracts` cross the boundary; the
model itself (:class:`~ptycho_backend_template.model.TemplateModel`) stays in
``ModelHandle.native``.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

from ptycho_backend_template import DISTRIBUTION
from ptycho_backend_template.model import BACKEND_ID
from ptycho_core import reference
from ptycho_core.contracts import BackendInfo
from ptycho_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
    from ptycho_core.contracts import ForwardOutput, GroupedData, InferenceResult, ModelHandle, TrainResult


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


@hookimpl
def ptycho_register_backend() -> BackendInfo:
    """Backend id, versions, devices and weight format."""
    return BackendInfo(
        id=BACKEND_ID,
        distribution=DISTRIBUTION,
        version=_version(DISTRIBUTION),
        framework="numpy",
        framework_versions={"numpy": _version("numpy")},
        devices=("cpu",),
        weight_format="model.npz (numpy.savez, read with allow_pickle=False)",
        description="template backend: log-linear NumPy model on the ptycho_core.reference physics",
    )


@hookimpl
def ptycho_build_model(model_config: ModelConfig, training_config: TrainingConfig | None) -> ModelHandle:
    from ptycho_backend_template.io import build_handle

    return build_handle(model_config, training_config)


@hookimpl
def ptycho_train(model: ModelHandle, data: GroupedData, config: TrainingConfig,
                 resume_from: Path | None) -> TrainResult:
    from ptycho_backend_template.train import train_model

    return train_model(model, data, config, resume_from)


@hookimpl
def ptycho_infer(model: ModelHandle, data: GroupedData, config: InferenceConfig) -> InferenceResult:
    from ptycho_backend_template.infer import infer_model

    return infer_model(model, data, config)


@hookimpl
def ptycho_forward(model: ModelHandle, data: GroupedData, config: TrainingConfig) -> ForwardOutput:
    from ptycho_backend_template.infer import forward_model

    return forward_model(model, data, config)


@hookimpl
def ptycho_save_model(model: ModelHandle, directory: Path) -> list[str]:
    from ptycho_backend_template.io import save_model

    return save_model(model, directory)


@hookimpl
def ptycho_load_model(directory: Path, manifest: dict, model_config: ModelConfig,
                      training_config: TrainingConfig | None) -> ModelHandle:
    from ptycho_backend_template.io import load_model

    return load_model(directory, manifest, model_config, training_config)


@hookimpl
def ptycho_export_weights(model: ModelHandle) -> dict[str, np.ndarray]:
    from ptycho_backend_template.io import export_weights

    return export_weights(model)


@hookimpl
def ptycho_import_weights(model_config: ModelConfig, training_config: TrainingConfig | None,
                          weights: dict[str, np.ndarray]) -> ModelHandle:
    from ptycho_backend_template.io import import_weights

    return import_weights(model_config, training_config, weights)


@hookimpl
def ptycho_reassemble_patches(patches: np.ndarray, positions: np.ndarray, crop_size: int,
                              canvas_shape: tuple[int, int], origin: tuple[int, int]) -> np.ndarray:
    """Stitch with the NumPy reference (a backend with a faster stitcher would call it here)."""
    return reference.reassemble(patches, positions, crop_size, canvas_shape, origin)
