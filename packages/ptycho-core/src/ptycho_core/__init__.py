"""ptycho-core, the kernel: configs, data contracts, the backend plugin system, model bundles,
the NumPy reference physics and the ``ptycho`` command line's kernel commands (``backends``,
``info``, ``config``). The workflow and its commands are in the ``ptycho`` package.

Importing this package never imports TensorFlow or PyTorch.
"""

from ptycho_core.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
