"""The LightningModule: :class:`~ptycho_torch.pinn.PtychoPINN` plus Lightning's training hooks.

``PtychoLightningModule.load_from_checkpoint(path)`` needs no extra arguments because the
configs travel in the checkpoint's ``hyper_parameters`` as plain dicts (strings, numbers,
booleans), so ``torch.load(path, weights_only=True)`` also reads it. Only training builds this
class; inference and bundle loading use the plain :class:`~ptycho_torch.pinn.PtychoPINN` and do
not import Lightning.
"""

from __future__ import annotations

import lightning as L
import torch

from ptycho_core.errors import ConfigError, TrainingDivergedError
from ptycho_torch.pinn import PtychoPINN, adam


class PtychoLightningModule(PtychoPINN, L.LightningModule):
    """PtychoPINN as a LightningModule (same submodules and state-dict names as :class:`PtychoPINN`).

    Takes :class:`PtychoPINN`'s arguments; the training config also sets the learning rate here.
    """

    def __init__(self, model_config: dict, training_config: dict | None = None) -> None:
        super().__init__(model_config, training_config)
        self.save_hyperparameters()

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
