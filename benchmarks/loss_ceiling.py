"""Is the truth the minimum of the training loss? Free object patches fitted group by group, no network.

For each held-out object of ``make_pretrained.py`` and each probe (the default simulated one, and
the same probe zeroed outside the central N/2 x N/2 window, ``SimulationConfig.probe_window``),
the object patches of every group are optimised directly, with Adam on their amplitude and
phase, under the loss the network is trained with (the PyTorch physics layer of physics.md s5:
merge of the groups' central windows, probe, far field, Poisson deviance). The stitched result
is scored against the truth every ``--every`` steps.

Started from the truth (``--start truth``, the default), a loss whose minimum is the truth keeps
SSIM at 1; how far the SSIM falls is the bias of the loss itself, near the truth: a network that
fitted the loss as well as free patches do would land there, so it bounds the network's own quality
on that probe whatever the architecture or the training time.
``--object-window 1.0`` fits whole patches (``ModelConfig.object_window``), whose merge holds the
default probe's tails too. Started from a flat object (``--start flat``) it shows what one group's patterns determine
without any learnt prior. Asserts nothing; the figures are in docs/amortised.md::

    python benchmarks/loss_ceiling.py --threads 2
    python benchmarks/loss_ceiling.py --objects camera --start flat --steps 400
    python benchmarks/loss_ceiling.py --probes default --object-window 1.0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import heldout_scans  # noqa: E402


def fit(dataset, *, steps: int, every: int, lr: float, start: str, gridsize: int = 2,
        object_window: float = 0.5) -> list[dict]:
    """Optimise free patches of every group of ``dataset`` under the training loss; rows every ``every`` steps."""
    import torch

    from ptycho import workflow
    from ptycho_core import reference
    from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
    from ptycho_core.contracts import InferenceResult
    from ptycho_data import grouping
    from ptycho_data.metrics import evaluate_reconstruction
    from ptycho_torch.physics import centre_crop, losses, merge
    from ptycho_torch.pinn import PtychoPINN, config_to_dict, grouped_tensors, normalized_probe

    mc = ModelConfig(N=dataset.N, gridsize=gridsize, n_filters_scale=1, object_window=object_window)
    tc = TrainingConfig(model=mc, nphotons=reference.mean_photons(dataset.diffraction))
    module = PtychoPINN(config_to_dict(mc), config_to_dict(tc))
    module.physics.set_probe(normalized_probe(dataset.probe, mc))
    # equal-weight stitching: the figures of docs/amortised.md were measured with it, before the probe weighting
    icfg = InferenceConfig(model=mc, backend="pytorch", accelerator="cpu", refine_iterations=0, progress=False,
                           stitch_weight="uniform")
    groups = grouping.group_for_inference(dataset, icfg)
    X, offsets, Y = grouped_tensors(groups, with_y=True)
    if start == "truth":
        amp, phase = Y.abs(), Y.angle()
    else:
        amp, phase = torch.full(Y.shape, 0.75), torch.zeros(Y.shape)
    amp, phase = amp.clone().requires_grad_(True), phase.clone().requires_grad_(True)
    opt = torch.optim.Adam([amp, phase], lr=lr)

    def score() -> tuple[float, float]:
        with torch.no_grad():
            patches = torch.polar(amp.clamp(min=0.0), phase)
            merged = centre_crop(merge(patches, offsets, mc.gridsize, mc.window_side), mc.N).numpy()
        result = InferenceResult(patches=merged, positions=groups.centroids, metadata={})
        rec = workflow.stitch(result, icfg, "pytorch", dataset.object.shape)
        e = evaluate_reconstruction(rec.object, dataset.object, dataset.positions)
        return e["amplitude"]["ssim"], e["phase"]["ssim"]

    rows, t0 = [], time.perf_counter()
    for step in range(steps + 1):
        lam, _ = module.physics(torch.polar(amp.clamp(min=0.0), phase), offsets, None)
        terms = losses(lam, X, module.s0)
        if step % every == 0 or step == steps:
            amp_ssim, phase_ssim = score()
            rows.append({"step": step, "deviance": terms["deviance"].item(), "misfit": terms["misfit"].item(),
                         "amp_ssim": amp_ssim, "phase_ssim": phase_ssim, "seconds": time.perf_counter() - t0})
        if step == steps:
            break
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    heldout_scans.add_arguments(p, objects=["camera", "lines", "grf"], steps=200, every=50)
    p.add_argument("--start", choices=("truth", "flat"), default="truth")
    p.add_argument("--gridsize", type=int, default=2, help="patterns per group along one side (default 2)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam's rate on amplitude and phase")
    p.add_argument("--object-window", type=float, default=0.5,
                   help="ModelConfig.object_window: side of the merge window as a fraction of N (default 0.5; 1.0 "
                        "keeps whole patches, so the default probe's tails are modelled)")
    args = heldout_scans.parse(p, argv)
    out = []
    print(f"start: {args.start}; gridsize {args.gridsize}; object_window {args.object_window:g}; Adam lr {args.lr}; "
          f"{args.steps} steps")
    print("| object | probe | step | deviance | misfit | amp SSIM | phase SSIM | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, probe, dataset in heldout_scans.scans(args):
        rows = fit(dataset, steps=args.steps, every=args.every, lr=args.lr, start=args.start, gridsize=args.gridsize,
                   object_window=args.object_window)
        for r in rows:
            print(f"| {name} | {probe} | {r['step']} | {r['deviance']:.4g} | {r['misfit']:.2e} | "
                  f"{r['amp_ssim']:.3f} | {r['phase_ssim']:.3f} | {r['seconds']:.0f} |", flush=True)
            out.append({"object": name, "probe": probe, "start": args.start, "gridsize": args.gridsize,
                        "object_window": args.object_window, **r})
    heldout_scans.write_json(args, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
