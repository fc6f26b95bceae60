"""The ``tensorflow`` backend (entry point ``ptycho.backends: tensorflow = ptycho_tf.plugin:TensorFlowBackend``).

:class:`TensorFlowBackend` is a :class:`~ptycho_core.backend_base.BackendEntrypoint`; the
registry generates its hook implementations. TensorFlow and Keras are imported with the
modules named in ``TensorFlowBackend.operations`` (through :mod:`ptycho_tf._env`) on first
use, so importing this module to register the backend stays cheap; the framework loads on
the first operation or when the backend lists its devices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptycho_core.backend_base import BackendEntrypoint, standard_operations

if TYPE_CHECKING:
    from pathlib import Path

    from ptycho_core.config import TrainingConfig
    from ptycho_core.contracts import GroupedData, ModelHandle, TrainResult


class TensorFlowBackend(BackendEntrypoint):
    """PtychoPINN on TensorFlow / Keras 3."""

    id = "tensorflow"
    distribution = "ptycho-tf"
    framework = "tensorflow"
    # whichever of the two TensorFlow distributions is installed is reported
    framework_distributions = ("tensorflow", "tensorflow-cpu", "keras")
    weight_format = "model.weights.h5 (Keras HDF5 weights; architecture rebuilt from config.json)"
    description = "PtychoPINN on TensorFlow / Keras 3"
    # the modules of docs/design.md's backend layout, and this backend's own stitcher
    operations = standard_operations("ptycho_tf", reassemble_patches="ptycho_tf.reassemble:reassemble_tf")

    def devices(self) -> tuple[str, ...]:
        """``('cpu',)`` plus ``'gpu:<i> (<name>)'`` for every GPU TensorFlow sees."""
        from ptycho_tf._env import tf

        found = ["cpu"]
        for i, gpu in enumerate(tf.config.list_physical_devices("GPU")):
            details = tf.config.experimental.get_device_details(gpu)
            found.append(f"gpu:{i} ({details.get('device_name', gpu.name)})")
        return tuple(found)

    def train(self, model: ModelHandle, data: GroupedData, config: TrainingConfig,
              resume_from: Path | None) -> TrainResult:
        """Keras ``fit``; its progress bar (drawn on stdout, sent to stderr) only when wanted and on a terminal."""
        import contextlib
        import sys

        from ptycho_core.console import show_progress
        from ptycho_tf.train import train_model

        if not show_progress(config.progress):
            return train_model(model, data, config, resume_from, verbose=0)
        with contextlib.redirect_stdout(sys.stderr):  # Keras draws its progress bar on stdout
            return train_model(model, data, config, resume_from, verbose=1)
