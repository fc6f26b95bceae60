"""Reconstruction quality of each backend on a seeded simulation from real images.

Simulates (seeded) an object whose amplitude and phase are scikit-image pictures, with a
defocused disk probe and a raster scan (the ptycho-data simulation defaults unless flags say
otherwise), trains each backend self-supervised on the diffraction amplitudes only, reconstructs
the scanned object and prints one table: backend, epochs, train time, inference + stitch time,
amplitude / phase SSIM, PSNR and FRC50 against the ground truth (ptycho-data metrics, after
phase-plane removal and amplitude scaling, on the scanned region).

Rows, network-only first: the network's stitched output (with the Poisson deviance and the
relative amplitude misfit at the end of training); at gridsize > 1 also the stitched *raw*
per-channel patches of the same model (what was stitched before the merged group object, for
comparison); with refinement passes (``--refine-iterations``, default 20 from the CPU preset)
the same after the iterative refinement of ``ptycho.refine`` (physics.md s8); and
``refine only``, the same number of passes from a flat start (no network), so the network's
share is visible.

Each backend runs in its own subprocess, so the frameworks never share a process. Prints
figures; asserts nothing. Examples::

    python benchmarks/quality.py                         # defaults: both backends, default epochs
    python benchmarks/quality.py --backend pytorch --nepochs 10
    python benchmarks/quality.py --json quality.json --keep-outputs out/

By default it trains with the CPU preset of ``ptycho demo`` (``ptycho.cli_workflow.CPU_PRESET``:
gridsize 2, n_filters_scale 1, batch 4, 20 refinement passes) and the default TrainingConfig
epochs (40; the demo trains 30); ``--no-preset`` uses the plain config defaults (no refinement).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKENDS = ("pytorch", "tensorflow")


def worker(args: argparse.Namespace) -> None:
    """Train and reconstruct with one backend; print one JSON line per table row (network, refined)."""
    import attrs

    from ptycho import workflow
    from ptycho.cli_workflow import CPU_PRESET
    from ptycho_core.config import TrainingConfig
    from ptycho_data.npz import save_dataset
    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    sim = SimulationConfig(seed=args.seed, n_positions=args.n_positions, nphotons=args.nphotons, step=args.step,
                           probe_pupil_radius=args.probe_pupil_radius)
    data = out / "simulated.npz"
    save_dataset(simulate_dataset(sim, progress=False), data)
    cfg = TrainingConfig(backend=args.worker, train_data_file=data, output_dir=out, seed=args.seed)
    # the CPU preset of `ptycho demo` (gridsize 2, n_filters_scale 1, batch 4), flags override it
    preset = {} if args.no_preset else CPU_PRESET
    batch = args.batch_size if args.batch_size is not None else preset.get("batch_size", cfg.batch_size)
    changes = {"batch_size": batch, "model": attrs.evolve(
        cfg.model,
        gridsize=args.gridsize if args.gridsize is not None else preset.get("gridsize", cfg.model.gridsize),
        n_filters_scale=args.n_filters_scale if args.n_filters_scale is not None
        else preset.get("n_filters_scale", cfg.model.n_filters_scale))}
    if args.nepochs is not None:
        changes["nepochs"] = args.nepochs
    if args.neighbor_count is not None:
        changes["neighbor_count"] = args.neighbor_count
    if args.early_stop_patience is not None:
        changes["early_stop_patience"] = args.early_stop_patience
    cfg = attrs.evolve(cfg, **changes)
    refine = args.refine_iterations if args.refine_iterations is not None else preset.get("refine_iterations", 0)
    icfg = workflow.inference_config_for(cfg, refine_iterations=refine)
    start = time.perf_counter()
    # overwrite: a benchmark replaces its own earlier run in this folder
    rec = workflow.run(cfg, icfg, overwrite=True)
    total = time.perf_counter() - start
    t = rec.metadata.timings
    metrics = rec.metadata.metrics
    fit = workflow.training_summary(rec.metadata.history)
    rows = [("network", 0, metrics.get("network", metrics))]
    if cfg.model.stitches_group_object:
        rows.append(("network, raw patches", 0, raw_patch_metrics(out / workflow.BUNDLE_NAME, data, cfg, icfg)))
    if refine:
        rows.append(("refined", refine, metrics))
    for kind, passes, m in rows:
        row = {
            "backend": args.worker,
            "output": kind,
            "refine": passes,
            "epochs": rec.metadata.epochs,
            "gridsize": cfg.model.gridsize,
            "n_filters_scale": cfg.model.n_filters_scale,
            "batch_size": cfg.batch_size,
            "n_positions": sim.n_positions,
            "train_s": t.get("train_s", float("nan")),
            "infer_stitch_s": t["infer_s"] + t["stitch_s"],
            "refine_s": t.get("refine_s", 0.0) if passes else 0.0,
            "total_s": total,
            "deviance": fit.get("deviance", float("nan")),
            "misfit": fit.get("misfit", float("nan")),
            "lr_halvings": sum(b < a for a, b in zip(rec.metadata.history["lr"], rec.metadata.history["lr"][1:])),
            **_scores(m),
        }
        print("RESULT " + json.dumps(row))


def raw_patch_metrics(bundle_path: Path, data: Path, cfg, icfg) -> dict:
    """Metrics of the stitched raw per-channel network patches (what inference stitched before the merged
    group object became the default at gridsize > 1), same model, data, crop and metrics."""
    import numpy as np

    from ptycho_core import backends, bundle, reference
    from ptycho_data.grouping import group_for_inference
    from ptycho_data.metrics import evaluate_reconstruction
    from ptycho_data.npz import load_dataset

    ds = load_dataset(data)
    model = bundle.load_bundle(bundle_path, backend=cfg.backend)
    grouped = group_for_inference(ds, icfg)
    raw = backends.get(cfg.backend).forward(model, grouped, cfg).patches  # (B, N, N, C), the network's output
    patches = np.moveaxis(raw, -1, 1).reshape(-1, grouped.N, grouped.N)
    obj = reference.reassemble(patches, grouped.positions.reshape(-1, 2), icfg.stitch_crop, ds.object.shape, (0, 0))
    return evaluate_reconstruction(obj, ds.object, ds.positions)


def _scores(m: dict) -> dict:
    """The table's figures from a ptycho-data metrics dict."""
    return {f"{short}_{key}": m[part][key] for short, part in (("amp", "amplitude"), ("phase", "phase"))
            for key in ("ssim", "psnr", "frc50")}


def flat_start_row(data: Path, passes: int, seed: int) -> dict:
    """The refinement alone: ``passes`` passes from a flat object (no network), same data and metrics."""
    import numpy as np

    from ptycho.refine import refine_object
    from ptycho_data.metrics import evaluate_reconstruction
    from ptycho_data.npz import load_dataset

    ds = load_dataset(data)
    res = refine_object(np.ones(ds.object.shape, np.complex64), (0, 0), ds.diffraction, ds.positions, ds.probe,
                        passes, seed=seed, progress=False)
    m = evaluate_reconstruction(res.object, ds.object, ds.positions)
    nan = float("nan")
    return {"backend": "none", "output": "refine only (flat start)", "refine": passes, "epochs": 0, "train_s": nan,
            "infer_stitch_s": nan, "refine_s": res.seconds, "deviance": nan, "misfit": nan, **_scores(m)}


def table(rows: list[dict]) -> str:
    head = ("backend", "output", "refine passes", "epochs", "deviance", "misfit", "train s", "infer+stitch s",
            "refine s", "amp SSIM", "amp PSNR", "amp FRC50", "phase SSIM", "phase PSNR", "phase FRC50")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (r["backend"], r["output"], str(r["refine"]), str(r["epochs"]), f"{r['deviance']:.4g}",
                 f"{r['misfit']:.3g}", f"{r['train_s']:.1f}",
                 f"{r['infer_stitch_s']:.2f}", f"{r['refine_s']:.1f}",
                 f"{r['amp_ssim']:.3f}", f"{r['amp_psnr']:.1f}", f"{r['amp_frc50']:.2f}",
                 f"{r['phase_ssim']:.3f}", f"{r['phase_psnr']:.1f}", f"{r['phase_frc50']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", nargs="+", choices=BACKENDS, default=list(BACKENDS), help="backends to run")
    p.add_argument("--nepochs", type=int, help="epochs (default: the TrainingConfig default)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the CPU preset's, 4)")
    p.add_argument("--gridsize", type=int, help="gridsize (default: the CPU preset's, 2)")
    p.add_argument("--n-filters-scale", type=int, help="n_filters_scale (default: the CPU preset's, 1)")
    p.add_argument("--neighbor-count", type=int,
                   help="K nearest other positions of the grouping (default: the TrainingConfig default; "
                   "3 reproduces the groups of the old K = 4 'seed included' rule at gridsize 2)")
    p.add_argument("--early-stop-patience", type=int, help="early stop after this many epochs without improvement")
    p.add_argument("--refine-iterations", type=int,
                   help="refinement passes after stitching (default: the CPU preset's, 20; 0 = network only)")
    p.add_argument("--no-preset", action="store_true",
                   help="use the plain TrainingConfig/ModelConfig defaults instead of the CPU preset")
    p.add_argument("--n-positions", type=int, default=256, help="scan positions of the simulation (default 256)")
    p.add_argument("--nphotons", type=float, default=1e9, help="photons per pattern (default 1e9)")
    p.add_argument("--step", type=float, help="scan step in pixels (default: the simulation's, N // 8)")
    p.add_argument("--probe-pupil-radius", type=float,
                   help="disk probe pupil radius (default: the simulation's, 3N/16)")
    p.add_argument("--seed", type=int, default=42, help="seed of the simulation and the training (default 42)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--keep-outputs", type=Path, help="keep each backend's outputs (images, bundle) under this dir")
    p.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    p.add_argument("--output-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="ptycho-quality-") as tmp:
        base = args.keep_outputs or Path(tmp)
        for backend in args.backend:
            cmd = [sys.executable, __file__, "--worker", backend, "--output-dir", str(base / backend),
                   "--n-positions", str(args.n_positions), "--nphotons", str(args.nphotons), "--seed", str(args.seed)]
            for flag, value in (("--nepochs", args.nepochs), ("--batch-size", args.batch_size),
                                ("--gridsize", args.gridsize), ("--n-filters-scale", args.n_filters_scale),
                                ("--refine-iterations", args.refine_iterations),
                                ("--neighbor-count", args.neighbor_count),
                                ("--early-stop-patience", args.early_stop_patience)):
                if value is not None:
                    cmd += [flag, str(value)]
            if args.no_preset:
                cmd.append("--no-preset")
            for flag, value in (("--step", args.step), ("--probe-pupil-radius", args.probe_pupil_radius)):
                if value is not None:
                    cmd += [flag, str(value)]
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
            print(f"[{backend}] training and reconstructing ...", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"[{backend}] failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            rows += [json.loads(line[len("RESULT "):]) for line in lines]
        passes = max(r["refine"] for r in rows)
        if passes:
            rows.append(flat_start_row(base / args.backend[0] / "simulated.npz", passes, args.seed))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; simulation seed {args.seed}, {args.n_positions} positions, "
          f"{args.nphotons:g} photons; gridsize {rows[0]['gridsize']}, n_filters_scale "
          f"{rows[0]['n_filters_scale']}, batch {rows[0]['batch_size']}")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
