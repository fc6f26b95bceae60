"""ptycho, the application: workflow, command-line commands, plots, refinement and the Ptychodus adapter.

It builds on ptycho-core (configs, contracts, backend registry, bundles, NumPy reference) and
ptycho-data (readers, grouping, simulation, metrics); a backend comes with an extra,
``pip install "ptycho[torch]"``. Importing this package imports no framework.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
