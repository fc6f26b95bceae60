"""Benchmark the PyTorch backend: training and inference throughput, native stitching time.

Prints figures; it asserts nothing. Examples::

    python benchmarks/bench_torch.py                 # N=64, gridsize 1 and 2, 512 groups
    python benchmarks/bench_torch.py --quick         # small sizes for a smoke run
    python benchmarks/bench_torch.py --device cpu --groups 256 --epochs 3

Training throughput is patterns per second in the fastest epoch (epoch 1 includes warm-up)
of a Lightning run (nfs=2, batch 16 by default); inference is batched prediction of object
patches; stitching places 1,000 patches (N=64, central 20x20) on a 512 x 512 canvas with the
native torch scatter-add and with the NumPy reference ``ptycho_core.reference.reassemble``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ptycho_core import reference
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.contracts import GroupedData
from ptycho_torch.infer import infer_model
from ptycho_torch.io import build_handle
from ptycho_torch.reassemble import reassemble_torch
from ptycho_torch.train import train_model


def synthetic_groups(n_groups: int, N: int, gridsize: int, seed: int = 0) -> GroupedData:
    """Random normalised amplitudes with small offsets: enough for timing (not physical)."""
    rng = np.random.default_rng(seed)
    C = gridsize * gridsize
    X = rng.gamma(2.0, 1.0, size=(n_groups, N, N, C)).astype(np.float32)
    X *= np.float32(np.sqrt((N / 2) ** 2 / np.mean(np.sum(X.astype(np.float64) ** 2, axis=(1, 2)))))
    offsets = rng.uniform(-4, 4, size=(n_groups, C, 2)) if C > 1 else np.zeros((n_groups, 1, 2))
    r, c = np.mgrid[:N, :N] - N / 2
    probe = np.exp(-(r**2 + c**2) / (N / 4) ** 2).astype(np.complex64)
    return GroupedData(X=X, offsets=offsets, centroids=rng.uniform(100, 400, size=(n_groups, 2)),
                       indices=np.arange(n_groups * C).reshape(n_groups, C), probe=probe)


def bench_training(data: GroupedData, gridsize: int, epochs: int, batch: int, accelerator: str, nfs: int) -> dict:
    mc = ModelConfig(N=data.N, gridsize=gridsize, n_filters_scale=nfs)
    with tempfile.TemporaryDirectory() as tmp:
        tc = TrainingConfig(model=mc, nepochs=epochs, batch_size=batch, output_dir=Path(tmp), backend="pytorch",
                            accelerator=accelerator, neighbor_count=max(4, gridsize * gridsize))
        model = build_handle(mc, tc)
        t0 = time.perf_counter()
        result = train_model(model, data, tc, enable_progress_bar=False)
        total = time.perf_counter() - t0
    patterns = data.n_groups * data.channels
    seconds = result.history["epoch_s"]
    return {"model": result.model, "patterns_per_s": patterns / min(seconds), "epoch_s": seconds, "total_s": total}


def bench_inference(model, data: GroupedData, accelerator: str, repeats: int) -> float:
    cfg = InferenceConfig(model=model.model_config, backend="pytorch", batch_size=256, accelerator=accelerator)
    infer_model(model, data.batch(slice(0, min(64, data.n_groups))), cfg)  # warm-up
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        infer_model(model, data, cfg)
        times.append(time.perf_counter() - t0)
    return data.n_groups * data.channels / min(times)


def bench_stitching(n_patches: int, canvas: int, crop: int, device: str, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    N = 64
    patches = (rng.normal(size=(n_patches, N, N)) + 1j * rng.normal(size=(n_patches, N, N))).astype(np.complex64)
    positions = rng.uniform(crop, canvas - crop, size=(n_patches, 2))
    shape, origin = (canvas, canvas), (0, 0)
    reassemble_torch(patches[:8], positions[:8], crop, shape, origin, device=device)  # warm-up
    t_torch = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours = reassemble_torch(patches, positions, crop, shape, origin, device=device)
        t_torch.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ref = reference.reassemble(patches, positions, crop, shape, origin)
    t_ref = time.perf_counter() - t0
    err = float(np.max(np.abs(ours - ref)) / max(float(np.max(np.abs(ref))), 1e-12))
    return {"torch_s": min(t_torch), "torch_median_s": statistics.median(t_torch), "numpy_s": t_ref, "max_rel_err": err}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--groups", type=int, default=512, help="groups per training/inference run")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--nfs", type=int, default=2, help="n_filters_scale")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="64 groups, 2 epochs, nfs=1")
    args = parser.parse_args()
    if args.quick:
        args.groups, args.epochs, args.nfs = 64, 2, 1
    accelerator = args.device if args.device != "auto" else ("gpu" if torch.cuda.is_available() else "cpu")
    stitch_device = "cuda" if accelerator == "gpu" else "cpu"
    dev_name = torch.cuda.get_device_name(0) if accelerator == "gpu" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"ptycho-torch benchmark | torch {torch.__version__} | device: {dev_name}")
    print(f"groups={args.groups} epochs={args.epochs} batch={args.batch} nfs={args.nfs}")
    for gridsize in (1, 2):
        data = synthetic_groups(args.groups, 64, gridsize)
        tr = bench_training(data, gridsize, args.epochs, args.batch, accelerator, args.nfs)
        inf = bench_inference(tr["model"], data, accelerator, args.repeats)
        epochs = ", ".join(f"{s:.2f}" for s in tr["epoch_s"])
        print(f"N=64 gridsize={gridsize}: training {tr['patterns_per_s']:9.1f} patterns/s "
              f"(epoch seconds: {epochs}); inference {inf:9.1f} patterns/s")
    st = bench_stitching(1000, 512, 20, stitch_device, args.repeats)
    print(f"stitching 1000 patches (M=20) onto 512x512: torch[{stitch_device}] {st['torch_s'] * 1e3:8.2f} ms "
          f"(median {st['torch_median_s'] * 1e3:.2f} ms), NumPy reference {st['numpy_s'] * 1e3:8.2f} ms, "
          f"speed-up x{st['numpy_s'] / st['torch_s']:.1f}, max rel. diff {st['max_rel_err']:.1e}")


if __name__ == "__main__":
    main()
