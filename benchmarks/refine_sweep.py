"""How many refinement passes, from the network's output and from a flat start.

Reads a finished run (``reconstruction.npz`` and the dataset with ground truth, e.g. the output
folder of ``benchmarks/quality.py --keep-outputs DIR``), refines the network's own output
(``network_object``, or ``object`` when the run did not refine) and a flat object with each
number of passes and prints amplitude / phase SSIM and the final misfit for both. NumPy only.
Example::

    python benchmarks/quality.py --backend pytorch --keep-outputs /tmp/q
    python benchmarks/refine_sweep.py /tmp/q/pytorch/reconstruction.npz /tmp/q/pytorch/simulated.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reconstruction", type=Path, help="reconstruction.npz of a ptycho run")
    p.add_argument("data", type=Path, help="the dataset it reconstructed (with objectGuess)")
    p.add_argument("--passes", type=int, nargs="+", default=[0, 5, 10, 20], help="passes to try (default 0 5 10 20)")
    p.add_argument("--seed", type=int, default=42, help="seed of the visiting order (default 42)")
    args = p.parse_args(argv)

    from ptycho.refine import refine_object
    from ptycho_data.metrics import evaluate_reconstruction
    from ptycho_data.npz import load_dataset

    ds = load_dataset(args.data)
    if ds.object is None:
        raise SystemExit(f"{args.data}: no objectGuess (ground truth) to score against")
    with np.load(args.reconstruction, allow_pickle=False) as f:
        network = f["network_object"] if "network_object" in f.files else f["object"]
        origin = tuple(int(v) for v in f["origin"])
    if network.shape != ds.object.shape or origin != (0, 0):
        raise SystemExit(f"{args.reconstruction}: expected a reconstruction on the object grid of {args.data} "
                         f"(shape {ds.object.shape}, origin (0, 0)), got shape {network.shape}, origin {origin}")
    starts = {"network": network, "flat": np.ones(ds.object.shape, np.complex64)}
    print("| start | passes | seconds | misfit | amp SSIM | phase SSIM |")
    print("|---|---|---|---|---|---|")
    for name, initial in starts.items():
        for passes in args.passes:
            res = refine_object(initial, (0, 0), ds.diffraction, ds.positions, ds.probe, passes, seed=args.seed,
                                progress=False)
            m = evaluate_reconstruction(res.object, ds.object, ds.positions)
            print(f"| {name} | {passes} | {res.seconds:.1f} | {res.misfit[-1]:.2e} | "
                  f"{m['amplitude']['ssim']:.3f} | {m['phase']['ssim']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
