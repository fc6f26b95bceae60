"""The ``numpy-template`` backend as one class (entry point
``ptycho.backends: numpy-template = ptycho_backend_template.plugin:TemplateBackend``).

The class says what the backend is and where each operation lives; the core generates the
pluggy hook implementations from it and takes the arguments of every operation from its hook
specification (:mod:`ptycho_core.hookspecs`). The modules named in ``operations`` are
imported on the first call, so importing this module (which the registry does when the
backend is selected) stays cheap. Only NumPy arrays and the contract objects of
:mod:`ptycho_core.contracts` cross the boundary; the model itself
(:class:`~ptycho_backend_template.model.TemplateModel`) stays in ``ModelHandle.native``.
"""

from __future__ import annotations

from ptycho_backend_template import DISTRIBUTION
from ptycho_backend_template.model import BACKEND_ID
from ptycho_core.backend_base import BackendEntrypoint


class TemplateBackend(BackendEntrypoint):
    """A log-linear NumPy model on the ptycho_core.reference physics."""

    id = BACKEND_ID
    distribution = DISTRIBUTION
    framework = "numpy"
    framework_distributions = ("numpy",)
    weight_format = "model.npz (numpy.savez, read with allow_pickle=False)"
    description = "template backend: log-linear NumPy model on the ptycho_core.reference physics"
    # devices() is inherited: ("cpu",). Each function is called with its hook's arguments, by name.
    operations = {
        "build_model": "ptycho_backend_template.io:build_handle",
        "train": "ptycho_backend_template.train:train_model",
        "infer": "ptycho_backend_template.infer:infer_model",
        "forward": "ptycho_backend_template.infer:forward_model",
        "save_model": "ptycho_backend_template.io:save_model",
        "load_model": "ptycho_backend_template.io:load_model",
        "export_weights": "ptycho_backend_template.io:export_weights",
        "import_weights": "ptycho_backend_template.io:import_weights",
        # the NumPy reference; a backend with a faster stitcher names it here
        "reassemble_patches": "ptycho_core.reference:reassemble",
    }
