"""The trainable model: network + physics layer + loss as one ``keras.Model`` subclass.

:class:`PtychoModel` is what ``ModelHandle.native`` holds. ``model((X, offsets))`` returns
the network's amplitude and phase and the predicted intensity; :meth:`PtychoModel.compute_loss`
gives the loss of docs/conventions.md s3.6, so Keras' own ``train_step`` (and its
``tf.distribute`` handling) trains it with ``model.fit``. The configs are kept as
attributes; the architecture is always rebuilt from them (weights travel as ``.weights.h5``).
"""

from __future__ import annotations

import numpy as np

from ptycho_core.config import ModelConfig, TrainingConfig, effective_nphotons
from ptycho_core.errors import ConfigError
from ptycho_tf._env import keras, tf
from ptycho_tf.model import build_network
from ptycho_tf.physics import PhysicsLayer, losses, physics_scale, to_complex

BACKEND_ID = "tensorflow"


def normalized_probe(probe: np.ndarray, model_config: ModelConfig) -> np.ndarray:
    """Initial probe ``reference.normalize_probe(...)`` (conventions s2), (N, N) complex64."""
    from ptycho_core import reference

    return reference.normalize_probe(np.asarray(probe, dtype=np.complex64), model_config.probe_scale,
                                     model_config.probe_mask, model_config.gaussian_smoothing_sigma)


def _unpack(inputs) -> tuple:
    """``(X, offsets)`` from a ``{'X', 'offsets'}`` dict or a pair."""
    if isinstance(inputs, dict):
        return inputs["X"], inputs["offsets"]
    return inputs[0], inputs[1]


class PtychoModel(keras.Model):
    """PtychoPINN: network, physics layer and Poisson loss.

    Parameters
    ----------
    model_config : ModelConfig
        Architecture and physics settings.
    training_config : TrainingConfig, optional
        Sets ``nphotons`` (hence ``s0``), the loss weights and which physics weights are
        trainable (intensity scale, probe). Without it both are constants.
    seed : int, optional
        Seed of the kernel initialisers.
    """

    def __init__(self, model_config: ModelConfig, training_config: TrainingConfig | None = None,
                 seed: int | None = None, **kwargs) -> None:
        kwargs.setdefault("autocast", False)  # offsets stay float64 (ptycho_tf.physics)
        super().__init__(name=kwargs.pop("name", "ptycho_pinn"), **kwargs)
        mc, tc = model_config, training_config
        self.model_config, self.training_config = mc, tc
        self.net = build_network(mc, seed=seed)
        self.s0 = physics_scale(effective_nphotons(tc), mc.N)
        self.physics = PhysicsLayer(
            N=mc.N, gridsize=mc.gridsize, object_big=mc.object_big, scale=self.s0, window=mc.window_side,
            scale_trainable=tc.intensity_scale_trainable if tc is not None else False,
            probe_trainable=tc.probe_trainable if tc is not None else False, name="physics",
        )
        self.term_weights = (
            (tc.nll_weight, tc.mae_weight, tc.realspace_weight) if tc is not None else (1.0, 0.0, 0.0)
        )
        # epoch means of the reported terms (Keras adds them to the progress bar and the epoch logs)
        self.deviance_tracker = keras.metrics.Mean(name="deviance")
        self.misfit_tracker = keras.metrics.Mean(name="misfit")
        self.built = True

    def call(self, inputs, training: bool = False) -> dict:
        """``inputs = {'X': (B,N,N,C), 'offsets': (B,C,2)}`` (or a pair) -> ``{'amp', 'phase', 'lam'}``.

        The outputs are float32 (B, N, N, C): network amplitude and phase, predicted intensity.
        """
        X, offsets = _unpack(inputs)
        amp, phase = self.net(X, training=training)
        lam, _ = self.physics(to_complex(amp, phase), offsets)
        return {"amp": amp, "phase": phase, "lam": lam}

    def loss_terms(self, X, y_pred: dict, Y=None, s0: float | None = None,
                   weights: tuple[float, float, float] | None = None) -> dict:
        """Loss terms (conventions s3.6) for a forward pass ``y_pred`` of ``self``."""
        nll_w, mae_w, rs_w = self.term_weights if weights is None else weights
        patches = to_complex(y_pred["amp"], y_pred["phase"]) if rs_w != 0 else None
        return losses(y_pred["lam"], X, self.s0 if s0 is None else s0, patches=patches, Y=Y,
                      nll_weight=nll_w, mae_weight=mae_w, realspace_weight=rs_w)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras hook: the physics loss, scaled by 1/replicas under ``tf.distribute`` like Keras' own losses.

        Also accumulates the batch's Poisson deviance and amplitude misfit into the epoch means
        ``deviance`` and ``misfit`` of the logs.
        """
        terms = self.loss_terms(_unpack(x)[0], y_pred, Y=y)
        self.deviance_tracker.update_state(terms["deviance"])
        self.misfit_tracker.update_state(terms["misfit"])
        loss = terms["loss"]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / float(replicas) if replicas > 1 else loss

    def patches(self, X, training: bool = False) -> tf.Tensor:
        """Complex object patches ``A exp(i phi)`` (B, N, N, C) complex64 for amplitudes ``X``."""
        amp, phase = self.net(X, training=training)
        return to_complex(amp, phase)

    def copy_weights_from(self, other: PtychoModel) -> None:
        """Set every network and physics weight of ``self`` from ``other`` (same model config)."""
        if other.model_config != self.model_config:
            raise ConfigError(f"model config {other.model_config} differs from {self.model_config}")
        self.net.set_weights(other.net.get_weights())
        mine = self.physics.named_variables()
        for name, var in other.physics.named_variables().items():
            mine[name].assign(var)
