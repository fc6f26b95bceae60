"""The template's model: a log-linear map from three features of each diffraction pattern to an object patch.

For every pattern (channel ``c`` of group ``b``) the model reads three physical features of the
measured amplitude ``X`` (B, N, N, C):

- ``g``: half the log of the pattern's energy over the probe's energy. By Parseval
  (docs/conventions.md s2) ``sum(X**2) == sum(|O P_n|**2)``, so ``exp(g)`` is the amplitude of a
  uniform object that explains the pattern's photon count;
- ``(fx, fy)``: the intensity centroid of the pattern relative to the zero frequency (pixels). A
  phase ramp ``exp(2 pi i (fx x + fy y) / N)`` moves the diffraction pattern by ``(fx, fy)``.

and predicts, with ``x, y`` the patch pixel coordinates relative to the centre ``N/2``::

    log|O| = amp.offset + amp.energy_gain * g + amp.shape . basis(x, y)
    arg O  = 2 pi / N * (phase.ramp_gain[0] * fx * x + phase.ramp_gain[1] * fy * y) + phase.shape . basis(x, y)

with ``basis = (x / (N/2), y / (N/2), (x**2 + y**2) / (N/2)**2)``. Ten numbers, plus the intensity
scale ``s`` (trained in log space when ``TrainingConfig.intensity_scale_trainable``) and the probe.
The physics (merge, illumination, diffraction) and the loss are the NumPy reference's
(:func:`ptycho_core.reference.physics_forward`, :func:`ptycho_core.reference.total_loss`).

The CNN settings of :class:`~ptycho_core.config.ModelConfig` (``n_filters_scale``,
``amp_activation``, ``probe_big``, ``pad_object``) do not apply to this model; ``N``, ``gridsize``,
``object_big``, ``probe_scale``, ``probe_mask`` and ``gaussian_smoothing_sigma`` do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ptycho_core import reference
from ptycho_core.config import effective_nphotons
from ptycho_core.errors import ConfigError

if TYPE_CHECKING:
    from ptycho_core.config import ModelConfig, TrainingConfig
    from ptycho_core.contracts import GroupedData

BACKEND_ID = "numpy-template"

MODEL_PARAMETERS: dict[str, tuple[int, ...]] = {
    "amp.offset": (),
    "amp.energy_gain": (),
    "amp.shape": (3,),
    "phase.ramp_gain": (2,),
    "phase.shape": (3,),
}
"""Learned parameters of the map (name -> shape); the physics entries are added by :func:`weight_shapes`."""

INIT_STD = 0.01
"""Standard deviation of the seeded initial values of :data:`MODEL_PARAMETERS`."""

_TINY = 1e-12


def weight_shapes(N: int) -> dict[str, tuple[int, ...]]:
    """Every weight of a model with pattern side ``N``: name -> shape (all float32).

    ``intensity_scale``, ``probe.real`` and ``probe.imag`` carry the canonical names of
    docs/conventions.md s6; a zero probe means "not set yet" (an untrained model).
    """
    return {**MODEL_PARAMETERS, "intensity_scale": (), "probe.real": (N, N), "probe.imag": (N, N)}


class TemplateModel:
    """The framework object behind ``ModelHandle.native``: a dict of float32 NumPy arrays.

    Parameters
    ----------
    weights : dict of str to numpy.ndarray
        Exactly the names and shapes of :func:`weight_shapes` for ``N``.
    N : int
        Pattern side.
    """

    def __init__(self, weights: dict[str, np.ndarray], N: int) -> None:
        self.N = int(N)
        self.weights = {name: np.array(weights[name], dtype=np.float32, copy=True).reshape(shape)
                        for name, shape in weight_shapes(self.N).items()}

    def copy(self) -> TemplateModel:
        """An independent copy (training never changes the model it started from)."""
        return TemplateModel(self.weights, self.N)

    @property
    def probe_is_set(self) -> bool:
        """Whether the model holds a probe (set by training, loading or weight import)."""
        return bool(np.any(self.weights["probe.real"]) or np.any(self.weights["probe.imag"]))

    @property
    def probe(self) -> np.ndarray:
        """The held normalised probe, (N, N) complex64 (zeros when not set)."""
        return (self.weights["probe.real"] + 1j * self.weights["probe.imag"]).astype(np.complex64)

    def set_probe(self, probe_n: np.ndarray) -> None:
        """Store a normalised (N, N) complex probe."""
        self.weights["probe.real"] = np.ascontiguousarray(probe_n.real, dtype=np.float32)
        self.weights["probe.imag"] = np.ascontiguousarray(probe_n.imag, dtype=np.float32)

    @property
    def intensity_scale(self) -> float:
        """The current intensity scale ``s``."""
        return float(self.weights["intensity_scale"])


def initial_weights(model_config: ModelConfig, training_config: TrainingConfig | None) -> dict[str, np.ndarray]:
    """Weights of an untrained model: seeded small values, ``s = s0`` and no probe.

    With a training config the map's parameters are drawn from ``N(0, INIT_STD)`` with
    ``training_config.seed``; without one they start at zero.
    """
    N = model_config.N
    rng = None if training_config is None else np.random.default_rng(training_config.seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in MODEL_PARAMETERS.items():
        values = np.zeros(shape) if rng is None else rng.normal(0.0, INIT_STD, size=shape)
        weights[name] = np.asarray(values, dtype=np.float32)
    # nphotons: the config's, measured from the data by ptycho.workflow.train (a fallback when unset)
    nphotons = effective_nphotons(training_config)
    weights["intensity_scale"] = np.float32(reference.physics_scale(nphotons, N)).reshape(())
    weights["probe.real"] = np.zeros((N, N), dtype=np.float32)
    weights["probe.imag"] = np.zeros((N, N), dtype=np.float32)
    return weights


def probe_for(model: TemplateModel, data: GroupedData, model_config: ModelConfig) -> np.ndarray:
    """The model's probe when it holds one, else ``reference.normalize_probe(data.probe, ...)``."""
    if model.probe_is_set:
        return model.probe
    return reference.normalize_probe(data.probe, model_config.probe_scale, model_config.probe_mask,
                                     model_config.gaussian_smoothing_sigma)


def features(X: np.ndarray, probe_n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-pattern features ``g``, ``fx``, ``fy``, each (B, C) float64 (see the module docstring)."""
    N = X.shape[1]
    intensity = np.asarray(X, dtype=np.float64) ** 2
    energy = intensity.sum(axis=(1, 2))
    probe_energy = float(np.sum(np.abs(np.asarray(probe_n, dtype=np.complex128)) ** 2))
    g = 0.5 * np.log((energy + _TINY) / (probe_energy + _TINY))
    freq = np.arange(N, dtype=np.float64) - N // 2
    fx = np.einsum("brcn,c->bn", intensity, freq) / (energy + _TINY)
    fy = np.einsum("brcn,r->bn", intensity, freq) / (energy + _TINY)
    return g, fx, fy


def _basis(N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coord = (np.arange(N, dtype=np.float64) - N // 2) / (N / 2)
    x, y = coord[None, :], coord[:, None]
    return x, y, np.stack(np.broadcast_arrays(x, y, x * x + y * y))


def predict(params: dict[str, np.ndarray], X: np.ndarray, probe_n: np.ndarray) -> np.ndarray:
    """Object patches (B, N, N, C) complex64 for amplitudes ``X`` (B, N, N, C).

    ``params`` needs the names of :data:`MODEL_PARAMETERS` (float arrays of those shapes).
    """
    N = X.shape[1]
    g, fx, fy = features(X, probe_n)
    x, y, basis = _basis(N)
    p = {name: np.asarray(params[name], dtype=np.float64) for name in MODEL_PARAMETERS}
    amp_shape = np.tensordot(p["amp.shape"], basis, axes=1)
    phase_shape = np.tensordot(p["phase.shape"], basis, axes=1)
    log_amp = p["amp.offset"] + p["amp.energy_gain"] * g[:, None, None, :] + amp_shape[None, :, :, None]
    ramp_x = p["phase.ramp_gain"][0] * fx[:, None, None, :] * (x * N / 2)[None, :, :, None]
    ramp_y = p["phase.ramp_gain"][1] * fy[:, None, None, :] * (y * N / 2)[None, :, :, None]
    phase = 2.0 * math.pi / N * (ramp_x + ramp_y) + phase_shape[None, :, :, None]
    return (np.exp(log_amp) * np.exp(1j * phase)).astype(np.complex64)


def physics_and_loss(params: dict[str, np.ndarray], scale: float, data: GroupedData, probe_n: np.ndarray,
                     model_config: ModelConfig, training_config: TrainingConfig) -> dict:
    """Model, reference physics and reference loss on ``data`` as one batch.

    Returns
    -------
    dict
        ``patches`` (B, N, N, C) complex64, ``amplitude`` (B, N, N, C) float32 (photon units) and
        ``loss`` (float) of docs/conventions.md s3.6 with ``s0`` from ``training_config.nphotons``.
    """
    tc = training_config
    if tc.realspace_weight > 0 and data.Y is None:
        raise ConfigError("TrainingConfig.realspace_weight: > 0 needs ground-truth patches (GroupedData.Y is None); "
                          "set realspace_weight = 0 or provide an objectGuess")
    patches = predict(params, data.X, probe_n)
    out = reference.physics_forward(patches, data.offsets, probe_n, gridsize=model_config.gridsize,
                                    object_big=model_config.object_big, scale=scale)
    s0 = reference.physics_scale(effective_nphotons(tc), model_config.N)
    loss = reference.total_loss(out["lam"], data.X, s0, patches=patches, Y=data.Y, nll_weight=tc.nll_weight,
                                mae_weight=tc.mae_weight, realspace_weight=tc.realspace_weight)
    return {"patches": patches, "amplitude": out["amplitude"], "loss": float(loss)}
