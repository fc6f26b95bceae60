"""Lightning's TQDM progress bar, drawn on stderr and without the logger's ``v_num``.

Lightning draws its bars on stdout and shows the CSV logger's version (``v_num=0``) in them;
ptycho keeps stdout for results and draws bars only when stderr is a terminal
(:func:`ptycho_core.console.show_progress`, decided by the caller).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar

__all__ = ["ProgressBar"]


class ProgressBar(TQDMProgressBar):
    """:class:`~lightning.pytorch.callbacks.TQDMProgressBar` on ``sys.stderr``, without ``v_num``."""

    def init_sanity_tqdm(self) -> Any:
        with contextlib.redirect_stdout(sys.stderr):  # Lightning passes file=sys.stdout, read at call time
            return super().init_sanity_tqdm()

    def init_train_tqdm(self) -> Any:
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_train_tqdm()

    def init_predict_tqdm(self) -> Any:
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_predict_tqdm()

    def init_validation_tqdm(self) -> Any:
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_validation_tqdm()

    def init_test_tqdm(self) -> Any:
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_test_tqdm()

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
