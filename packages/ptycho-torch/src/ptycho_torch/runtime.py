"""Runtime helpers that need torch but not Lightning: thread count, accelerator, atomic saves.

CPU thread count: never more intra-op threads than the cores this process may run on.

torch starts with one intra-op thread per physical core of the machine. In a container or
under ``taskset`` the process may be allowed fewer (CPU affinity, a cgroup CPU quota); its
OpenMP threads then share cores, and every parallel region waits at a barrier for a thread
that is not running (docs/benchmarks-performance.md). :func:`fit_threads` lowers the count to
what is available and never raises it, so a count the caller chose below that is kept.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ptycho_core import training_log
from ptycho_core.errors import ConfigError


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), ``None`` if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity set, capped by the cgroup quota (rounded up), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)


def fit_threads(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Lower torch's intra-op thread count to :func:`available_cpus` if it is higher; return the count in use."""
    import torch

    n = available_cpus(cgroup_root)
    if torch.get_num_threads() > n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def resolve_accelerator(accelerator: str) -> str:
    """``'auto'`` -> ``'gpu'`` when CUDA is available, else ``'cpu'``; other values unchanged."""
    import torch

    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError("accelerator: 'gpu' requested but torch sees no CUDA device; use 'cpu' or 'auto'")
    return accelerator


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace`` onto ``path``.

    A process killed mid-write leaves the previous file intact (and at most a temporary file);
    see :func:`ptycho_core.training_log.atomic_write`.
    """
    import torch

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)

    training_log.atomic_write(path, write)
