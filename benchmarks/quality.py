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

    python benchmarks/quality.py --amortised             # shipped model vs fine-tuning vs scratch vs refinement
    python benchmarks/ptychi_env.py                      # once: pty-chi's own venv, .venv-ptychi/ (about 6 GB)
    python benchmarks/quality.py --amortised --ptychi-python .venv-ptychi/bin/python   # ... and vs pty-chi

    python benchmarks/quality.py                         # defaults: both backends, default epochs
    python benchmarks/quality.py --backend pytorch --nepochs 10
    python benchmarks/quality.py --json quality.json --keep-outputs out/

By default it trains with the CPU preset of ``ptycho demo`` (``ptycho.cli_workflow.CPU_PRESET``:
gridsize 2, n_filters_scale 1, batch 4, 20 refinement passes) and the default TrainingConfig
epochs (40; the demo trains 30); ``--no-preset`` uses the plain config defaults (no refinement).

``--amortised`` (issue 17 item 6; PyTorch, and TensorFlow too with ``--amortised-backend pytorch tensorflow``)
compares, on the held-out objects of
``benchmarks/make_pretrained.py`` (``HELD_OUT``: camera / coins, lines, grf; none of them in the
pretraining corpus), one subprocess per object: the shipped model ``pretrained:sim-n64-g2`` network
only; the same fine-tuned for ``--finetune-epochs`` epochs (``workflow.train(init_from=...)``);
each of those plus 5 and 20 refinement passes (``--amortised-passes``); training from scratch for
the same number of epochs (same architecture and batch, so the same wall time per epoch; the
measured train time is in the row); refinement from a flat start (5 and 20 passes); and pty-chi ePIE and LSQML
(``--ptychi-epochs`` epochs, default 100, fixed probe, flat start, same data). pty-chi needs its own
venv (it imports torchvision, which cannot import beside the torch pin): make it with
``python benchmarks/ptychi_env.py`` and pass ``--ptychi-python .venv-ptychi/bin/python`` (or set
``PTYCHO_PTYCHI_PYTHON``); the worker writes the scan to an NPZ (:func:`write_ptychi_input`) and runs
``benchmarks/ptychi_runner.py`` with that interpreter, once per method. Without it the pty-chi rows
say they are skipped and how to enable them (:data:`PTYCHI_NOT_INSTALLED`). It also times the
shipped model's predict + stitch on a ``--big-scan``-position scan (issue 17's target: 784
patterns in under 5 s). With several ``--amortised-backend``, the model rows (shipped, fine-tuned, scratch, each
refined) and the big-scan timing are run once per backend, each backend in its own subprocess; the rows that use no
network (flat start, pty-chi) once.
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

import numpy as np

BACKENDS = ("pytorch", "tensorflow")
#: The shipped model of ``--amortised``.
SHIPPED = "pretrained:sim-n64-g2"
#: Refinement passes of the ``--amortised`` rows (``--amortised-passes``).
AMORTISED_PASSES = (5, 20)
#: The pty-chi rows of ``--amortised``: row label and ``ptychi_runner.py --method``.
PTYCHI_METHODS = (("ePIE", "epie"), ("LSQML", "lsqml"))
#: Runs in pty-chi's own venv (benchmarks/ptychi_env.py), never in this process.
PTYCHI_RUNNER = Path(__file__).resolve().parent / "ptychi_runner.py"
#: Why the pty-chi rows are skipped when no ``--ptychi-python`` is given.
PTYCHI_NOT_INSTALLED = ("pty-chi is not installed here; it needs its own venv (it imports torchvision, which cannot "
                        "import beside the torch 2.13.0 CPU pin): make it with `python benchmarks/ptychi_env.py` and "
                        "pass --ptychi-python .venv-ptychi/bin/python (or set PTYCHO_PTYCHI_PYTHON)")


def write_ptychi_input(ds, path: Path) -> Path:
    """What ``ptychi_runner.py`` needs of a scan, as DATA-001 keys: measured amplitudes (zero frequency at the
    centre), scan centres in object pixels, the probe, and the object shape (not the object itself)."""
    np.savez(path, diffraction=np.asarray(ds.diffraction, np.float32), xcoords=np.asarray(ds.xcoords, np.float64),
             ycoords=np.asarray(ds.ycoords, np.float64), probeGuess=np.asarray(ds.probe, np.complex64),
             object_shape=np.asarray(ds.object.shape, np.int64))
    return path


def run_ptychi(python: str, scan: Path, method: str, epochs: int, seed: int, threads: int | None,
               out: Path) -> tuple[np.ndarray, dict]:
    """Run ``ptychi_runner.py`` with pty-chi's interpreter; returns the object on our grid and its report."""
    result = out / f"ptychi-{method}.npz"
    cmd = [python, str(PTYCHI_RUNNER), str(scan), str(result), "--method", method, "--epochs", str(epochs),
           "--seed", str(seed)] + (["--threads", str(threads)] if threads else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PTYCHI_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"pty-chi {method} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    with np.load(result, allow_pickle=False) as z:
        return z["object"], json.loads(lines[-1][len("PTYCHI_RESULT "):])


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


def held_out() -> dict[str, dict]:
    """The held-out objects of ``benchmarks/make_pretrained.py`` (shared, not copied): label -> simulation overrides."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from make_pretrained import HELD_OUT

    return HELD_OUT


def amortised_worker(args: argparse.Namespace) -> None:
    """``--amortised`` rows of one held-out object (PyTorch): print one JSON line per row."""
    import attrs

    from ptycho import pretrained, workflow
    from ptycho_core.config import InferenceConfig, TrainingConfig
    from ptycho_data.metrics import evaluate_reconstruction
    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    label = args.amortised_object
    backend = args.object_backend
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    sim = SimulationConfig(**{**held_out()[label], "n_positions": args.n_positions, "nphotons": args.nphotons})
    ds = simulate_dataset(sim, progress=False)
    nan = float("nan")

    def emit(output: str, rec, passes: int, train_s: float, epochs: int, infer_s: float, fit: dict | None = None):
        m = evaluate_reconstruction(rec.object, ds.object, ds.positions)
        refine_s = rec.metadata.timings.get("refine_s", 0.0) if passes else 0.0
        row = {"object": label, "backend": backend, "output": output, "refine": passes, "epochs": epochs,
               "n_positions": sim.n_positions, "train_s": train_s, "infer_stitch_s": infer_s, "refine_s": refine_s,
               "total_s": (0.0 if train_s != train_s else train_s) + infer_s + refine_s,
               "deviance": (fit or {}).get("deviance", nan), "misfit": (fit or {}).get("misfit", nan), **_scores(m)}
        print("RESULT " + json.dumps(row), flush=True)

    def network_and_refined(output: str, model, icfg: InferenceConfig, train_s: float, epochs: int, fit=None):
        t0 = time.perf_counter()
        rec = workflow.infer(icfg, model=model, dataset=ds, write=False)
        infer_s = time.perf_counter() - t0
        emit(output, rec, 0, train_s, epochs, infer_s, fit)
        for passes in args.amortised_passes:
            emit(output, workflow.refine(rec, ds, attrs.evolve(icfg, refine_iterations=passes)), passes, train_s,
                 epochs, infer_s, fit)

    # 1. the shipped model, network only (load + predict + stitch), then + refinement
    t0 = time.perf_counter()
    shipped = pretrained.load(SHIPPED, backend=backend)
    load_s = time.perf_counter() - t0
    icfg = InferenceConfig(model=shipped.model_config, backend=backend, accelerator="cpu", refine_iterations=0,
                           seed=args.seed, progress=False)
    print(f"LOAD {json.dumps({'object': label, 'load_s': load_s})}", flush=True)
    network_and_refined("shipped model", shipped, icfg, nan, 0)

    # 2. fine-tuned from the shipped model, 3. from scratch: same model, batch, epochs
    _, shipped_training = pretrained.configs(SHIPPED)
    cfg = TrainingConfig(model=shipped.model_config, backend=backend, accelerator="cpu", output_dir=out,
                         seed=args.seed, nepochs=args.finetune_epochs, batch_size=args.batch_size,
                         neighbor_count=shipped_training.neighbor_count, early_stop_patience=0, progress=False)
    for output, init in (("fine-tuned", Path(SHIPPED)), ("from scratch", None)):
        result = workflow.train(attrs.evolve(cfg, output_dir=out / output.replace(" ", "-")), dataset=ds,
                                overwrite=True, init_from=init)
        fit = workflow.training_summary({k: [float(v) for v in vals] for k, vals in result.history.items()})
        network_and_refined(output, result.model, icfg, result.timings["train_s"], result.epochs, fit)

    if args.no_shared_rows:  # the rows below use no network: the first backend's worker runs them
        return
    # 4. refinement from a flat start (no network)
    from ptycho.refine import refine_object

    for passes in args.amortised_passes:
        res = refine_object(np.ones(ds.object.shape, np.complex64), (0, 0), ds.diffraction, ds.positions, ds.probe,
                            passes, seed=args.seed, progress=False)
        m = evaluate_reconstruction(res.object, ds.object, ds.positions)
        print("RESULT " + json.dumps({
            "object": label, "backend": "none", "output": "refine only (flat start)", "refine": passes, "epochs": 0,
            "n_positions": sim.n_positions, "train_s": nan, "infer_stitch_s": 0.0, "refine_s": res.seconds,
            "total_s": res.seconds, "deviance": nan, "misfit": nan, **_scores(m)}), flush=True)

    # 5. pty-chi ePIE and LSQML in their own venv (refine = its epochs; wall s = its reconstruction alone)
    if args.ptychi_python:
        scan = write_ptychi_input(ds, out / "ptychi-input.npz")
        for name, method in PTYCHI_METHODS:
            obj, info = run_ptychi(args.ptychi_python, scan, method, args.ptychi_epochs, args.seed, args.threads, out)
            m = evaluate_reconstruction(obj, ds.object, ds.positions)
            print("RESULT " + json.dumps({
                "object": label, "backend": "pty-chi", "output": f"pty-chi {name}", "refine": info["epochs"],
                "epochs": 0, "n_positions": sim.n_positions, "train_s": nan, "infer_stitch_s": 0.0,
                "refine_s": info["reconstruct_s"], "total_s": info["reconstruct_s"], "deviance": nan, "misfit": nan,
                "ptychi": info, **_scores(m)}), flush=True)


def big_scan_worker(args: argparse.Namespace) -> None:
    """Time the shipped model's predict + stitch (network only) on a scan of ``--n-positions`` positions."""
    from ptycho import pretrained, workflow
    from ptycho_core.config import InferenceConfig
    from ptycho_data.metrics import evaluate_reconstruction
    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    label = next(iter(held_out()))
    sim = SimulationConfig(**{**held_out()[label], "n_positions": args.n_positions, "nphotons": args.nphotons})
    ds = simulate_dataset(sim, progress=False)
    t0 = time.perf_counter()
    model = pretrained.load(SHIPPED, backend=args.object_backend)
    load_s = time.perf_counter() - t0
    icfg = InferenceConfig(model=model.model_config, backend=args.object_backend, accelerator="cpu", seed=args.seed,
                           progress=False)
    runs = []
    for _ in range(2):  # the first includes the framework's warm-up
        t0 = time.perf_counter()
        rec = workflow.infer(icfg, model=model, dataset=ds, write=False)
        runs.append({"wall_s": time.perf_counter() - t0, **rec.metadata.timings})
    m = evaluate_reconstruction(rec.object, ds.object, ds.positions)
    print("BIGSCAN " + json.dumps({"object": label, "backend": args.object_backend, "n_positions": sim.n_positions,
                                   "load_s": load_s, "runs": runs, **_scores(m)}), flush=True)


def amortised_table(rows: list[dict]) -> str:
    head = ("object", "backend", "row", "refine passes", "epochs", "train s", "infer+stitch s", "refine s", "wall s",
            "amp SSIM", "amp PSNR", "amp FRC50", "phase SSIM", "phase PSNR", "phase FRC50")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['object']} | | {r['output']} | | | | | | | skipped: {r['skipped']} | | | | | |")
            continue
        train = "" if r["train_s"] != r["train_s"] else f"{r['train_s']:.1f}"
        cells = (r["object"], r["backend"], r["output"], str(r["refine"]), str(r["epochs"]), train,
                 f"{r['infer_stitch_s']:.2f}",
                 f"{r['refine_s']:.1f}", f"{r['total_s']:.1f}",
                 f"{r['amp_ssim']:.3f}", f"{r['amp_psnr']:.1f}", f"{r['amp_frc50']:.2f}",
                 f"{r['phase_ssim']:.3f}", f"{r['phase_psnr']:.1f}", f"{r['phase_frc50']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def amortised_main(args: argparse.Namespace) -> int:
    """Run ``--amortised``: one subprocess per held-out object, then the big-scan timing; print the table."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t_start = time.perf_counter()
    rows: list[dict] = []
    loads: list[dict] = []  # the shipped model's load time (first import of the framework included), per object
    if args.ptychi_python:
        if not Path(args.ptychi_python).is_file():
            print(f"--ptychi-python {args.ptychi_python}: no such file; {PTYCHI_NOT_INSTALLED}", file=sys.stderr)
            return 2
        args.ptychi_python = str(Path(args.ptychi_python).absolute())  # not resolve(): the venv's python is a link
    labels = list(held_out())[: args.objects] if args.objects else list(held_out())
    big: list[dict] = []
    backends = list(dict.fromkeys(args.amortised_backend))
    with tempfile.TemporaryDirectory(prefix="ptycho-amortised-") as tmp:
        base = args.keep_outputs or Path(tmp)
        for i, (label, backend) in enumerate((lb, b) for lb in labels for b in backends):
            cmd = [sys.executable, __file__, "--amortised-object", label, "--object-backend", backend,
                   "--output-dir", str(base / f"run{i}"), "--n-positions", str(args.n_positions),
                   "--nphotons", str(args.nphotons), "--seed", str(args.seed),
                   "--finetune-epochs", str(args.finetune_epochs), "--batch-size", str(args.batch_size or 4)]
            cmd += ["--amortised-passes", *map(str, args.amortised_passes)]
            shared = backend == backends[0]  # flat start and pty-chi use no network: once per object
            if not shared:
                cmd.append("--no-shared-rows")
            if args.ptychi_python and shared:
                cmd += ["--ptychi-python", args.ptychi_python, "--ptychi-epochs", str(args.ptychi_epochs)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            print(f"[{label}, {backend}] shipped model, fine-tuning, scratch, refinement"
                  f"{', pty-chi' if args.ptychi_python and shared else ''} ...", flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            new = [json.loads(ln[len("RESULT "):]) for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not new:
                print(f"[{label}, {backend}] failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            print(f"[{label}, {backend}] done in {time.perf_counter() - t0:.0f} s", flush=True)
            rows += new
            loads += [json.loads(ln[len("LOAD "):]) for ln in proc.stdout.splitlines() if ln.startswith("LOAD ")]
            if not args.ptychi_python and shared:
                rows += [{"object": label, "output": f"pty-chi {name}", "skipped": PTYCHI_NOT_INSTALLED}
                         for name, _ in PTYCHI_METHODS]
            if args.json:
                args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")  # partial results survive
        for backend in backends if args.big_scan else ():
            cmd = [sys.executable, __file__, "--big-scan-worker", "--object-backend", backend, "--n-positions",
                   str(args.big_scan), "--nphotons", str(args.nphotons), "--seed", str(args.seed)]
            print(f"[big scan, {backend}] shipped model predict + stitch on {args.big_scan} positions ...", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BIGSCAN ")]
            if proc.returncode != 0 or not lines:
                print(f"[big scan, {backend}] failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            big.append(json.loads(lines[0][len("BIGSCAN "):]))
    wall = time.perf_counter() - t_start
    print(f"\nstarted {started}, {wall:.0f} s in all; machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
          f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}; backends {', '.join(backends)}; {args.n_positions} "
          "positions, "
          f"{args.nphotons:g} photons; fine-tuning and scratch {args.finetune_epochs} epochs, batch "
          f"{args.batch_size or 4}; shipped model {SHIPPED}")
    runs = [r["ptychi"] for r in rows if "ptychi" in r]  # the runner's reports
    if runs:
        epie = next(run for run in runs if run["method"] == "epie")
        setup = ", ".join(f"{run['total_s'] - run['reconstruct_s']:.1f}" for run in runs)
        print(f"pty-chi rows: ptychi {epie['ptychi']}, torch {epie['torch']} ({args.ptychi_python}), "
              f"{epie['threads']} torch thread(s); {epie['epochs']} epochs, batch {epie['batch_size']}, ePIE alpha "
              f"{epie['epie_alpha']}; flat start, fixed probe, no position correction; refine passes = its epochs, "
              f"refine s = wall s = its reconstruction alone (imports and setup not counted: {setup} s)")
    else:
        print(f"pty-chi ePIE / LSQML rows skipped: {PTYCHI_NOT_INSTALLED}")
    print(f"infer+stitch s: predict + stitch of the {args.n_positions}-position scan (the shipped model's: its "
          "first call in its process); "
          "loading the shipped model took " + ", ".join(f"{x['load_s']:.1f} s" for x in loads)
          + " (not in the rows); wall s = train + infer+stitch + refine")
    print(amortised_table(rows))
    for scan in big:
        warm = scan["runs"][-1]
        print(f"\nshipped model, {scan['backend']}, on a {scan['n_positions']}-position scan ({scan['object']}), "
              "network only: predict + "
              f"stitch {warm['wall_s']:.2f} s warm (predict {warm['infer_s']:.2f} s, stitch {warm['stitch_s']:.2f} s), "
              f"{scan['runs'][0]['wall_s']:.2f} s on the first call, model load {scan['load_s']:.2f} s; amplitude / "
              f"phase SSIM {scan['amp_ssim']:.3f} / {scan['phase_ssim']:.3f} (issue 17 target: under 5 s)")
    if args.json:
        args.json.write_text(json.dumps({"started": started, "wall_s": wall, "load_start": load_start,
                                         "load_end": os.getloadavg(), "threads": env.get("OMP_NUM_THREADS"),
                                         "ptychi_python": args.ptychi_python, "shipped_load": loads, "rows": rows,
                                         "big_scan": big},
                                        indent=2) + "\n")
    return 0


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
    a = p.add_argument_group("--amortised (issue 17: shipped model vs fine-tuning vs scratch vs refinement)")
    a.add_argument("--amortised", action="store_true",
                   help="the amortised comparison on the held-out objects of make_pretrained.py")
    a.add_argument("--amortised-backend", nargs="+", choices=BACKENDS, default=["pytorch"],
                   help="backends of the model rows and the big scan (default: pytorch); the rows without a "
                   "network (flat start, pty-chi) run with the first")
    a.add_argument("--finetune-epochs", type=int, default=4,
                   help="epochs of fine-tuning, and of training from scratch (default 4)")
    a.add_argument("--objects", type=int, help="only the first this many held-out objects (default: all)")
    a.add_argument("--big-scan", type=int, default=784,
                   help="also time the shipped model's predict + stitch on a scan of this many positions "
                   "(default 784; 0 = skip)")
    a.add_argument("--threads", type=int,
                   help="OMP_NUM_THREADS of the subprocesses, and pty-chi's torch threads (default: inherited)")
    a.add_argument("--ptychi-python", default=os.environ.get("PTYCHO_PTYCHI_PYTHON") or None,
                   help="python of pty-chi's own venv (made by `python benchmarks/ptychi_env.py`: "
                   ".venv-ptychi/bin/python) for the pty-chi ePIE / LSQML rows (default: $PTYCHO_PTYCHI_PYTHON; "
                   "unset: those rows are skipped)")
    a.add_argument("--ptychi-epochs", type=int, default=100, help="pty-chi epochs (default 100)")
    a.add_argument("--amortised-passes", type=int, nargs="+", default=list(AMORTISED_PASSES),
                   help="refinement passes of the refined rows (default: %(default)s)")
    p.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    p.add_argument("--amortised-object", help=argparse.SUPPRESS)
    p.add_argument("--object-backend", choices=BACKENDS, default="pytorch", help=argparse.SUPPRESS)
    p.add_argument("--no-shared-rows", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--big-scan-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--output-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.amortised_object:
        amortised_worker(args)
        return 0
    if args.big_scan_worker:
        big_scan_worker(args)
        return 0
    if args.amortised:
        return amortised_main(args)
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
