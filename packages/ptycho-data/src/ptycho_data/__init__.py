"""ptycho-data: dataset I/O (NPZ, Ptychodus HDF5), validation, neighbour grouping,
simulation, fixtures and reconstruction metrics. NumPy/SciPy only."""

__version__ = "0.1.0"
