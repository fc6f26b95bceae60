"""One tuning run of the quality benchmark with every knob exposed (PyTorch or TensorFlow).

Simulates the quality benchmark's object (seed 42, camera/coins, disk probe, raster scan) with
the given probe pupil radius, defocus, scan step and number of positions, trains with the given
model and training settings, reconstructs with the given stitch crop and prints one line
``RESULT {json}`` with the settings, wall seconds and amplitude/phase SSIM. This is how the
tuning table in docs/benchmarks.md was measured (each run with ``OMP_NUM_THREADS=1``, two runs at
a time on the 2 cores); ``benchmarks/quality.py`` gives the full table for the chosen defaults.
Example (the row "gridsize 2, 60 epochs")::

    OMP_NUM_THREADS=1 python benchmarks/quality_tuning.py --out /tmp/tune-K --pupil 12 --defocus 6 \
        --step 8 --nfs 1 --batch 4 --gridsize 2 --nepochs 60
"""

from __future__ import annotations

import argparse
import json
import os
import time


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--out", required=True, help="output folder (simulated data, bundle, images, metrics)")
    add("--backend", default="pytorch", help="backend id (default pytorch)")
    add("--nepochs", type=int, default=20, help="epochs (default 20)")
    add("--gridsize", type=int, default=1, help="gridsize (default 1)")
    add("--nfs", type=int, default=2, help="n_filters_scale (default 2)")
    add("--batch", type=int, default=16, help="batch size (default 16)")
    add("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    add("--nll", type=float, default=1.0, help="Poisson NLL weight (default 1)")
    add("--mae", type=float, default=0.0, help="amplitude MAE weight (default 0)")
    add("--pad-object", type=int, default=1, help="ModelConfig.pad_object, 0 or 1 (default 1)")
    add("--probe-big", type=int, default=1, help="ModelConfig.probe_big, 0 or 1 (default 1)")
    add("--crop", type=int, default=20, help="stitch crop M (default 20)")
    add("--pupil", type=float, default=8.0, help="simulation: probe pupil radius (default 8)")
    add("--defocus", type=float, default=6.0, help="simulation: probe defocus in rad (default 6)")
    add("--step", type=float, default=None, help="simulation: scan step (default: the simulation's)")
    add("--n", type=int, default=256, help="simulation: scan positions (default 256)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    from ptycho import workflow
    from ptycho_core.config import ModelConfig, TrainingConfig
    from ptycho_data.npz import save_dataset
    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    os.makedirs(a.out, exist_ok=True)
    sim = SimulationConfig(seed=42, n_positions=a.n, probe_pupil_radius=a.pupil, probe_defocus=a.defocus,
                           step=a.step)
    data = os.path.join(a.out, "simulated.npz")
    save_dataset(simulate_dataset(sim, progress=False), data)
    model = ModelConfig(N=64, gridsize=a.gridsize, n_filters_scale=a.nfs, pad_object=bool(a.pad_object),
                        probe_big=bool(a.probe_big))
    cfg = TrainingConfig(model=model, backend=a.backend, train_data_file=data, output_dir=a.out, seed=42,
                         nepochs=a.nepochs, batch_size=a.batch, learning_rate=a.lr, nll_weight=a.nll,
                         mae_weight=a.mae)
    start = time.time()
    # overwrite: a benchmark replaces its own earlier run in this folder
    rec = workflow.run(cfg, workflow.inference_config_for(cfg, stitch_crop=a.crop), overwrite=True)
    m = rec.metadata.metrics
    print("RESULT", json.dumps({**vars(a), "s": round(time.time() - start, 1),
                                "amp_ssim": round(m["amplitude"]["ssim"], 3),
                                "phase_ssim": round(m["phase"]["ssim"], 3),
                                "loss": rec.metadata.history["loss"][-1]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
