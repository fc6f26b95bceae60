"""The network's own reconstruction quality against training time: one training run, scored as it goes.

Simulates the `ptycho demo` dataset (ptycho-data defaults, seed 42), trains one backend with
the CPU preset of `ptycho demo` (gridsize 2, n_filters_scale 1, batch 4) and, at each epoch
count given by ``--at``, continues the same run from its last checkpoint (the optimiser and
learning-rate schedule state included), reconstructs the scan with the network alone (no
refinement) and scores it against the ground truth. Prints one row per point: epochs, training
seconds so far, Poisson deviance and amplitude misfit of the last epoch, the learning rate,
and amplitude / phase SSIM, PSNR and FRC50 (ptycho-data metrics on the scanned region).
Asserts nothing; this is what the demo's epoch count was chosen from (docs/benchmarks.md)::

    python benchmarks/quality_curve.py --backend pytorch --at 10 20 30 40 50 60
    python benchmarks/quality_curve.py --backend pytorch --at 20 40 --neighbor-count 3   # old groups
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="pytorch", choices=("pytorch", "tensorflow"))
    p.add_argument("--at", type=int, nargs="+", default=[10, 20, 30, 40], help="epoch counts to score at")
    p.add_argument("--neighbor-count", type=int, help="grouping K (default: the TrainingConfig default)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the CPU preset's)")
    p.add_argument("--learning-rate", type=float, help="initial learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import attrs

    from ptycho import workflow
    from ptycho.cli_workflow import CPU_PRESET, last_checkpoint
    from ptycho_core.config import TrainingConfig
    from ptycho_data.metrics import evaluate_reconstruction
    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    ds = simulate_dataset(SimulationConfig(seed=args.seed), progress=False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ptycho-curve-") as tmp:
        cfg = TrainingConfig(backend=args.backend, output_dir=Path(tmp), seed=args.seed, accelerator="cpu",
                             batch_size=args.batch_size or CPU_PRESET["batch_size"])
        cfg = attrs.evolve(cfg, model=attrs.evolve(cfg.model, gridsize=CPU_PRESET["gridsize"],
                                                   n_filters_scale=CPU_PRESET["n_filters_scale"]))
        if args.neighbor_count is not None:
            cfg = attrs.evolve(cfg, neighbor_count=args.neighbor_count)
        if args.learning_rate is not None:
            cfg = attrs.evolve(cfg, learning_rate=args.learning_rate)
        train_s = 0.0
        resume = None
        for epochs in sorted(args.at):
            cfg = attrs.evolve(cfg, nepochs=epochs)
            start = time.perf_counter()
            result = workflow.train(cfg, dataset=ds, resume_from=resume)
            train_s += time.perf_counter() - start
            resume = last_checkpoint(cfg)
            rec = workflow.infer(workflow.inference_config_for(cfg), model=result.model, dataset=ds, write=False)
            m = evaluate_reconstruction(rec.object, ds.object, ds.positions)
            fit = workflow.training_summary(result.history)
            row = {"backend": args.backend, "epochs": epochs, "train_s": train_s, "deviance": fit["deviance"],
                   "misfit": fit["misfit"], "lr": fit["lr"],
                   **{f"{short}_{k}": m[part][k] for short, part in (("amp", "amplitude"), ("phase", "phase"))
                      for k in ("ssim", "psnr", "frc50")}}
            rows.append(row)
            print("ROW " + json.dumps(row), flush=True)
    print(f"\n{args.backend}, neighbor_count {cfg.neighbor_count}, batch {cfg.batch_size}, "
          f"load {os.getloadavg()[0]:.1f}\n")
    print("| epochs | train s | deviance | misfit | lr | amp SSIM | amp PSNR | amp FRC50 | phase SSIM | phase PSNR "
          "| phase FRC50 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['epochs']} | {r['train_s']:.0f} | {r['deviance']:.4g} | {r['misfit']:.3g} | {r['lr']:.2g} | "
              f"{r['amp_ssim']:.3f} | {r['amp_psnr']:.1f} | {r['amp_frc50']:.2f} | {r['phase_ssim']:.3f} | "
              f"{r['phase_psnr']:.1f} | {r['phase_frc50']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
