"""What the ``ptycho`` command line prints: our log lines only, framework chatter off, progress bars on stderr.

:func:`configure_logging` gives ptycho's own loggers (``ptycho``, ``ptycho_core``,
``ptycho_data``, ``ptycho_torch``, ``ptycho_tf``, ``ptycho_ci`` and their children) one
stderr handler; the root logger gets none (no ``logging.basicConfig``), so nothing is printed
twice, and records still propagate to handlers an application (or pytest) installs there.
The INFO chatter of the frameworks (Lightning's tips and GPU/TPU lines, TensorFlow/absl
start-up lines and C++ notices, :data:`TF_QUIET_LOG_LEVEL`) is held back unless ``verbose``;
``debug`` shows ptycho's debug lines but never matplotlib's or PIL's.

Progress bars (Lightning, Keras, tqdm) go to stderr and only when stderr is a terminal
(:func:`show_progress`), so the log of a batch job has no carriage-return lines.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from typing import Any, TextIO

__all__ = ["FRAMEWORK_LOGGERS", "OUR_LOGGERS", "add_output_flags", "configure_logging", "show_progress"]

#: Top-level loggers of the ptycho packages.
OUR_LOGGERS = ("ptycho", "ptycho_core", "ptycho_data", "ptycho_torch", "ptycho_tf", "ptycho_ci")

#: Framework loggers held at WARNING unless ``--verbose``. Lightning resets the level of
#: ``lightning.pytorch`` to INFO when it is imported, so the loggers its ``rank_zero_info``
#: lines (tips, GPU/TPU availability, "`Trainer.fit` stopped") and device lines come from are
#: named too: a level set on them survives that import.
FRAMEWORK_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric",
                     "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                     "pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                     "lightning_utilities.core.rank_zero", "lightning.pytorch.accelerators.cuda",
                     "lightning.pytorch.accelerators", "lightning.fabric.accelerators",
                     "torch", "tensorflow", "absl", "keras", "h5py", "numexpr")

#: Loggers never shown below WARNING, not even with ``--debug`` (matplotlib's font manager lines).
NOISY_LOGGERS = ("matplotlib", "PIL")

FORMAT = "%(levelname)s %(name)s: %(message)s"

TF_QUIET_LOG_LEVEL = 3
"""``TF_CPP_MIN_LOG_LEVEL`` without ``--verbose``: TensorFlow's C++ log lines are held back, ERROR-level notices too."""


def configure_logging(*, quiet: bool = False, verbose: bool = False, debug: bool = False,
                      stream: TextIO | None = None) -> None:
    """Set up what the command line prints (see the module docstring); calling it again replaces the setup.

    Parameters
    ----------
    quiet : bool
        Only warnings and errors of ptycho (no INFO lines).
    verbose : bool
        Also the frameworks' INFO lines (Lightning, TensorFlow start-up messages).
    debug : bool
        ptycho's DEBUG lines too (implies ``verbose`` for nothing else).
    stream : text stream, optional
        Where to write (default ``sys.stderr`` at the time of each record).
    """
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_ptycho_console", False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
    for name in FRAMEWORK_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not verbose:
        # reached only after --overwrite (ptycho refuses before): the user asked to train over old checkpoints
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty",
                                module=r"lightning\.")
    # Before TensorFlow is imported (an explicit setting in the environment wins). Without --verbose, 3: TensorFlow
    # logs harmless notices from C++ at ERROR level, e.g. "oneDNN supports DT_INT32 only on platforms with AVX-512.
    # Falling back to the default Eigen-based implementation" while training on a CPU without AVX-512; only the log
    # line goes (oneDNN and the numerics are unchanged) and real failures still raise Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else str(TF_QUIET_LOG_LEVEL))


class _StderrHandler(logging.StreamHandler):
    """A stream handler writing to the *current* ``sys.stderr`` (tests and notebooks swap it)."""

    _ptycho_console = True

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stderr)
        self._fixed = stream

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = self._fixed or sys.stderr
        super().emit(record)


def show_progress(enabled: bool = True, stream: Any = None) -> bool:
    """Whether to draw a progress bar: ``enabled`` and ``stream`` (default ``sys.stderr``) is a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(enabled and callable(isatty) and isatty())
    except (ValueError, OSError):  # a closed stream
        return False


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` and ``--verbose`` of a long-running command (``--debug`` is a global flag of ``ptycho``)."""
    group = parser.add_argument_group("console output")
    group.add_argument("--quiet", "-q", action="store_true",
                       help="print only warnings, errors and the final result lines; no progress bars")
    group.add_argument("--verbose", "-v", action="store_true",
                       help="also print the frameworks' messages (Lightning, TensorFlow start-up lines)")
