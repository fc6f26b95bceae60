"""The learning-rate schedule and early stop of training, one implementation for every backend.

physics.md s5: halve the learning rate when the epoch's training loss has stopped improving
(patience 2, floor 1e-4). The loss it watches is the reported one: the Poisson deviance
(the objective minus its floor at ``lambda = k``, >= 0, 0 for a perfect fit) plus any
weighted MAE / real-space terms, so "no improvement" means what it says: an epoch improves
when its loss is below ``best * (1 - rel_threshold)``.

Semantics, fixed here and tested on both backends with the same loss sequence:

- after every epoch, :meth:`PlateauSchedule.step` is given the epoch's loss;
- an improving epoch sets ``best`` and resets ``wait`` to 0; any other epoch adds 1 to ``wait``;
- when ``wait`` reaches ``patience``, the rate becomes ``max(lr * factor, min_lr)`` (if it is
  above ``min_lr``) and ``wait`` restarts at 0; the new rate applies from the next epoch;
- early stop (``stop_patience > 0``): training stops after ``stop_patience`` epochs in a row
  without improvement (counted by ``stale``, which is not reset by a rate change);
- time budget (``max_seconds``): training also stops after the first epoch that ends
  ``max_seconds`` or more after the schedule was made (the start of training, or of a resumed
  run); :attr:`PlateauSchedule.stop_reason` says which rule stopped it.

The backends call :meth:`step` from an epoch-end callback and set the optimiser's rate to the
returned value; :meth:`state` / :meth:`from_state` carry it through checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["FACTOR", "MIN_LR", "PATIENCE", "REL_THRESHOLD", "PlateauSchedule"]

#: Factor applied to the rate on a plateau (physics.md s5).
FACTOR = 0.5
#: Epochs without improvement before the rate is lowered (physics.md s5).
PATIENCE = 2
#: The rate is never lowered below this (physics.md s5).
MIN_LR = 1e-4
#: An epoch improves when its loss is below ``best * (1 - REL_THRESHOLD)``.
REL_THRESHOLD = 1e-4


@attrs.define
class PlateauSchedule:
    """Plateau schedule state: current rate, best loss, epochs since the last improvement.

    Parameters
    ----------
    lr : float
        The current learning rate (the initial one for a new run).
    stop_patience : int
        Epochs without improvement after which :meth:`step` asks to stop; 0 never stops.
    max_seconds : float, optional
        Time budget: :meth:`step` asks to stop once this many seconds have passed since the
        schedule was made (``clock`` seconds); None never stops for time.
    """

    lr: float
    stop_patience: int = 0
    best: float = math.inf
    wait: int = 0
    stale: int = 0
    factor: float = FACTOR
    patience: int = PATIENCE
    min_lr: float = MIN_LR
    rel_threshold: float = REL_THRESHOLD
    stop: bool = False
    max_seconds: float | None = None
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    started: float = attrs.field(default=attrs.Factory(lambda self: self.clock(), takes_self=True))
    stop_reason: str | None = None
    """``'no improvement'`` or ``'time budget'`` once :attr:`stop` is set, else None."""

    def step(self, loss: float) -> float:
        """Record one epoch's loss; return the rate for the next epoch (and set :attr:`stop`)."""
        loss = float(loss)
        if not math.isfinite(loss):  # the backends' divergence guards stop such a run; nothing to learn from it
            return self.lr
        if loss < self.best * (1.0 - self.rel_threshold) or self.best == math.inf:
            self.best, self.wait, self.stale = loss, 0, 0
        else:
            self.wait += 1
            self.stale += 1
            if self.wait >= self.patience:
                self.wait = 0
                if self.lr > self.min_lr:
                    self.lr = max(self.lr * self.factor, self.min_lr)
        if self.stop_patience > 0 and self.stale >= self.stop_patience:
            self.stop, self.stop_reason = True, "no improvement"
        elif self.max_seconds is not None and self.clock() - self.started >= self.max_seconds:
            self.stop, self.stop_reason = True, "time budget"
        return self.lr

    def stop_message(self, epoch: int) -> str:
        """The log line of a stop after ``epoch`` (1-based): which rule stopped training."""
        if self.stop_reason == "time budget":
            return (f"stopped after epoch {epoch}: time budget of {self.max_seconds:g} s reached "
                    f"({self.clock() - self.started:.0f} s; max_train_seconds)")
        return f"early stop after epoch {epoch}: no lower loss for {self.stop_patience} epochs"

    def state(self) -> dict[str, Any]:
        """Plain numbers for a checkpoint (JSON-safe; ``best`` is ``None`` before the first epoch)."""
        return {"lr": float(self.lr), "best": None if self.best == math.inf else float(self.best),
                "wait": int(self.wait), "stale": int(self.stale)}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, lr: float, stop_patience: int = 0,
                   max_seconds: float | None = None) -> PlateauSchedule:
        """A schedule continuing ``state`` (from :meth:`state`), or a new one at rate ``lr``; its time budget
        ``max_seconds`` counts from now."""
        if not state or "lr" not in state:  # a new run, or a checkpoint written before this schedule existed
            return cls(lr=float(lr), stop_patience=stop_patience, max_seconds=max_seconds)
        best = state.get("best")
        return cls(lr=float(state["lr"]), stop_patience=stop_patience, max_seconds=max_seconds,
                   best=math.inf if best is None else float(best),
                   wait=int(state.get("wait", 0)), stale=int(state.get("stale", 0)))
