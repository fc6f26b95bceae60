"""Scaling benchmark: training and inference + stitching on lazy datasets larger than memory.

For every size n it writes n random 64 x 64 patterns (positions on a square grid, 2 px
apart) as a lazy dataset directory (``ptycho_data.lazy.LazyDatasetWriter``) in a work
directory, after checking the free disk space, and deletes it afterwards. Each measurement
runs in its own subprocess, which reports its peak resident set (``VmHWM``) and the time per
pattern:

- ``train``: ``backend.train`` on lazily grouped data (normalisation from a streamed pass,
  batches read per step). The time is measured between batch reads ``warmup`` and
  ``warmup + K`` (``--max-batches K``) of the first epoch and the run is then stopped, so
  it covers K steps of the epoch, not a whole epoch (unless the epoch has fewer batches);
- ``infer``: ``ptycho.workflow.predict_and_stitch`` (streamed prediction and native
  stitching into one canvas of the whole scan) over the first K batches of groups.

The peak RSS covers the whole subprocess: imports, grouping, the normalisation pass over all
n patterns and the measured steps. Example::

    python benchmarks/scale.py --sizes 10000 100000 --backend pytorch tensorflow --max-batches 200
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N = 64
STEP_PX = 2.0
CHUNK = 5000


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def write_dataset(directory: Path, n: int, seed: int = 0) -> float:
    """Write ``n`` patterns chunk by chunk; returns the seconds taken."""
    from ptycho_data.lazy import LazyDatasetWriter

    rng = np.random.default_rng(seed)
    side = math.ceil(math.sqrt(n))
    r, c = np.mgrid[:N, :N] - N / 2
    probe = np.exp(-(r**2 + c**2) / (N / 4) ** 2).astype(np.complex64)
    t0 = time.perf_counter()
    with LazyDatasetWriter(directory, probe) as writer:
        for start in range(0, n, CHUNK):
            k = min(CHUNK, n - start)
            i = np.arange(start, start + k)
            x = N + STEP_PX * (i % side) + rng.uniform(-0.3, 0.3, k)
            y = N + STEP_PX * (i // side) + rng.uniform(-0.3, 0.3, k)
            writer.append(rng.gamma(2.0, 1.0, size=(k, N, N)).astype(np.float32), x, y)
    return time.perf_counter() - t0


def _configs(backend: str, batch: int, out: Path):
    from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig

    mc = ModelConfig(N=N, gridsize=1)
    tc = TrainingConfig(model=mc, nepochs=1, batch_size=batch, backend=backend, accelerator="cpu",
                        output_dir=out, seed=0)
    ic = InferenceConfig(model=mc, batch_size=batch, backend=backend, accelerator="cpu", output_dir=out)
    return mc, tc, ic


def measure(kind: str, data: Path, backend: str, batch: int, max_batches: int, warmup: int) -> dict:
    """Run in the subprocess: one measurement, returned as a dict."""
    import attrs

    from ptycho import workflow
    from ptycho_core import backends, reference
    from ptycho_core.contracts import LazyArray
    from ptycho_data.grouping import group_for_inference, group_for_training

    out = Path(tempfile.mkdtemp(prefix="scale_out_"))
    try:
        mc, tc, ic = _configs(backend, batch, out)
        t0 = time.perf_counter()
        dataset = workflow.load_dataset(data, "data")
        be = backends.get(backend)
        model = be.build_model(mc, tc)
        if kind == "infer":
            grouped = group_for_inference(dataset, ic)
            t_group = time.perf_counter() - t0
            canvas = reference.canvas_geometry(grouped.positions.reshape(-1, 2), ic.stitch_crop)
            groups = min(grouped.n_groups, max_batches * batch)
            t1 = time.perf_counter()
            rec = workflow.predict_and_stitch(model, grouped.batch(slice(0, groups)), ic, canvas=canvas)
            seconds = time.perf_counter() - t1
            return {"kind": kind, "patterns": groups, "seconds": seconds, "s_per_pattern": seconds / groups,
                    "group_s": t_group, "canvas": list(rec.object.shape), "timings": rec.metadata.timings,
                    "peak_rss_mib": _peak_rss_mib()}
        grouped = group_for_training(dataset, tc)
        t_group = time.perf_counter() - t0
        total_batches = math.ceil(grouped.n_groups / batch)
        stop_after = warmup + max_batches

        class Stop(Exception):
            pass

        class Timed(LazyArray):
            """Wraps the lazy X: records the time of every batch read, stops the run after enough."""

            def __init__(self, inner: LazyArray) -> None:
                super().__init__(inner.shape, inner.dtype, name="X", max_fetch=inner.max_fetch)
                self.inner, self.stamps = inner, []

            def fetch(self, rows: np.ndarray) -> np.ndarray:
                self.stamps.append(time.perf_counter())
                if len(self.stamps) > stop_after:
                    raise Stop("benchmark: enough batches")
                return self.inner.fetch(rows)

        timed = Timed(grouped.X)
        grouped = attrs.evolve(grouped, X=timed)
        t1 = time.perf_counter()
        try:
            be.train(model, grouped, tc)
            stopped = False
        except Exception as exc:  # Stop, possibly wrapped by the framework
            if len(timed.stamps) <= stop_after:
                raise
            stopped = exc is not None
        end = time.perf_counter()
        stamps = timed.stamps
        if stopped:
            steps = max_batches
            seconds = stamps[stop_after] - stamps[warmup]
        else:  # the whole epoch ran (fewer batches than warmup + K)
            first = min(warmup, len(stamps) - 1)
            steps = total_batches - first
            seconds = end - stamps[first]
        patterns = steps * batch
        return {"kind": kind, "patterns": patterns, "batches": steps, "seconds": seconds,
                "s_per_pattern": seconds / patterns, "whole_epoch": not stopped, "epoch_batches": total_batches,
                "group_s": t_group, "setup_s": t1 - t0, "peak_rss_mib": _peak_rss_mib()}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _run_sub(kind: str, data: Path, backend: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--_measure", kind, "--_data", str(data), "--backend", backend,
           "--batch-size", str(args.batch_size), "--max-batches", str(args.max_batches), "--warmup", str(args.warmup)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):  # progress bars may share the line (carriage returns)
        if "RESULT " in line:
            return json.loads(line[line.rindex("RESULT ") + len("RESULT "):])
    return {"kind": kind, "error": (proc.stderr or proc.stdout)[-2000:]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--backend", nargs="+", default=["pytorch", "tensorflow"])
    p.add_argument("--max-batches", type=int, default=200, help="batches timed per measurement (K)")
    p.add_argument("--warmup", type=int, default=5, help="batches read before the timing starts (training)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workdir", type=Path, default=None, help="where the datasets are written (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the datasets")
    p.add_argument("--_measure", choices=["train", "infer"], help=argparse.SUPPRESS)
    p.add_argument("--_data", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._measure:
        result = measure(args._measure, args._data, args.backend[0], args.batch_size, args.max_batches, args.warmup)
        print("\nRESULT " + json.dumps(result), flush=True)
        sys.stderr.flush()
        os._exit(0)  # a run stopped mid-epoch can leave framework input threads that block interpreter exit
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ptycho_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        need = n * N * N * 4 + n * 64 + (2 << 30)  # patterns + small arrays + 2 GiB margin
        free = shutil.disk_usage(work).free
        if free < need:
            print(f"n={n}: skipped, needs {need / 2**30:.1f} GiB free in {work}, {free / 2**30:.1f} GiB available")
            continue
        data = work / f"scan_{n}"
        write_s = write_dataset(data, n)
        print(f"n={n}: wrote {n * N * N * 4 / 2**30:.2f} GiB in {write_s:.0f} s", flush=True)
        try:
            for backend in args.backend:
                for kind in ("train", "infer"):
                    r = _run_sub(kind, data, backend, args)
                    r.update(n=n, backend=backend)
                    rows.append(r)
                    print(json.dumps(r), flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(data, ignore_errors=True)
    print("\n| n | backend | measurement | patterns timed | time / pattern (ms) | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['n']} | {r['backend']} | {r['kind']} | error | | |")
            continue
        print(f"| {r['n']:,} | {r['backend']} | {r['kind']} | {r['patterns']:,} | "
              f"{1e3 * r['s_per_pattern']:.2f} | {r['peak_rss_mib']:.0f} |")
    if args.workdir is None and not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
