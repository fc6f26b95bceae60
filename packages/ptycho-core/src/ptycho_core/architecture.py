"""Layer sizes of the PtychoPINN network (physics.md s4), one definition for every backend.

Pure integer formulas of ``N`` and ``n_filters_scale``; each backend builds its layers from
them, so the two frameworks cannot drift apart (their weights convert one to one).
"""

from __future__ import annotations

import math

PROBE_BIG_BORDER = 4
"""Feature channels fed to the ``probe_big`` branch (the last 4 of the decoder output)."""


def encoder_filters(N: int, nfs: int) -> list[int]:
    """Encoder filters: ``[32, 64, 128]`` (N=64), ``[16, ..., 128]`` (N=128), ``[8, ..., 128]`` (N=256), times nfs."""
    n_down = int(round(math.log2(N // 8)))
    return [128 * nfs // 2 ** (n_down - 1 - i) for i in range(n_down)]


def decoder_filters(N: int, nfs: int) -> list[int]:
    """Decoder up-block filters from the 8x8 bottleneck to N/2: ``32 * nfs * 2**(n_up - 1 - i)``."""
    n_up = int(round(math.log2(N // 16)))
    return [32 * nfs * 2 ** (n_up - 1 - i) for i in range(n_up)]


def probe_big_filters(N: int, nfs: int) -> int:
    """Filters of the ``probe_big`` branch's up-block: ``nfs * 2048 // N``."""
    return nfs * 2048 // N
