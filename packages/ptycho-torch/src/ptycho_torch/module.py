"""The LightningModule: network + physics layer + loss, configs kept as plain-dict hyper-parameters.

``PtychoLightningModule.load_from_checkpoint(path)`` needs no extra arguments because the
configs travel in the checkpoint's ``hyper_parameters`` as plain dicts (strings, numbers,
booleans), so ``torch.load(path, weights_only=True)`` also reads it.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from ptycho_core.config import ModelConfig, TrainingConfig, effective_nphotons
from ptycho_core.errors import ConfigError, TrainingDivergedError
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


class PtychoLightningModule(L.LightningModule):
    """PtychoPINN as a LightningModule.

    Parameters
    ----------
    model_config : dict
        :class:`~ptycho_core.config.ModelConfig` as a plain dict (:func:`config_to_dict`).
    training_config : dict, optional
        :class:`~ptycho_core.config.TrainingConfig` as a plain dict; sets the loss weights,
        learning rate, ``nphotons`` and which physics parameters are trainable.
    """

    def __init__(self, model_config: dict, training_config: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        mc = model_config_from_dict(model_config)
        tc = training_config_from_dict(training_config)
        self.model_config, self.training_config = mc, tc
        self.net = PtychoNet(N=mc.N, gridsize=mc.gridsize, n_filters_scale=mc.n_filters_scale,
                             amp_activation=mc.amp_activation, pad_object=mc.pad_object, probe_big=mc.probe_big,
                             object_big=mc.object_big)
        self.s0 = physics_scale(effective_nphotons(tc), mc.N)
        self.physics = PhysicsLayer(
            N=mc.N, gridsize=mc.gridsize, object_big=mc.object_big, scale=self.s0,
            scale_trainable=tc.intensity_scale_trainable if tc is not None else False,
            probe_trainable=tc.probe_trainable if tc is not None else False,
        )
        self.set_compiled(False)

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

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        X, offsets = batch[0], batch[1]
        Y = batch[2] if len(batch) > 2 else None
        out = self.compute(X, offsets, Y)
        loss = out["loss"]
        if not bool(torch.isfinite(loss)):
            lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else float("nan")
            raise TrainingDivergedError(
                f"training diverged: loss is {loss.item()} at epoch {self.current_epoch + 1}, batch {batch_idx}; "
                f"lower TrainingConfig.learning_rate (now {lr:g}) or check the data for bad values; "
                "the last good checkpoint is kept under output_dir/checkpoints"
            )
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=X.shape[0], sync_dist=True)
        # what the progress bar shows: the Poisson deviance (>= 0, 0 = perfect fit) and the relative amplitude misfit
        self.log("deviance", out["deviance"].detach(), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=X.shape[0], sync_dist=True)
        self.log("misfit", out["misfit"], on_step=False, on_epoch=True, prog_bar=True, batch_size=X.shape[0],
                 sync_dist=True)
        self.log("intensity_scale", self.physics.intensity_scale.detach(), on_step=False, on_epoch=True,
                 batch_size=X.shape[0], sync_dist=True)
        return loss

    def configure_optimizers(self) -> dict:
        tc = self.training_config
        if tc is None:
            raise ConfigError("training needs a TrainingConfig: build the module with training_config")
        # the learning-rate schedule is ptycho_core.schedule, applied by ptycho_torch.train.PlateauCallback
        return adam(self.parameters(), tc.learning_rate)


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


def check_data(model_config: ModelConfig, data: Any) -> None:
    """Raise :class:`ConfigError` if ``data`` does not fit the model's N and gridsize."""
    if data.N != model_config.N or data.channels != model_config.channels:
        raise ConfigError(
            f"data: groups of {data.channels} patterns of {data.N} x {data.N} do not fit the model "
            f"(ModelConfig.N = {model_config.N}, gridsize = {model_config.gridsize} -> "
            f"{model_config.channels} channels); regroup the data or change the model config"
        )
