"""The held-out scans of ``make_pretrained.py`` by short name and probe, for the scripts that study the loss.

Shared by ``loss_ceiling.py`` and ``group_fit.py``: their common options (``--objects``,
``--probes``, ``--steps``, ``--every``, ``--threads``, ``--json``), the thread setting, and the
simulated scans they run on (the default probe, or the same probe zeroed outside the model's
object support, ``SimulationConfig.probe_window``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Short names of the held-out objects of make_pretrained.HELD_OUT.
OBJECTS = {"camera": "demo (camera / coins)", "lines": "lines", "grf": "grf"}
PROBES = ("default", "window")


def add_arguments(p: argparse.ArgumentParser, *, objects: list[str], steps: int, every: int) -> None:
    """The options every loss-study script takes, with its own defaults."""
    p.add_argument("--objects", nargs="+", choices=sorted(OBJECTS), default=objects)
    p.add_argument("--probes", nargs="+", choices=PROBES, default=list(PROBES),
                   help="default: ptycho-data's default probe; window: the same, zero outside the central window")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--every", type=int, default=every, help="report every this many steps")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, check ``--steps`` and ``--every``, set the threads and torch's seed (0)."""
    args = p.parse_args(argv)
    if args.steps < 1 or args.every < 1:
        p.error("--steps and --every must be at least 1")
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return args


def scans(args: argparse.Namespace) -> Iterator[tuple[str, str, Any]]:
    """``(object, probe, dataset)`` for every ``--objects`` x ``--probes``, simulated as make_pretrained.py does."""
    from make_pretrained import HELD_OUT

    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    for name in args.objects:
        for probe in args.probes:
            sim = SimulationConfig(**HELD_OUT[OBJECTS[name]], probe_window=probe == "window")
            yield name, probe, simulate_dataset(sim, progress=False)


def write_json(args: argparse.Namespace, results: list[dict]) -> None:
    """``results`` to ``--json``, when given."""
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
