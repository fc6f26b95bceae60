"""Import TensorFlow and Keras 3 with the environment ptycho-tf needs.

Every framework module of ptycho-tf imports ``keras`` and ``tf`` from here, so
``KERAS_BACKEND`` defaults to ``tensorflow`` and TensorFlow's C++ logging is quiet
(``TF_CPP_MIN_LOG_LEVEL=2``) before either is imported. Explicit settings in the
environment win. A Keras already running on another backend is a clear error.

TensorFlow 2.21 prints its start-up lines (absl's "All log messages before
absl::InitializeLog()", "oneDNN custom operations are on") from C++ whatever
``TF_CPP_MIN_LOG_LEVEL`` says, so while TensorFlow and Keras are imported the process's
stderr (file descriptor 2) goes to the null device, unless ``TF_CPP_MIN_LOG_LEVEL`` is 0
(``ptycho ... --verbose`` sets it). Python errors of the import are raised as usual.

While training on a CPU without AVX-512, TensorFlow also logs "oneDNN supports DT_INT32 only on
platforms with AVX-512. Falling back to the default Eigen-based implementation" from C++ at
ERROR level, which level 2 lets through; the ``ptycho`` command line and ``ptycho.train`` /
``ptycho.reconstruct`` set ``TF_CPP_MIN_LOG_LEVEL=3`` (unless verbose) before TensorFlow is
imported, so that notice is not printed. oneDNN itself stays on (``TF_ENABLE_ONEDNN_OPTS`` is not
touched): only log lines are filtered, never the numerics.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _native_stderr_silenced(enabled: bool) -> Iterator[None]:
    """Point file descriptor 2 at the null device for the block (C++ logging), then restore it."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _native_stderr_silenced(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip() not in ("", "0")):
    import keras
    import tensorflow as tf

from ptycho_core.errors import BackendLoadError  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise BackendLoadError(
        f"the tensorflow backend of ptycho needs Keras running on TensorFlow, but Keras uses "
        f"{keras.backend.backend()!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}); "
        "set KERAS_BACKEND=tensorflow before Keras is first imported"
    )

__all__ = ["keras", "tf"]
