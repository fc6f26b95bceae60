"""ptycho-tf: the PtychoPINN model on TensorFlow / Keras 3, registered as backend ``tensorflow``."""

__version__ = "0.1.0"
