"""ptycho-core: configs, data contracts, the backend plugin system, model bundles,
the NumPy reference physics, the workflow and the ``ptycho`` command line.

Importing this package never imports TensorFlow or PyTorch.
"""

from ptycho_core.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
