"""ptycho, the application: workflow, command-line commands, plots, refinement and the Ptychodus adapter.

It builds on ptycho-core (configs, contracts, backend registry, bundles, NumPy reference) and
ptycho-data (readers, grouping, simulation, metrics); a backend comes with an extra,
``pip install "ptycho[torch]"``. Importing this package imports no framework (and not NumPy):
:func:`reconstruct` and :func:`train`, the notebook API of :mod:`ptycho.api`, are loaded when
first used.

    >>> import ptycho
    >>> rec = ptycho.reconstruct(diffraction, positions, probe, model="run/model")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "reconstruct", "train"]

_API = ("reconstruct", "train")


def __getattr__(name: str) -> Any:
    """``ptycho.reconstruct`` and ``ptycho.train``: imported from :mod:`ptycho.api` on first use."""
    if name in _API:
        from ptycho import api

        return getattr(api, name)
    raise AttributeError(f"module 'ptycho' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
