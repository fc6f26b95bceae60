"""Hook implementations of the ``pytorch`` backend (entry point ``ptycho.backends: pytorch``).

Framework modules are imported inside the hooks, so importing this module (to register
the backend) stays cheap; ``torch`` is imported on the first operation.
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

BACKEND_ID = "pytorch"
DISTRIBUTION = "ptycho-torch"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def devices() -> tuple[str, ...]:
    """``('cpu',)`` plus ``'cuda:<i> (<name>)'`` for every CUDA device torch sees."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    return tuple(found)


@hookimpl
def ptycho_register_backend() -> BackendInfo:
    """Backend id, versions, devices and weight format."""
    return BackendInfo(
        id=BACKEND_ID,
        distribution=DISTRIBUTION,
        version=_version(DISTRIBUTION),
        framework="pytorch",
        framework_versions={"torch": _version("torch"), "lightning": _version("lightning")},
        devices=devices(),
        weight_format="model.ckpt (Lightning checkpoint, hyper_parameters as plain dicts; torch.load weights_only)",
        description="PtychoPINN on PyTorch + Lightning",
    )


@hookimpl
def ptycho_build_model(model_config: ModelConfig, training_config: TrainingConfig | None) -> ModelHandle:
    from ptycho_torch.io import build_handle

    return build_handle(model_config, training_config)


@hookimpl
def ptycho_train(model: ModelHandle, data: GroupedData, config: TrainingConfig,
                 resume_from: Path | None) -> TrainResult:
    from ptycho_core.console import show_progress
    from ptycho_torch.train import train_model

    return train_model(model, data, config, resume_from, enable_progress_bar=show_progress(config.progress))


@hookimpl
def ptycho_infer(model: ModelHandle, data: GroupedData, config: InferenceConfig) -> InferenceResult:
    from ptycho_torch.infer import infer_model

    return infer_model(model, data, config)


@hookimpl
def ptycho_forward(model: ModelHandle, data: GroupedData, config: TrainingConfig) -> ForwardOutput:
    from ptycho_torch.infer import forward_model

    return forward_model(model, data, config)


@hookimpl
def ptycho_save_model(model: ModelHandle, directory: Path) -> list[str]:
    from ptycho_torch.io import save_model

    return save_model(model, directory)


@hookimpl
def ptycho_load_model(directory: Path, manifest: dict, model_config: ModelConfig,
                      training_config: TrainingConfig | None) -> ModelHandle:
    from ptycho_torch.io import load_model

    return load_model(directory, manifest, model_config, training_config)


@hookimpl
def ptycho_export_weights(model: ModelHandle) -> dict[str, np.ndarray]:
    from ptycho_torch.io import export_weights

    return export_weights(model)


@hookimpl
def ptycho_import_weights(model_config: ModelConfig, training_config: TrainingConfig | None,
                          weights: dict[str, np.ndarray]) -> ModelHandle:
    from ptycho_torch.io import import_weights

    return import_weights(model_config, training_config, weights)


@hookimpl
def ptycho_reassemble_patches(patches: np.ndarray, positions: np.ndarray, crop_size: int,
                              canvas_shape: tuple[int, int], origin: tuple[int, int]) -> np.ndarray:
    from ptycho_torch.reassemble import reassemble_torch

    return reassemble_torch(patches, positions, crop_size, canvas_shape, origin)
