"""Does a lower training loss bring the network's object closer to the truth? The network fitted to a few groups.

The shipped model (or any bundle) is trained further on ``--groups`` groups of one held-out scan of
``make_pretrained.py`` with the training loss alone (Poisson deviance, physics.md s5; no ground
truth), all groups in every step. Every ``--every`` steps the script reports the deviance and how
far the groups' merged objects (s5 step 2, what inference stitches) are from the true ones inside
the model's object support, after removing what the data cannot fix:

- amplitude error: mean ``|a / mean(a) - t / mean(t)|`` per group (a fraction of the mean amplitude;
  the normalisations of s3 fix the patterns' mean intensity, not the object's amplitude level);
- phase error: mean ``|angle(o conj(t) e^{-ic})|`` in radians, ``c`` the group's best constant phase
  (a constant phase changes no pattern).

A loss that identified the object would bring both errors down with the deviance. The deviance of
the true patches under the same loss is printed for comparison: not 0, as they fit the data only up
to one amplitude factor, and higher with the default probe, whose tails lie outside the support
(physics.md s5, "Object support and the probe"; ``loss_ceiling.py`` fits free patches from the
truth down to the Poisson floor, about 0.4, with ``--probes window``). Asserts nothing; the figures
are in docs/amortised.md::

    python benchmarks/group_fit.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import heldout_scans  # noqa: E402


def distances(merged, truth, support) -> tuple[float, float]:
    """Amplitude and phase errors (module docstring) of merged objects ``(B, N, N)`` against ``truth``.

    ``support`` is a boolean ``(B, N, N)`` mask of the pixels compared; both errors are 0 when
    ``merged`` is ``truth`` times one positive factor and one phase factor per group.
    """
    import torch

    errs_a, errs_p = [], []
    for o, t, m in zip(merged, truth, support):
        o, t = o[m], t[m]
        a, ta = o.abs(), t.abs()
        errs_a.append(torch.mean(torch.abs(a / a.mean().clamp(min=1e-12) - ta / ta.mean())))
        d = o * torch.conj(t)
        c = d.sum()
        errs_p.append(torch.mean(torch.abs(torch.angle(d * torch.conj(c) / c.abs().clamp(min=1e-30)))))
    return float(torch.stack(errs_a).mean()), float(torch.stack(errs_p).mean())


def fit(dataset, model: str, *, groups: int, steps: int, every: int, lr: float) -> dict:
    """Train ``model`` on ``groups`` groups of ``dataset``; the truth's deviance and rows every ``every`` steps."""
    import numpy as np
    import torch

    from ptycho import pretrained
    from ptycho_core.config import InferenceConfig
    from ptycho_data import grouping
    from ptycho_torch.physics import centre_crop, losses, merge
    from ptycho_torch.pinn import grouped_tensors, normalized_probe

    handle = pretrained.load(model, backend="pytorch")
    net, mc = handle.native, handle.model_config
    if mc.gridsize < 2 or not mc.object_big:
        raise SystemExit(f"{model}: group_fit.py compares merged group objects; the model has gridsize "
                         f"{mc.gridsize}, object_big {mc.object_big}")
    net.physics.set_probe(normalized_probe(dataset.probe, mc))
    icfg = InferenceConfig(model=mc, backend="pytorch", accelerator="cpu", refine_iterations=0, progress=False)
    grouped = grouping.group_for_inference(dataset, icfg)
    pick = np.unique(np.linspace(0, grouped.n_groups - 1, groups).round().astype(int))
    X, offsets, Y = (t[torch.from_numpy(pick)] for t in grouped_tensors(grouped, with_y=True))

    def merged(patches):
        return centre_crop(merge(patches, offsets, mc.gridsize, mc.window_side), mc.N)

    with torch.no_grad():
        truth = merged(Y)
        support = merged(torch.ones_like(Y)).real > 0.5
        truth_deviance = losses(net.physics(Y, offsets)[0], X, net.s0)["deviance"].item()
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    rows, t0 = [], time.perf_counter()
    for step in range(steps + 1):
        patches = net(X)
        terms = losses(net.physics(patches, offsets)[0], X, net.s0)
        if step % every == 0 or step == steps:
            with torch.no_grad():
                amp_err, phase_err = distances(merged(patches), truth, support)
            rows.append({"step": step, "deviance": terms["deviance"].item(), "misfit": terms["misfit"].item(),
                         "amp_err": amp_err, "phase_err": phase_err, "seconds": time.perf_counter() - t0})
        if step == steps:
            break
        opt.zero_grad()
        terms["deviance"].backward()
        opt.step()
    return {"groups": len(pick), "truth_deviance": truth_deviance, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    heldout_scans.add_arguments(p, objects=["camera"], steps=1000, every=200)
    p.add_argument("--model", default="pretrained:sim-n64-g2", help="bundle or pretrained:NAME to start from")
    p.add_argument("--groups", type=int, default=8, help="groups fitted, spread over the scan (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's rate (default 1e-3, the training default)")
    args = heldout_scans.parse(p, argv)
    if args.groups < 1:
        p.error("--groups must be at least 1")
    out = []
    print(f"model {args.model}; Adam lr {args.lr}; {args.steps} steps on {args.groups} groups, deviance only")
    print("| object | probe | step | deviance | misfit | amp error | phase error (rad) | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, probe, dataset in heldout_scans.scans(args):
        res = fit(dataset, args.model, groups=args.groups, steps=args.steps, every=args.every, lr=args.lr)
        print(f"| {name} | {probe} | truth | {res['truth_deviance']:.4g} | | 0 | 0 | |")
        for r in res["rows"]:
            print(f"| {name} | {probe} | {r['step']} | {r['deviance']:.4g} | {r['misfit']:.2e} | "
                  f"{r['amp_err']:.3f} | {r['phase_err']:.3f} | {r['seconds']:.0f} |", flush=True)
        out.append({"object": name, "probe": probe, "model": args.model, "lr": args.lr, **res})
    heldout_scans.write_json(args, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
