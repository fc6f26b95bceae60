"""The ``pytorch`` backend (entry point ``ptycho.backends: pytorch = ptycho_torch.plugin:TorchBackend``).

:class:`TorchBackend` is a :class:`~ptycho_core.backend_base.BackendEntrypoint`; the registry
generates its hook implementations. The operations live in the modules named in
``TorchBackend.operations`` and are imported on first use, so importing this module (to
register the backend) stays cheap; ``torch`` is imported on the first operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptycho_core.backend_base import BackendEntrypoint, standard_operations

if TYPE_CHECKING:
    from pathlib import Path

    from ptycho_core.config import TrainingConfig
    from ptycho_core.contracts import GroupedData, ModelHandle, TrainResult


class TorchBackend(BackendEntrypoint):
    """PtychoPINN on PyTorch + Lightning."""

    id = "pytorch"
    distribution = "ptycho-torch"
    framework = "pytorch"
    framework_distributions = ("torch", "lightning")
    weight_format = "model.ckpt (Lightning checkpoint, hyper_parameters as plain dicts; torch.load weights_only)"
    description = "PtychoPINN on PyTorch + Lightning"
    # the modules of docs/design.md's backend layout, and this backend's own stitcher
    operations = standard_operations("ptycho_torch", reassemble_patches="ptycho_torch.reassemble:reassemble_torch")

    def devices(self) -> tuple[str, ...]:
        """``('cpu',)`` plus ``'cuda:<i> (<name>)'`` for every CUDA device torch sees."""
        import torch

        found = ["cpu"]
        if torch.cuda.is_available():
            found += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
        return tuple(found)

    def train(self, model: ModelHandle, data: GroupedData, config: TrainingConfig,
              resume_from: Path | None) -> TrainResult:
        """Lightning training; its progress bar only when ``config.progress`` and stderr is a terminal."""
        from ptycho_core.console import show_progress
        from ptycho_torch.train import train_model

        return train_model(model, data, config, resume_from, enable_progress_bar=show_progress(config.progress))
