"""A minimal third-party ptycho backend (id ``numpy-template``): a NumPy model on the reference physics.

The backend class lives in :mod:`ptycho_backend_template.plugin`, registered under the
``ptycho.backends`` entry-point group. See ``docs/writing-a-backend.md`` of the ptycho
repository for the walk-through.
"""

from ptycho_backend_template.model import BACKEND_ID

DISTRIBUTION = "ptycho-backend-template"

__all__ = ["BACKEND_ID", "DISTRIBUTION"]
