"""Performance table: every figure of both backends next to a bound measured in the same process.

One entry point::

    python benchmarks/run.py --quick             # smaller sizes; finishes in minutes on 2 cores
    python benchmarks/run.py                     # full sizes
    python benchmarks/run.py --quick --json out.json
    python benchmarks/run.py --only stitch       # a subset: startup, stitch, refine, train, infer, cycle
    python benchmarks/run.py --quick --strict    # exit status 1 when a target is not met

The machine is usually shared, so absolute times drift; each figure is therefore compared
with a bound measured in the same process just before or after it, and the table shows the
ratio. Rows:

* training throughput (patterns/s, batch 16, N=64, gridsize 1 and 2) of each backend's own
  ``train_model`` vs a bare loop over the same network (the backend's model builder) with
  Adam and a trivial loss (mean of the output): ratio ``bare / backend``, target <= 1.15.
  Each figure is the fastest epoch after the first (warm-up); the bare loop runs before
  and once more after the backend;
* inference throughput of each backend's ``infer_model`` vs the bare network forward in
  batches of the same size: ratio ``bare / backend``, target <= 1.15;
* for torch, both bare loops also run with the network in its previous layout (NCHW
  activations, ``layout='contiguous'``, Adam's per-tensor loop) next to the backend's fast one
  (``channels_last``, fused Adam), row "bare pytorch fast vs current layout"; the pytorch
  rows above are judged against the fast bare loop, the framework's best;
* TensorFlow's figure divided by torch's, backend and bare, per gridsize (target <= 1.25);
* stitching 800 and 10,000 patches (N=64, M=20) with each backend and the NumPy reference
  vs a plain ``np.add.at`` bilinear scatter of the same data (ratio ``time / bound``, target
  <= 2) and vs two per-patch Python loops (speed-up, target >= 20): ``reference.reassemble_loop``,
  which adds each patch's crop to its own small window of the canvas ("local loop"), and
  :func:`canvas_loop_scatter`, which translates each patch across the whole canvas ("canvas
  loop", the naive stitch; at 10,000 patches timed on its first 800 and scaled, since its
  cost per patch is fixed by the canvas);
* refinement (``ptycho.refine.refine_object``, NumPy, one core) of the simulated camera / coins
  scan (256 positions, N=64, flat start) with its loop vs the same passes with the block update
  composed of ptycho_core's reference functions in double precision (``_ReferenceBlocks``, the
  loop before it was made faster): ratio ``time / bound``, target <= 0.6; the row also gives
  both results' amplitude / phase SSIM;
* ``ptycho --help`` and ``ptycho backends`` wall time (target < 0.5 s; bound: a bare
  ``python -c pass``), and whether either imported a framework;
* the integration cycle ``python -m ptycho_core.cli run --backend X --nepochs 2`` on the
  canonical fixture from interpreter start (targets 12 s pytorch, 18 s tensorflow; bound:
  the interpreter importing that backend's framework modules).

Devices: ``--device auto`` (the default) runs every throughput and stitching row on CUDA when
the framework sees a GPU (TensorFlow's ``/GPU:0``), else on the CPU; ``--device cpu`` or
``cuda`` forces one. Each throughput row names the device it ran on; the integration cycle
uses the CLI's ``accelerator='auto'``.

Every backend measurement runs in its own subprocess (this script with ``--worker``), so
the frameworks never share a process; the peak RSS of each subprocess is read from
``os.wait4`` and shown per row. The load average is printed at the start and the end.
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

HERE = Path(__file__).resolve()
N = 64
BATCH = 16
CROP = 20
TRAIN_RATIO_TARGET = 1.15
CROSS_RATIO_TARGET = 1.25  # TensorFlow / PyTorch throughput, same run
STITCH_RATIO_TARGET = 2.0
LOOP_SPEEDUP_TARGET = 20.0
REFINE_RATIO_TARGET = 0.6
REFINE_PASSES = 10
CANVAS_LOOP_SAMPLE = 800
STARTUP_TARGET_S = 0.5
CYCLE_TARGET_S = {"pytorch": 12.0, "tensorflow": 18.0}
BACKENDS = ("pytorch", "tensorflow")
FRAMEWORK_MODULES = ("torch", "lightning", "tensorflow", "keras")


# ----------------------------------------------------------------------------------------- data
def synthetic_groups(n_groups: int, gridsize: int, seed: int = 0):
    """Random normalised amplitudes with small offsets (timing only, not physical)."""
    import numpy as np

    from ptycho_core.contracts import GroupedData

    rng = np.random.default_rng(seed)
    C = gridsize * gridsize
    X = rng.gamma(2.0, 1.0, size=(n_groups, N, N, C)).astype(np.float32)
    X *= np.float32(np.sqrt((N / 2) ** 2 / np.mean(np.sum(X.astype(np.float64) ** 2, axis=(1, 2)))))
    offsets = rng.uniform(-4, 4, size=(n_groups, C, 2)) if C > 1 else np.zeros((n_groups, 1, 2))
    r, c = np.mgrid[:N, :N] - N / 2
    probe = np.exp(-(r**2 + c**2) / (N / 4) ** 2).astype(np.complex64)
    return GroupedData(X=X, offsets=offsets, centroids=rng.uniform(100, 400, size=(n_groups, 2)),
                       indices=np.arange(n_groups * C).reshape(n_groups, C), probe=probe)


def stitch_inputs(n_patches: int, seed: int = 0):
    """``n_patches`` complex (N, N) patches at random positions on a canvas sized for ~12x coverage."""
    import numpy as np

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_patches * CROP * CROP / 12.0))) + 2 * CROP
    patches = (rng.normal(size=(n_patches, N, N)) + 1j * rng.normal(size=(n_patches, N, N))).astype(np.complex64)
    positions = rng.uniform(CROP, side - CROP, size=(n_patches, 2))
    return patches, positions, (side, side), (0, 0)


def add_at_scatter(patches, positions, crop: int, shape, origin):
    """Plain NumPy bilinear scatter with ``np.add.at`` (the stitching bound): same result as the reference."""
    import numpy as np

    H, W = shape
    start = patches.shape[1] // 2 - crop // 2
    crops = patches[:, start:start + crop, start:start + crop].astype(np.complex128)
    rows0 = positions[:, 1] - origin[1] - crop // 2
    cols0 = positions[:, 0] - origin[0] - crop // 2
    r0, c0 = np.floor(rows0), np.floor(cols0)
    fr, fc = rows0 - r0, cols0 - c0
    ar = np.arange(crop)
    total = np.zeros(H * W, np.complex128)
    cover = np.zeros(H * W, np.float64)
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            r = r0.astype(np.int64)[:, None, None] + dr + ar[None, :, None]
            c = c0.astype(np.int64)[:, None, None] + dc + ar[None, None, :]
            ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
            idx = np.where(ok, np.clip(r, 0, H - 1) * W + np.clip(c, 0, W - 1), 0)
            w = (wr * wc)[:, None, None] * ok
            np.add.at(total, idx.ravel(), (crops * w).ravel())
            np.add.at(cover, idx.ravel(), np.broadcast_to(w, idx.shape).ravel())
    return (total / (cover + 1e-9)).astype(np.complex64).reshape(H, W)


def canvas_loop_scatter(patches, positions, crop: int, shape, origin, limit: int | None = None):
    """Per-patch Python loop that translates each patch across the whole canvas (the naive stitch).

    For every patch: place its centre crop on a zero canvas-sized layer at the integer part
    of its position, move the layer by the fractional part with four weighted canvas-wide
    slice additions (bilinear, zero fill), add it (and its coverage) to the totals. This is
    how a stitch is usually first written (pad each patch to the canvas, translate, add;
    upstream PtychoPINN's shift-and-sum works per patch on the full canvas the same way), so
    its cost per patch grows with the canvas, not with the crop. ``limit`` stops after that
    many patches (the cost per patch does not depend on the others). Same result as
    :func:`add_at_scatter` when ``limit`` is None.
    """
    import numpy as np

    H, W = shape
    start = patches.shape[1] // 2 - crop // 2
    rows0 = positions[:, 1] - origin[1] - crop // 2
    cols0 = positions[:, 0] - origin[0] - crop // 2
    total = np.zeros((H, W), np.complex128)
    cover = np.zeros((H, W), np.float64)
    ones = np.ones((crop, crop))
    for p in range(patches.shape[0] if limit is None else min(limit, patches.shape[0])):
        r0, c0 = int(np.floor(rows0[p])), int(np.floor(cols0[p]))
        fr, fc = rows0[p] - r0, cols0[p] - c0
        for values, out in ((patches[p, start:start + crop, start:start + crop].astype(np.complex128), total),
                            (ones, cover)):
            layer = np.zeros((H + 1, W + 1), values.dtype)  # row/col 0 is canvas row/col -1
            r_lo, r_hi = max(r0 + 1, 0), min(r0 + 1 + crop, H + 1)
            c_lo, c_hi = max(c0 + 1, 0), min(c0 + 1 + crop, W + 1)
            if r_lo < r_hi and c_lo < c_hi:
                layer[r_lo:r_hi, c_lo:c_hi] = values[r_lo - r0 - 1:r_hi - r0 - 1, c_lo - c0 - 1:c_hi - c0 - 1]
            out += (1 - fr) * (1 - fc) * layer[1:, 1:]
            out += fr * (1 - fc) * layer[:-1, 1:]
            out += (1 - fr) * fc * layer[1:, :-1]
            out += fr * fc * layer[:-1, :-1]
    return (total / (cover + 1e-9)).astype(np.complex64)


def best_of(fn, repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# -------------------------------------------------------------------------------------- workers
def resolve_device(device: str, backend: str) -> str:
    """``'auto'`` -> ``'cuda'`` when the backend's framework sees a GPU, else ``'cpu'``; others unchanged.

    Every throughput and stitching row runs on the device this returns, so on a machine with
    a GPU the table is the GPU's; ``--device cpu`` forces the CPU.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")
    if device != "auto":
        return device
    if backend == "pytorch":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        from ptycho_tf._env import tf

        return "cuda" if tf.config.list_logical_devices("GPU") else "cpu"
    return "cpu"


def _accelerator(device: str) -> str:
    return "gpu" if device == "cuda" else "cpu"


def _tf_device(device: str) -> str:
    return "/GPU:0" if device == "cuda" else "/CPU:0"


def _train_config(backend: str, gridsize: int, epochs: int, nfs: int, out: Path, device: str = "cpu"):
    from ptycho_core.config import ModelConfig, TrainingConfig

    mc = ModelConfig(N=N, gridsize=gridsize, n_filters_scale=nfs)
    return mc, TrainingConfig(model=mc, nepochs=epochs, batch_size=BATCH, output_dir=out, backend=backend,
                              accelerator=_accelerator(device), neighbor_count=max(4, gridsize * gridsize),
                              checkpoint_every=epochs)


def _torch_sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# the two torch layouts the bare-network rows compare: the network as it ran before
# channels-last (NCHW activations, Adam's per-tensor loop) and the backend's fast path
TORCH_LAYOUTS = {"current": ("contiguous", False), "fast": ("channels_last", True)}


def _torch_bare_net(gridsize: int, nfs: int, layout: str, device: str):
    import torch

    from ptycho_torch.model import PtychoNet

    torch.manual_seed(0)
    return PtychoNet(N=N, gridsize=gridsize, n_filters_scale=nfs, layout=layout).to(device)


def worker_train_pytorch(gridsize: int, groups: int, epochs: int, nfs: int, device: str = "auto") -> dict:
    import torch

    from ptycho_torch.io import build_handle
    from ptycho_torch.pinn import grouped_tensors
    from ptycho_torch.runtime import fit_threads
    from ptycho_torch.train import train_model

    device = resolve_device(device, "pytorch")
    if device == "cpu":
        fit_threads()
    data = synthetic_groups(groups, gridsize)
    patterns = data.n_groups * data.channels
    X = grouped_tensors(data)[0].to(device)

    def bare_epochs(kind: str, n: int) -> list[float]:
        layout, fused = TORCH_LAYOUTS[kind]
        net = _torch_bare_net(gridsize, nfs, layout, device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=fused)
        gen = torch.Generator().manual_seed(0)
        seconds = []
        for _ in range(n):
            _torch_sync(device)
            t0 = time.perf_counter()
            for idx in torch.randperm(X.shape[0], generator=gen).split(BATCH):
                opt.zero_grad()
                loss = torch.view_as_real(net(X[idx.to(device)])).mean()
                loss.backward()
                opt.step()
            _torch_sync(device)
            seconds.append(time.perf_counter() - t0)
        return seconds

    bare = {kind: bare_epochs(kind, epochs) for kind in TORCH_LAYOUTS}
    with tempfile.TemporaryDirectory() as tmp:
        mc, tc = _train_config("pytorch", gridsize, epochs, nfs, Path(tmp), device)
        result = train_model(build_handle(mc, tc), data, tc, enable_progress_bar=False)
    for kind in TORCH_LAYOUTS:  # and once after the backend, against drift
        bare[kind] += bare_epochs(kind, 2)[1:]
    bound = {kind: patterns / min(s[1:]) for kind, s in bare.items()}
    return {"figure": patterns / min(result.history["epoch_s"][1:]), "bound": bound["fast"],
            "bare_current": bound["current"], "device": device,
            "detail": {"backend_epoch_s": result.history["epoch_s"], "bare_fast_epoch_s": bare["fast"],
                       "bare_current_epoch_s": bare["current"], "threads": torch.get_num_threads(),
                       "device": device}}


def worker_train_tensorflow(gridsize: int, groups: int, epochs: int, nfs: int, device: str = "auto") -> dict:
    from ptycho_tf._env import keras, tf
    from ptycho_tf.io import build_handle
    from ptycho_tf.model import build_network
    from ptycho_tf.train import train_model

    device = resolve_device(device, "tensorflow")
    data = synthetic_groups(groups, gridsize)
    patterns = data.n_groups * data.channels
    with tf.device(_tf_device(device)):
        X = tf.constant(data.X)
        net = build_network(_train_config("tensorflow", gridsize, 1, nfs, Path("."))[0], seed=0)
        opt = keras.optimizers.Adam(learning_rate=1e-3)
        rng = tf.random.Generator.from_seed(0)

    @tf.function(reduce_retracing=True)
    def step(xb):
        with tf.GradientTape() as tape:
            amp, phase = net(xb, training=True)
            loss = tf.reduce_mean(amp) + tf.reduce_mean(phase)
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        return loss

    def bare_epochs(n: int) -> list[float]:
        seconds = []
        with tf.device(_tf_device(device)):
            for _ in range(n):
                t0 = time.perf_counter()
                perm = tf.argsort(rng.uniform([X.shape[0]]))
                for start in range(0, X.shape[0], BATCH):
                    loss = step(tf.gather(X, perm[start:start + BATCH]))
                float(loss)  # wait for the device
                seconds.append(time.perf_counter() - t0)
        return seconds

    bare = bare_epochs(epochs)
    with tempfile.TemporaryDirectory() as tmp:
        mc, tc = _train_config("tensorflow", gridsize, epochs, nfs, Path(tmp), device)
        result = train_model(build_handle(mc, tc), data, tc, verbose=0)
    bare += bare_epochs(2)[1:]  # and once after the backend, against drift
    return {"figure": patterns / min(result.history["epoch_s"][1:]), "bound": patterns / min(bare[1:]),
            "device": device, "detail": {"backend_epoch_s": result.history["epoch_s"], "bare_epoch_s": bare,
                                         "device": device}}


def worker_infer_pytorch(gridsize: int, groups: int, repeats: int, nfs: int, device: str = "auto") -> dict:
    import numpy as np
    import torch

    from ptycho_core.config import InferenceConfig
    from ptycho_torch.infer import infer_model
    from ptycho_torch.io import build_handle
    from ptycho_torch.pinn import grouped_tensors
    from ptycho_torch.runtime import fit_threads

    device = resolve_device(device, "pytorch")
    if device == "cpu":
        fit_threads()
    data = synthetic_groups(groups, gridsize)
    patterns = data.n_groups * data.channels
    mc, tc = _train_config("pytorch", gridsize, 1, nfs, Path("."), device)
    model = build_handle(mc, tc)
    cfg = InferenceConfig(model=mc, backend="pytorch", batch_size=64, accelerator=_accelerator(device))
    X = grouped_tensors(data)[0]
    nets = {}
    for kind, (layout, _) in TORCH_LAYOUTS.items():
        nets[kind] = _torch_bare_net(gridsize, nfs, layout, device)
        nets[kind].load_state_dict(model.native.net.state_dict())
        nets[kind].eval()

    def bare(kind: str) -> np.ndarray:
        with torch.inference_mode():
            return torch.cat([nets[kind](X[s:s + cfg.batch_size].to(device)).cpu()
                              for s in range(0, X.shape[0], cfg.batch_size)]).numpy()

    backend_out = infer_model(model, data, cfg).patches
    outs = {kind: bare(kind) for kind in TORCH_LAYOUTS}
    times = {kind: best_of(lambda k=kind: bare(k), repeats) for kind in TORCH_LAYOUTS}
    t_backend = best_of(lambda: infer_model(model, data, cfg), repeats)
    for kind in TORCH_LAYOUTS:
        times[kind] = min(times[kind], best_of(lambda k=kind: bare(k), repeats))

    def rel(a, b) -> float:
        return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))

    C = data.channels
    backend_patches = backend_out if mc.stitches_group_object else backend_out.reshape(-1, C, N, N)
    detail = {"backend_s": t_backend, "bare_fast_s": times["fast"], "bare_current_s": times["current"],
              "batch_size": cfg.batch_size, "device": device, "threads": torch.get_num_threads(),
              "max_rel_diff_fast_vs_current": rel(outs["fast"], outs["current"])}
    if not mc.stitches_group_object:  # at gridsize 2 the backend returns merged group objects
        detail["max_rel_diff_backend_vs_bare"] = rel(backend_patches, outs["fast"])
    return {"figure": patterns / t_backend, "bound": patterns / times["fast"],
            "bare_current": patterns / times["current"], "device": device, "detail": detail}


def worker_infer_tensorflow(gridsize: int, groups: int, repeats: int, nfs: int, device: str = "auto") -> dict:
    from ptycho_core.config import InferenceConfig
    from ptycho_tf._env import tf
    from ptycho_tf.infer import infer_model
    from ptycho_tf.io import build_handle

    device = resolve_device(device, "tensorflow")
    data = synthetic_groups(groups, gridsize)
    patterns = data.n_groups * data.channels
    mc, tc = _train_config("tensorflow", gridsize, 1, nfs, Path("."), device)
    model = build_handle(mc, tc)
    cfg = InferenceConfig(model=mc, backend="tensorflow", batch_size=64, accelerator=_accelerator(device))
    net = model.native.net
    C = data.channels

    @tf.function(input_signature=[tf.TensorSpec([None, N, N, C], tf.float32)])
    def forward(xb):
        return net(xb, training=False)

    def bare() -> None:
        with tf.device(_tf_device(device)):
            for s in range(0, data.n_groups, cfg.batch_size):
                amp, phase = forward(tf.constant(data.X[s:s + cfg.batch_size]))
                amp.numpy(), phase.numpy()

    infer_model(model, data, cfg)
    bare()
    t_bare = best_of(bare, repeats)
    t_backend = best_of(lambda: infer_model(model, data, cfg), repeats)
    t_bare = min(t_bare, best_of(bare, repeats))
    return {"figure": patterns / t_backend, "bound": patterns / t_bare, "device": device,
            "detail": {"backend_s": t_backend, "bare_s": t_bare, "batch_size": cfg.batch_size, "device": device}}


def worker_stitch(impl: str, n_patches: int, repeats: int, device: str = "auto") -> dict:
    import numpy as np

    from ptycho_core import reference

    patches, positions, shape, origin = stitch_inputs(n_patches)
    device = resolve_device(device, impl)
    if impl == "pytorch":
        from ptycho_torch.reassemble import reassemble_torch

        def run():
            return reassemble_torch(patches, positions, CROP, shape, origin, device=device)
    elif impl == "tensorflow":
        from ptycho_tf.reassemble import reassemble_tf

        def run():
            return reassemble_tf(patches, positions, CROP, shape, origin, device=_tf_device(device))
    else:
        def run():
            return reference.reassemble(patches, positions, CROP, shape, origin)

    ours = run()  # warm-up (tracing, allocator)
    bound = add_at_scatter(patches, positions, CROP, shape, origin)
    t_impl = best_of(run, repeats)
    t_bound = best_of(lambda: add_at_scatter(patches, positions, CROP, shape, origin), repeats)
    t_impl = min(t_impl, best_of(run, repeats))
    t_loop = best_of(lambda: reference.reassemble_loop(patches, positions, CROP, shape, origin), 2)
    # the canvas-wide loop costs the same for every patch: time up to CANVAS_LOOP_SAMPLE patches, scale
    sample = min(n_patches, CANVAS_LOOP_SAMPLE)
    t_canvas = best_of(lambda: canvas_loop_scatter(patches, positions, CROP, shape, origin, limit=sample),
                       2 if sample == n_patches else 1) * n_patches / sample

    def rel(a) -> float:
        return float(np.max(np.abs(a - bound)) / max(float(np.max(np.abs(bound))), 1e-12))

    detail = {"canvas": list(shape), "max_rel_diff_vs_bound": rel(ours), "canvas_loop_patches_timed": sample,
              "device": device}
    if sample == n_patches:  # the canvas loop gives the same image as the bound
        detail["canvas_loop_max_rel_diff_vs_bound"] = rel(canvas_loop_scatter(patches, positions, CROP, shape, origin))
    return {"figure": t_impl, "bound": t_bound, "loop": t_loop, "canvas_loop": t_canvas, "detail": detail}


def worker_refine(passes: int, repeats: int) -> dict:
    """Refinement passes of the camera / coins scan: the library's loop, and the same with the reference update."""
    from unittest import mock

    import numpy as np

    from ptycho import refine
    from ptycho_data.metrics import evaluate_reconstruction
    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    ds = simulate_dataset(SimulationConfig(object_kind="images", amplitude_image="camera", phase_image="coins",
                                           seed=42), progress=False)
    start = np.ones(ds.object.shape, np.complex64)

    def run():
        return refine.refine_object(start, (0, 0), ds.diffraction, ds.positions, ds.probe, passes, progress=False)

    def reference():
        with mock.patch.object(refine, "_Blocks", refine._ReferenceBlocks):
            return run()

    results = {}
    for name, fn in (("figure", run), ("bound", reference)):
        fn()  # warm-up
        results[name] = fn()
    t_fig, t_ref = best_of(run, repeats), best_of(reference, repeats)
    t_fig = min(t_fig, best_of(run, repeats))  # interleaved: the bound between two runs of the figure
    ssim = {name: [round(float(evaluate_reconstruction(r.object, ds.object, ds.positions)[part]["ssim"]), 4)
                   for part in ("amplitude", "phase")] for name, r in results.items()}
    return {"figure": t_fig, "bound": t_ref, "detail": {"passes": passes, "positions": len(ds.positions),
                                                        "ssim_amplitude_phase": ssim}}


def run_worker(args: argparse.Namespace) -> None:
    """Child-process side: run one measurement and write its JSON to ``args.result``."""
    kind, *rest = args.worker.split(":")
    params = json.loads(args.params)
    if kind == "train":
        fn = worker_train_pytorch if rest[0] == "pytorch" else worker_train_tensorflow
        out = fn(int(rest[1]), **params)
    elif kind == "infer":
        fn = worker_infer_pytorch if rest[0] == "pytorch" else worker_infer_tensorflow
        out = fn(int(rest[1]), **params)
    elif kind == "stitch":
        out = worker_stitch(rest[0], int(rest[1]), **params)
    elif kind == "refine":
        out = worker_refine(**params)
    else:
        raise SystemExit(f"unknown worker {args.worker!r}")
    Path(args.result).write_text(json.dumps(out))


# ------------------------------------------------------------------------------------- parent
def run_child(cmd: list[str], *, env: dict | None = None, cwd: str | None = None,
              timeout: float = 600.0) -> tuple[int, float, float, str]:
    """Run ``cmd``; return (exit code, wall seconds, peak RSS in MiB from ``wait4``, stderr tail)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=cwd)
        deadline = t0 + timeout
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.005)
        except BaseException:  # interrupted: never leave the measurement running
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace")[-2000:]
    return proc.returncode, wall, usage.ru_maxrss / 1024.0, tail


def measure(name: str, params: dict) -> tuple[dict, float]:
    """Run worker ``name`` in a fresh interpreter; return its result and peak RSS (MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, str(HERE), "--worker", name, "--params", json.dumps(params), "--result", str(result)]
        code, _, rss, tail = run_child(cmd)
        if code != 0 or not result.is_file():
            raise RuntimeError(f"worker {name} failed (exit {code}):\n{tail}")
        return json.loads(result.read_text()), rss


def _row(name: str, figure: str, bound: str, ratio: float, target: str, ok: bool, rss: float, **extra) -> dict:
    return {"name": name, "figure": figure, "bound": bound, "ratio": ratio, "target": target,
            "status": "PASS" if ok else "FAIL", "peak_rss_mib": rss, **extra}


def rows_throughput(kind: str, sizes: dict) -> list[dict]:
    """Backend vs its bare network per backend and gridsize, then torch's two layouts and torch vs TensorFlow.

    The pytorch bound is the bare network in the backend's (fast) layout; the "bare pytorch
    fast vs current" row is that bound against the same loop in the NCHW layout with Adam's
    per-tensor loop (the network as it ran before), and the "pytorch vs tensorflow" rows divide
    TensorFlow's figure by torch's (backend and bare), target <= 1.25.
    """
    rows = []
    results: dict[tuple[str, int], dict] = {}
    label = "training" if kind == "train" else "inference"
    for backend in BACKENDS:
        for gridsize in (1, 2):
            name = f"{kind}:{backend}:{gridsize}"
            params = {"groups": sizes["groups"], "nfs": sizes["nfs"], "device": sizes["device"]}
            params.update({"epochs": sizes["epochs"]} if kind == "train" else {"repeats": sizes["repeats"]})
            res, rss = measure(name, params)
            results[backend, gridsize] = res
            ratio = res["bound"] / res["figure"]
            rows.append(_row(f"{label} {backend} gs={gridsize} [{res['device']}]", f"{res['figure']:.1f} pat/s",
                             f"bare {res['bound']:.1f} pat/s", ratio, f"<= {TRAIN_RATIO_TARGET}",
                             ratio <= TRAIN_RATIO_TARGET, rss, detail=res["detail"]))
            _progress(rows[-1])
            if "bare_current" in res:
                gain = res["bound"] / res["bare_current"]
                rows.append(_row(f"{label} bare pytorch gs={gridsize}: fast vs current layout",
                                 f"{res['bound']:.1f} pat/s", f"current {res['bare_current']:.1f} pat/s", gain,
                                 "> 1 (speed-up)", gain > 1.0, rss))
                _progress(rows[-1])
    for gridsize in (1, 2):
        t, f = results["pytorch", gridsize], results["tensorflow", gridsize]
        for what, a, b in (("backend", t["figure"], f["figure"]), ("bare", t["bound"], f["bound"])):
            ratio = b / a
            rows.append(_row(f"{label} gs={gridsize} {what}: tensorflow / pytorch", f"pytorch {a:.1f} pat/s",
                             f"tensorflow {b:.1f} pat/s", ratio, f"<= {CROSS_RATIO_TARGET}",
                             ratio <= CROSS_RATIO_TARGET, 0.0))
            _progress(rows[-1])
    return rows


def rows_stitch(sizes: dict) -> list[dict]:
    rows = []
    for n_patches in (800, 10_000):
        for impl in ("pytorch", "tensorflow", "reference"):
            res, rss = measure(f"stitch:{impl}:{n_patches}", {"repeats": sizes["repeats"], "device": sizes["device"]})
            ratio = res["figure"] / res["bound"]
            speedup = res["loop"] / res["figure"]
            rows.append(_row(f"stitch {n_patches} {impl} vs add.at", f"{res['figure'] * 1e3:.1f} ms",
                             f"np.add.at {res['bound'] * 1e3:.1f} ms", ratio, f"<= {STITCH_RATIO_TARGET:g}",
                             ratio <= STITCH_RATIO_TARGET, rss, detail=res["detail"]))
            _progress(rows[-1])
            rows.append(_row(f"stitch {n_patches} {impl} vs local loop", f"{res['figure'] * 1e3:.1f} ms",
                             f"local loop {res['loop'] * 1e3:.0f} ms", speedup, f">= {LOOP_SPEEDUP_TARGET:g}x faster",
                             speedup >= LOOP_SPEEDUP_TARGET, rss))
            _progress(rows[-1])
            speedup = res["canvas_loop"] / res["figure"]
            timed = res["detail"]["canvas_loop_patches_timed"]
            scaled = "" if timed == n_patches else f" (x{n_patches / timed:g} from {timed})"
            rows.append(_row(f"stitch {n_patches} {impl} vs canvas loop", f"{res['figure'] * 1e3:.1f} ms",
                             f"canvas loop {res['canvas_loop'] * 1e3:.0f} ms{scaled}", speedup,
                             f">= {LOOP_SPEEDUP_TARGET:g}x faster", speedup >= LOOP_SPEEDUP_TARGET, rss))
            _progress(rows[-1])
    return rows


def rows_refine(sizes: dict) -> list[dict]:
    res, rss = measure("refine", {"passes": REFINE_PASSES, "repeats": sizes["repeats"]})
    ratio = res["figure"] / res["bound"]
    ssim = res["detail"]["ssim_amplitude_phase"]
    row = _row(f"refine {res['detail']['positions']} positions x {REFINE_PASSES} passes vs reference update",
               f"{res['figure']:.2f} s (SSIM {ssim['figure'][0]:.3f} / {ssim['figure'][1]:.3f})",
               f"reference {res['bound']:.2f} s (SSIM {ssim['bound'][0]:.3f} / {ssim['bound'][1]:.3f})", ratio,
               f"<= {REFINE_RATIO_TARGET:g}", ratio <= REFINE_RATIO_TARGET, rss, detail=res["detail"])
    _progress(row)
    return [row]


def _ptycho_cmd() -> list[str]:
    script = Path(sys.executable).parent / "ptycho"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ptycho_core.cli"]


_PROBE_IMPORTS = (
    "import sys, contextlib, io\n"
    "from ptycho_core.cli import main\n"
    "try:\n"
    "    with contextlib.redirect_stdout(io.StringIO()):\n"
    "        main(sys.argv[1:])\n"
    "except SystemExit:\n"  # argparse exits after --help
    "    pass\n"
    "print(','.join(m for m in {mods!r} if m in sys.modules))\n"
)


def rows_startup(sizes: dict) -> list[dict]:
    rows = []
    repeats = sizes["startup_repeats"]
    bare = [run_child([sys.executable, "-c", "pass"]) for _ in range(repeats)]
    t_bare = min(b[1] for b in bare)
    for argv in (["--help"], ["backends"]):
        runs = [run_child(_ptycho_cmd() + argv) for _ in range(repeats)]
        if any(r[0] != 0 for r in runs):
            raise RuntimeError(f"ptycho {' '.join(argv)} failed:\n{runs[0][3]}")
        wall = min(r[1] for r in runs)
        probe = subprocess.run([sys.executable, "-c", _PROBE_IMPORTS.format(mods=FRAMEWORK_MODULES), *argv],
                               capture_output=True, text=True, check=True)
        frameworks = probe.stdout.strip().splitlines()[-1] if probe.stdout.strip() else ""
        ok = wall < STARTUP_TARGET_S and not frameworks
        rows.append(_row(f"startup ptycho {' '.join(argv)}", f"{wall:.3f} s", f"python -c pass {t_bare:.3f} s",
                         wall / t_bare, f"< {STARTUP_TARGET_S} s, no framework import", ok,
                         max(r[2] for r in runs),
                         detail={"frameworks_imported": frameworks or "none", "runs_s": [r[1] for r in runs]}))
        _progress(rows[-1])
    return rows


_FRAMEWORK_IMPORT = {
    "pytorch": "import ptycho_torch.train, ptycho_torch.infer, ptycho_torch.io",
    "tensorflow": "import ptycho_tf.train, ptycho_tf.infer, ptycho_tf.io",
}


def rows_cycle(sizes: dict) -> list[dict]:
    from ptycho_data.fixtures import canonical_fixture_path

    fixture = str(canonical_fixture_path())
    rows = []
    for backend in BACKENDS:
        code, t_import, _, tail = run_child([sys.executable, "-c", _FRAMEWORK_IMPORT[backend]])
        if code != 0:
            raise RuntimeError(f"importing the {backend} backend failed:\n{tail}")
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "ptycho_core.cli", "run", "--backend", backend, "--train-data", fixture,
                   "--nepochs", "2", "--output-dir", str(Path(tmp) / "out")]
            code, wall, rss, tail = run_child(cmd, cwd=tmp)
            summary = Path(tmp) / "out" / "summary.json"
            timings = json.loads(summary.read_text()).get("timings", {}) if summary.is_file() else {}
        if code != 0:
            raise RuntimeError(f"integration cycle ({backend}) failed (exit {code}):\n{tail}")
        target = CYCLE_TARGET_S[backend]
        # where the wall time went: the framework import (timed alone above), the run's own timings
        # (fit = Trainer.fit / Keras fit, incl. the first step's tracing; infer; stitch) and the rest
        parts = {"framework_import_s": t_import, **{k: timings[k] for k in ("fit_s", "infer_s", "stitch_s")
                                                    if k in timings}}
        parts["rest_s"] = wall - sum(parts.values())
        rows.append(_row(f"cycle {backend} (64 pat, 2 ep)", f"{wall:.1f} s", f"framework import {t_import:.1f} s",
                         wall / t_import, f"< {target:g} s", wall < target, rss, detail=parts))
        _progress(rows[-1])
    return rows


def _progress(row: dict) -> None:
    print(f"  .. {row['name']}: {row['figure']} (bound {row['bound']}, ratio {row['ratio']:.2f}) {row['status']}",
          file=sys.stderr, flush=True)


def machine() -> dict:
    """nproc, CPU model, RAM, Python and framework versions (from metadata, nothing imported)."""
    from importlib import metadata

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
                break
    except OSError:
        pass
    versions = {}
    for dist in ("torch", "lightning", "tensorflow-cpu", "tensorflow", "keras", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return {"nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "cpu": cpu, "ram": ram,
            "python": platform.python_version(), "versions": versions}


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the rows."""
    head = "| figure | value | bound | ratio | target | result | peak RSS |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['figure']} | {r['bound']} | {r['ratio']:.2f} | {r['target']} | "
                     f"{r['status']} | {r['peak_rss_mib']:.0f} MiB |")
    return "\n".join(lines)


SECTIONS = {"startup": rows_startup, "stitch": rows_stitch, "refine": rows_refine,
            "infer": lambda s: rows_throughput("infer", s), "cycle": rows_cycle,
            "train": lambda s: rows_throughput("train", s)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller training/inference sizes, fewer repeats")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only these sections")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is not met")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where the throughput and stitching rows run (auto: CUDA when the framework sees a GPU)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return 0
    if args.quick:
        sizes = {"groups": 64, "epochs": 5, "nfs": 1, "repeats": 3, "startup_repeats": 5}
    else:
        sizes = {"groups": 256, "epochs": 4, "nfs": 2, "repeats": 5, "startup_repeats": 10}
    sizes["device"] = args.device
    info = machine()
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    print(f"command: python benchmarks/run.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"machine: {info['nproc']} CPUs (affinity {info['affinity']}), {info['cpu']}, RAM {info['ram']}, "
          f"Python {info['python']}, " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(f"sizes: {sizes} (training: batch {BATCH}, N={N}, patterns per run = groups x gridsize^2)")
    print("load average at start (1/5/15 min): " + " / ".join(f"{x:.2f}" for x in load_start), flush=True)
    rows: list[dict] = []

    def write_json(complete: bool) -> None:
        if args.json:
            Path(args.json).write_text(json.dumps({
                "command": sys.argv, "machine": info, "sizes": sizes, "load_start": load_start,
                "load_now": os.getloadavg(), "elapsed_s": time.perf_counter() - t0, "complete": complete,
                "rows": rows,
            }, indent=2))

    for name, fn in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        try:
            rows += fn(sizes)
        except RuntimeError as exc:  # a failed measurement is reported, the other sections still run
            print(f"section {name} failed: {exc}", file=sys.stderr)
            rows.append(_row(f"{name} (failed)", "error", "-", float("nan"), "-", False, 0.0, error=str(exc)))
        write_json(complete=False)  # partial results survive an interrupted run
    load_end = os.getloadavg()
    elapsed = time.perf_counter() - t0
    print(format_table(rows))
    for row in rows:
        if row["name"].startswith("cycle") and isinstance(row.get("detail"), dict):
            print(f"{row['name']}: " + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.1f} s"
                                               for k, v in row["detail"].items()))
    failed = [r["name"] for r in rows if r["status"] == "FAIL"]
    print("load average at end (1/5/15 min): " + " / ".join(f"{x:.2f}" for x in load_end))
    print(f"total {elapsed:.0f} s; {len(rows) - len(failed)} PASS, {len(failed)} FAIL"
          + (f": {', '.join(failed)}" if failed else ""))
    write_json(complete=True)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
