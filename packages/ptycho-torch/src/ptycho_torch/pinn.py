"""The network, physics layer and loss as a plain ``torch.nn.Module``, without Lightning.

:class:`PtychoPINN` is what inference, bundle loading and weight import build: importing this
module imports torch but not Lightning (whose import pulls ``torch._dynamo``, torchmetrics and
SciPy, about 2.5 s on a 2-core machine; docs/benchmarks-performance.md). Training wraps it in
:class:`ptycho_torch.module.PtychoLightningModule`, a subclass with the Lightning hooks: same
submodules, so the same state-dict names (``net.*``, ``physics.*``) in bundles and checkpoints.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ptycho_core.config import ModelConfig, TrainingConfig, effective_nphotons
from ptycho_torch.model import PtychoNet
from ptycho_torch.physics import PhysicsLayer, losses


def config_to_dict(config: ModelConfig | TrainingConfig | None) -> dict | None:
    """A config as a plain dict (``ptycho_core.serialize.to_dict``: paths as strings, nested model dict)."""
    from ptycho_core.serialize import to_dict

    return None if config is None else to_dict(config)


def model_config_from_dict(d: dict) -> ModelConfig:
    """Inverse of :func:`config_to_dict` for :class:`ModelConfig`."""
    from ptycho_core.serialize import from_dict

    return from_dict(ModelConfig, d, source="hyper_parameters.model_config")


def training_config_from_dict(d: dict | None) -> TrainingConfig | None:
    """Inverse of :func:`config_to_dict` for :class:`TrainingConfig` (``None`` stays ``None``)."""
    from ptycho_core.serialize import from_dict

    return None if d is None else from_dict(TrainingConfig, d, source="hyper_parameters.training_config")


def physics_scale(nphotons: float, N: int) -> float:
    """``s0 = sqrt(nphotons) / (N/2)`` through the NumPy reference."""
    from ptycho_core import reference

    return float(reference.physics_scale(nphotons, N))


def normalized_probe(probe: np.ndarray, model_config: ModelConfig) -> torch.Tensor:
    """Initial probe ``reference.normalize_probe(...)`` (conventions s2) as a complex64 tensor."""
    from ptycho_core import reference

    p = reference.normalize_probe(np.asarray(probe, dtype=np.complex64), model_config.probe_scale,
                                  model_config.probe_mask, model_config.gaussian_smoothing_sigma)
    return torch.from_numpy(np.ascontiguousarray(p, dtype=np.complex64))


class PtychoPINN(nn.Module):
    """PtychoPINN (network + physics layer + loss) as a plain ``nn.Module``.

    Parameters
    ----------
    model_config : dict
        :class:`~ptycho_core.config.ModelConfig` as a plain dict (:func:`config_to_dict`).
    training_config : dict, optional
        :class:`~ptycho_core.config.TrainingConfig` as a plain dict; sets the loss weights,
        ``nphotons`` and which physics parameters are trainable.
    """

    def __init__(self, model_config: dict, training_config: dict | None = None) -> None:
        super().__init__()
        mc = model_config_from_dict(model_config)
        tc = training_config_from_dict(training_config)
        self.model_config, self.training_config = mc, tc
        self.net = PtychoNet(N=mc.N, gridsize=mc.gridsize, n_filters_scale=mc.n_filters_scale,
                             amp_activation=mc.amp_activation, pad_object=mc.pad_object, probe_big=mc.probe_big,
                             object_big=mc.object_big, object_window=mc.object_window)
        self.s0 = physics_scale(effective_nphotons(tc), mc.N)
        self.physics = PhysicsLayer(
            N=mc.N, gridsize=mc.gridsize, object_big=mc.object_big, scale=self.s0, window=mc.window_side,
            scale_trainable=tc.intensity_scale_trainable if tc is not None else False,
            probe_trainable=tc.probe_trainable if tc is not None else False,
        )
        self.set_compiled(False)

    def hyperparameters(self) -> dict[str, dict | None]:
        """The constructor's arguments as plain dicts (a checkpoint's ``hyper_parameters``)."""
        return {"model_config": config_to_dict(self.model_config),
                "training_config": config_to_dict(self.training_config)}

    def set_compiled(self, on: bool) -> None:
        """Run the network's training forward through ``torch.compile`` (``TrainingConfig.compile``) or not.

        The compiled wrapper shares the network's parameters but is not a registered submodule,
        so state dicts and checkpoints keep the plain ``net.*`` names; evaluation-mode calls
        (inference) always use the uncompiled network.
        """
        object.__setattr__(self, "_compiled_net", torch.compile(self.net) if on else None)

    def configs(self) -> tuple[ModelConfig, TrainingConfig | None]:
        """The configs this module was built from."""
        return self.model_config, self.training_config

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Object patches (B, C, N, N) complex64 for amplitudes X (B, C, N, N)."""
        return self.net(X)

    def compute(self, X: torch.Tensor, offsets: torch.Tensor, Y: torch.Tensor | None = None,
                probe: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Network, physics and loss terms for one batch (channels-first tensors)."""
        tc = self.training_config
        weights: dict[str, Any] = {}
        if tc is not None:
            weights = {"nll_weight": tc.nll_weight, "mae_weight": tc.mae_weight,
                       "realspace_weight": tc.realspace_weight}
        net = self._compiled_net if self.training and self._compiled_net is not None else self.net
        patches = net(X)
        lam, _ = self.physics(patches, offsets, probe)
        out = losses(lam, X, self.s0, patches=patches, Y=Y, **weights)
        out["patches"], out["lambda"] = patches, lam
        return out


def adam(params: Any, lr: float) -> torch.optim.Adam:
    """Adam with torch's fused kernel where every parameter is on a device that has it (CPU, CUDA).

    On a CPU the default Adam runs about ten elementwise kernels per parameter tensor
    (66 tensors in the default network); the fused one updates each tensor in one pass.
    Same update rule, same state-dict layout (``exp_avg``, ``exp_avg_sq``, ``step``).
    """
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused)


def grouped_tensors(data: Any, *, with_y: bool = False) -> tuple[torch.Tensor, ...]:
    """``GroupedData`` -> channels-first tensors ``(X float32, offsets float32[, Y complex64])``."""
    X = torch.from_numpy(np.ascontiguousarray(np.transpose(data.X, (0, 3, 1, 2)), dtype=np.float32))
    offsets = torch.from_numpy(np.ascontiguousarray(data.offsets, dtype=np.float32))
    if not with_y:
        return X, offsets
    Y = torch.from_numpy(np.ascontiguousarray(np.transpose(data.Y, (0, 3, 1, 2)), dtype=np.complex64))
    return X, offsets, Y
