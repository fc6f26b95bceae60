"""Import TensorFlow and Keras 3 with the environment ptycho-tf needs.

Every framework module of ptycho-tf imports ``keras`` and ``tf`` from here, so
``KERAS_BACKEND`` defaults to ``tensorflow`` and TensorFlow's C++ logging is quiet
(``TF_CPP_MIN_LOG_LEVEL=2``) before either is imported. Explicit settings in the
environment win. A Keras already running on another backend is a clear error.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from ptycho_core.errors import BackendLoadError  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise BackendLoadError(
        f"the tensorflow backend of ptycho needs Keras running on TensorFlow, but Keras uses "
        f"{keras.backend.backend()!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}); "
        "set KERAS_BACKEND=tensorflow before Keras is first imported"
    )

__all__ = ["keras", "tf"]
