"""ptycho-torch: the PtychoPINN model on PyTorch + Lightning, registered as backend ``pytorch``."""

__version__ = "0.1.0"
