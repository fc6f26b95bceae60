"""Hook specifications of the ``ptycho`` plugin system (pluggy project name ``"ptycho"``).

A backend is a :class:`~ptycho_core.backend_base.BackendEntrypoint` subclass exposed under
the ``ptycho.backends`` entry-point group; its hook implementations are generated from these
specifications (a module whose functions are decorated with :data:`hookimpl` works too).
The operation hooks below are the backend's operations without the ``ptycho_`` prefix, with
exactly these arguments. Only NumPy arrays and the attrs
contract objects of :mod:`ptycho_core.contracts` cross this boundary; framework
objects stay inside the backend (``ModelHandle.native``).

The core dispatches every operation hook to the selected backend only (plus
non-backend plugins such as wrappers and the ``trylast`` NumPy reference reassembly),
so an implementation never has to check which backend was asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
    from ptycho_core.contracts import (
        BackendInfo,
        ForwardOutput,
        GroupedData,
        InferenceResult,
        ModelHandle,
        TrainResult,
    )

PROJECT_NAME = "ptycho"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def ptycho_register_backend() -> BackendInfo:
    """Describe the backend: id, versions, weight format and the devices it can see.

    Called once per plugin when ``ptycho backends --devices`` or a dispatch needs it.
    """


@hookspec(firstresult=True)
def ptycho_build_model(model_config: ModelConfig, training_config: TrainingConfig | None) -> ModelHandle | None:
    """Build an untrained model (weights seeded from ``training_config.seed`` if given).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ptycho_train(
    model: ModelHandle, data: GroupedData, config: TrainingConfig, resume_from: Path | None
) -> TrainResult | None:
    """Train ``model`` on ``data`` for ``config.nepochs`` epochs.

    Checkpoints go under ``config.output_dir / 'checkpoints'``. With ``resume_from``
    (a checkpoint written by an earlier run) training continues from it and ends at the
    same total number of epochs. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ptycho_infer(model: ModelHandle, data: GroupedData, config: InferenceConfig) -> InferenceResult | None:
    """Predict object patches for every group of ``data`` (no gradients, eval mode).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ptycho_forward(model: ModelHandle, data: GroupedData, config: TrainingConfig) -> ForwardOutput | None:
    """Run model and physics layer on ``data`` as one batch and return patches, amplitudes and loss.

    Used for parity checks between backends. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ptycho_save_model(model: ModelHandle, directory: Path) -> list[str] | None:
    """Write the model's weight files into ``directory`` (a bundle's staging folder).

    Returns the file names written (relative to ``directory``). The core writes
    ``manifest.json`` and ``config.json`` itself. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ptycho_load_model(
    directory: Path, manifest: dict, model_config: ModelConfig, training_config: TrainingConfig | None
) -> ModelHandle | None:
    """Load a model from a verified bundle ``directory`` written by this backend.

    Must never unpickle untrusted data. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ptycho_export_weights(model: ModelHandle) -> dict[str, np.ndarray] | None:
    """Return all weights under canonical names and layouts (docs/conventions.md s6).

    Used by ``ptycho convert``. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ptycho_import_weights(
    model_config: ModelConfig, training_config: TrainingConfig | None, weights: dict[str, np.ndarray]
) -> ModelHandle | None:
    """Build a model and set its weights from canonical names and layouts.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ptycho_reassemble_patches(
    patches: np.ndarray, positions: np.ndarray, crop_size: int, canvas_shape: tuple[int, int],
    origin: tuple[int, int],
) -> np.ndarray | None:
    """Stitch patches onto a canvas (physics.md s6, docs/conventions.md s4).

    ``patches``: (P, N, N) complex64; ``positions``: (P, 2) float64 (x, y) object pixels;
    the canvas has shape ``canvas_shape`` (H, W) and its pixel [0, 0] is object pixel
    ``origin`` (x0, y0). Returns the (H, W) complex64 coverage-normalised object.
    The NumPy reference implements this with ``trylast``. Stops at first non-None result.
    """
