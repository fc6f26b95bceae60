"""Make the pretrained model that ships with the ``ptycho`` package (issue 17, item 4).

    python benchmarks/make_pretrained.py --work-dir /tmp/pretrained-work

Steps, all seeded:

1. ``ptycho.pretrain.pretrain`` (the code of ``ptycho pretrain``): simulate the corpus of
   :data:`CORPUS` into ``<work-dir>/pretrain/corpus`` and train :data:`MODEL` on it with the
   PyTorch backend on the CPU (``<work-dir>/pretrain/model`` is the bundle);
2. evaluate the network alone (one forward pass per group, stitched, no refinement) on the
   held-out objects of :data:`HELD_OUT`: simulated with other seeds and, for the pictures, with
   scikit-image pictures the corpus never uses (``camera`` / ``coins``, the object of ``ptycho demo``);
3. write ``packages/ptycho/src/ptycho/pretrained/<name>/``: ``weights.npz`` (the backend-neutral
   canonical weights of ``ptycho_core.backends.export_weights``, float32, compressed),
   ``config.json`` (model and training configs), ``sources.json`` (what this script measured: the
   pretrain summary, the held-out evaluation, the load averages) and ``card.json`` (the model card:
   recipe, command, seed, epochs and steps, wall time, hardware, held-out metrics), made from
   ``sources.json`` alone by :func:`make_card` (a test remakes it and compares).

``--reuse`` skips step 1 when ``<work-dir>/pretrain/summary.json`` exists (re-evaluate or re-export
an already trained model); the card then keeps the command that trained it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import attrs
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "packages" / "ptycho" / "src" / "ptycho" / "pretrained"
NAME = "sim-n64-g2"

#: Model of the shipped network: N = 64 (the default simulated probe), gridsize 2 (the demo's CPU preset), small
#: enough (n_filters_scale 1: 566,184 parameters, 2.3 MB of float32) for the repository.
MODEL = {"N": 64, "gridsize": 2, "n_filters_scale": 1}
#: Training of the shipped network (PyTorch, CPU).
TRAINING = {"backend": "pytorch", "accelerator": "cpu", "batch_size": 8, "nepochs": 3, "learning_rate": 1e-3,
            "max_train_seconds": None, "realspace_weight": 0.0, "seed": 7, "progress": False}
#: The corpus recipe. The pictures exclude camera and coins (the object of ``ptycho demo`` and of the first held-out
#: object), so no corpus object is, or is cut from, an evaluation object.
CORPUS = {
    "n_objects": 32, "n_positions": 256, "object_kinds": ["images", "lines", "grf", "mixed"],
    "object_weights": [2.0, 1.0, 1.0, 1.0],
    "images": ["moon", "cell", "brick", "grass", "gravel", "text", "page", "clock", "astronaut", "chelsea",
               "coffee", "shepp_logan_phantom"],
    "photon_levels": [1e9], "scan": "raster", "jitter": 0.0, "seed": 17,
}
#: Held-out objects (ptycho_data.simulate.SimulationConfig overrides): the demo's own scan, and unseen draws of the
#: other kinds with seeds the corpus does not use. 256 positions, 1e9 photons, the default probe.
HELD_OUT = {
    "demo (camera / coins)": {"object_kind": "images", "amplitude_image": "camera", "phase_image": "coins",
                              "seed": 42},
    "lines": {"object_kind": "lines", "seed": 1001},
    "grf": {"object_kind": "grf", "seed": 1002},
}
SOURCES = "sources.json"
"""File of the model directory with the measurements the card is made from (summary, evaluation, loads)."""
METRICS = ("amp_ssim", "phase_ssim", "amp_psnr", "phase_psnr", "amp_frc50", "phase_frc50")

log = logging.getLogger("make_pretrained")


def train(work: Path, nepochs: int, command: list[str], init_from: str | None = None, training: dict | None = None,
          model: dict | None = None, **corpus_overrides: int) -> dict:
    """Pretrain :data:`MODEL` (updated with ``model``) with :data:`TRAINING` (updated with ``training``; None values
    keep the defaults) on the :data:`CORPUS` recipe (with ``corpus_overrides``)."""
    from ptycho.pretrain import pretrain
    from ptycho_core.config import ModelConfig, TrainingConfig
    from ptycho_core.corpus import CorpusConfig

    given = {k: v for k, v in (training or {}).items() if v is not None}
    cfg = TrainingConfig(model=ModelConfig(**{**MODEL, **{k: v for k, v in (model or {}).items() if v is not None}}),
                         output_dir=work / "pretrain",
                         **{**TRAINING, "nepochs": nepochs, **given})
    corpus = CorpusConfig(**{**CORPUS, **{k: v for k, v in corpus_overrides.items() if v is not None}})
    return pretrain(cfg, corpus, overwrite=True, command=command, init_from=init_from)


def evaluate(model_ref: str, root: Path, backend: str = "pytorch", step: float | None = None) -> dict:
    """Network-only metrics of the shipped model (as written, loaded by name) on every :data:`HELD_OUT` object,
    scanned with ``step`` pixels (None: the simulation's default, N // 8)."""
    from ptycho import pretrained, workflow
    from ptycho_core.config import InferenceConfig
    from ptycho_data.metrics import evaluate_reconstruction
    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    model = pretrained.load(model_ref, backend=backend, root=root)
    rows: dict[str, dict] = {}
    for label, overrides in HELD_OUT.items():
        sim = SimulationConfig(**overrides, **({"step": step} if step is not None else {}))
        dataset = simulate_dataset(sim, progress=False)
        icfg = InferenceConfig(model=model.model_config, backend=backend, accelerator="cpu", refine_iterations=0,
                               progress=False)
        t0 = time.perf_counter()
        rec = workflow.infer(icfg, model=model, dataset=dataset, write=False)
        seconds = time.perf_counter() - t0
        metrics = evaluate_reconstruction(rec.object, dataset.object, dataset.positions)
        rows[label] = {"simulation": attrs.asdict(sim), "infer_s": seconds,
                       **{part: {k: float(v) for k, v in metrics[part].items()} for part in ("amplitude", "phase")}}
        log.info("%s: amplitude SSIM %.3f, phase SSIM %.3f (%.1f s)", label, rows[label]["amplitude"]["ssim"],
                 rows[label]["phase"]["ssim"], seconds)
    mean = {part: {k: float(np.mean([r[part][k] for r in rows.values()])) for k in ("ssim", "psnr", "frc50")}
            for part in ("amplitude", "phase")}
    return {"backend": backend, "stitch_weight": InferenceConfig().stitch_weight, "objects": rows, "mean": mean}


def _parameters(weights: dict[str, np.ndarray]) -> int:
    return int(sum(v.size for k, v in weights.items() if k.endswith((".kernel", ".bias"))))


def _step_of(simulation: dict) -> dict:
    """``{"step": ...}`` when a held-out scan was simulated with a step of its own (``--eval-step``), else ``{}``."""
    return {"step": simulation["step"]} if simulation.get("step") is not None else {}


def make_card(name: str, sources: dict, weights_path: Path) -> dict:
    """The model card: every figure comes from ``sources`` (:data:`SOURCES` of the model directory: the pretrain
    summary, the evaluation and the load averages, as measured by this script) or from the weights file."""
    from ptycho import pretrained
    from ptycho_core import bundle

    summary, evaluation, loads = sources["summary"], sources["evaluation"], sources["loads"]
    prov = summary["provenance"]
    training = prov["config"]["training"]
    recipe = summary["corpus"]["recipe"]
    fit = summary["training"]
    epochs = int(summary["epochs"])
    n_groups = int(summary["corpus"]["n_patterns"])  # one group per pattern (n_groups not set)
    steps = epochs * -(-n_groups // int(training["batch_size"]))
    mean = evaluation["mean"]
    met = mean["amplitude"]["ssim"] >= 0.85 and mean["phase"]["ssim"] >= 0.85
    realspace = float(training.get("realspace_weight") or 0.0)  # supervised term (the corpus is simulated)
    return {
        "format": 1,
        "name": name,
        "reference": f"{pretrained.PREFIX}{name}",
        "description": (f"PtychoPINN network for N={training['model']['N']} diffraction patterns and the default "
                        "simulated probe of ptycho-data, pretrained "
                        + ("self-supervised" if not realspace else
                           f"with the Poisson loss plus the real-space term against the corpus's ground truth "
                           f"(realspace_weight {realspace:g})")
                        + " on a simulated corpus on "
                        f"{'a CPU' if prov.get('device', 'cpu') == 'cpu' else prov['device']} "
                        "(small: a starting point to fine-tune and refine, not a finished reconstruction)"),
        "model": {**{k: training["model"][k] for k in ("N", "gridsize", "n_filters_scale")},
                  **({"object_window": training["model"]["object_window"]}
                     if training["model"].get("object_window", 0.5) != 0.5 else {}),
                  **({"pad_object": False} if not training["model"].get("pad_object", True) else {}),
                  "parameters": _parameters(pretrained.weights(name, root=weights_path.parent.parent))},
        "probe": "ptycho-data's default simulated probe (disk pupil of radius 3N/16, defocus 6 rad; "
                 "ptycho_data.simulate.SimulationConfig defaults)",
        "corpus": {"recipe": recipe, "n_objects": summary["corpus"]["n_objects"],
                   "n_patterns": summary["corpus"]["n_patterns"],
                   "excluded": "the pictures camera and coins (the held-out / `ptycho demo` object) are not in the "
                               "corpus; lines and grf held-out objects use seeds of their own"},
        "training": {
            "command": " ".join(prov["command"]),
            "backend": summary["backend"], "accelerator": training["accelerator"], "device": prov.get("device"),
            "seed": training["seed"], "epochs": epochs, "steps": steps, "batch_size": training["batch_size"],
            "learning_rate": training["learning_rate"], "deviance": fit.get("deviance"), "misfit": fit.get("misfit"),
            "final_learning_rate": fit.get("lr"),
            "corpus_s": summary["timings"]["corpus_s"], "train_s": summary["timings"].get("train_s"),
            "wall_s": prov["seconds"], "started": prov["started"], "finished": prov["finished"],
            "hardware": {"description": (f"CPU only, {loads['cpus']} cores shared with other users' jobs, no GPU, "
                                         if prov.get("device", "cpu") == "cpu" else
                                         f"{prov['device']}, {loads['cpus']} CPU cores, ")
                                        + f"{loads.get('threads') or 'default'} framework thread(s) "
                                        f"({prov['host']['platform']})",
                         "cpus": loads["cpus"], "threads": loads.get("threads"), "platform": prov["host"]["platform"],
                         "load_average_start": loads["start"], "load_average_end": loads["end"]},
            "versions": prov.get("versions"),
            **({"realspace_weight": realspace} if realspace else {}),
            **({"init_from": summary["init_from"], "init_from_record": prov["inputs"].get("init_from")}
               if summary.get("init_from") else {}),
        },
        "evaluation": {
            "what": "network only (one forward pass per group, stitched"
                    + (f" with {evaluation['stitch_weight']} weights" if evaluation.get("stitch_weight") else "")
                    + "; no fine-tuning, no refinement), 256 positions at 1e9 photons per pattern"
                    + "".join(f", scan step {v:g} px" for v in sorted(
                        {r["simulation"].get("step") for r in evaluation["objects"].values()} - {None}))
                    + ", metrics of ptycho_data.metrics.evaluate_reconstruction",
            "backend": evaluation["backend"],
            **({"stitch_weight": evaluation["stitch_weight"]} if evaluation.get("stitch_weight") else {}),
            **({"evaluated_by": evaluation["command"]} if evaluation.get("command") else {}),
            "objects": {label: {"amplitude": row["amplitude"], "phase": row["phase"], "infer_s": row["infer_s"],
                                "simulation": {k: row["simulation"][k] for k in HELD_OUT[label]}
                                | _step_of(row["simulation"])}
                        for label, row in evaluation["objects"].items()},
            "mean": mean,
            "target": ("issue 17's target (network only, amplitude and phase SSIM >= 0.85 on unseen objects): "
                       + ("met" if met else f"NOT met (mean {mean['amplitude']['ssim']:.3f} / "
                                            f"{mean['phase']['ssim']:.3f})")),
            "source": f"{SOURCES} (key evaluation), measured by benchmarks/make_pretrained.py",
        },
        "made_by": sources["made_by"],
        "weights": {"file": pretrained.WEIGHTS, "bytes": weights_path.stat().st_size,
                    "sha256": bundle.sha256_file(weights_path),
                    "layout": "canonical (docs/conventions.md s6), float32"},
    }


def reevaluate(name: str, root: Path, command: list[str]) -> int:
    """Evaluate the model written as ``root/name`` again and rewrite its sources and card (``--reevaluate``)."""
    from ptycho import pretrained
    from ptycho_core import atomic

    dest = root / name
    if not (dest / SOURCES).is_file():
        raise SystemExit(f"{dest / SOURCES}: no such file; --reevaluate needs a model written by this script")
    sources = json.loads((dest / SOURCES).read_text())
    steps = {row["simulation"].get("step") for row in sources["evaluation"]["objects"].values()}
    if len(steps) != 1:
        raise SystemExit(f"{dest / SOURCES}: held-out scans of several steps {sorted(map(str, steps))}; "
                         f"expected one")
    evaluation = evaluate(f"{pretrained.PREFIX}{name}", root, step=steps.pop())
    sources["evaluation"] = {**evaluation, "command": " ".join(command)}
    atomic.write_text(dest / SOURCES, json.dumps(sources, indent=2) + "\n")
    card = make_card(name, sources, dest / pretrained.WEIGHTS)
    atomic.write_text(dest / pretrained.CARD, json.dumps(card, indent=2) + "\n")
    log.info("re-evaluated %s: mean amplitude / phase SSIM %.3f / %.3f", dest, evaluation["mean"]["amplitude"]["ssim"],
             evaluation["mean"]["phase"]["ssim"])
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work-dir", type=Path, help="corpus, checkpoints, bundle and evaluation go here (required "
                   "except with --reevaluate)")
    p.add_argument("--name", default=NAME, help=f"name of the shipped model (default {NAME})")
    p.add_argument("--nepochs", type=int, default=TRAINING["nepochs"])
    p.add_argument("--max-train-seconds", type=float,
                   help="stop training after the first epoch past this many seconds (TrainingConfig."
                        "max_train_seconds; default: no budget, all --nepochs); the card records the epochs run")
    p.add_argument("--init-from", help="continue from this bundle or pretrained:NAME (e.g. the shipped model) "
                   "instead of new weights; the card records it")
    p.add_argument("--learning-rate", type=float, help=f"learning rate (default {TRAINING['learning_rate']:g})")
    p.add_argument("--realspace-weight", type=float,
                   help="weight of the real-space term against the corpus's ground-truth patches (TrainingConfig."
                        "realspace_weight; default 0: self-supervised); the card records it")
    p.add_argument("--batch-size", type=int, help=f"batch size (default {TRAINING['batch_size']})")
    p.add_argument("--accelerator", choices=("cpu", "gpu", "auto"),
                   help=f"where to train (default {TRAINING['accelerator']}; the card records the device)")
    p.add_argument("--n-filters-scale", type=int,
                   help=f"network width (default {MODEL['n_filters_scale']}; 2 has 4x the parameters, about 9 MB "
                   "of float32, near the repository's 10 MB limit for a shipped model)")
    p.add_argument("--object-window", type=float,
                   help="ModelConfig.object_window: side of the merge window as a fraction of N (default 0.5; 1.0 "
                        "models whole patches, so the default probe's tails too: physics.md s5); the card records it")
    p.add_argument("--no-pad-object", dest="pad_object", action="store_false", default=None,
                   help="ModelConfig.pad_object = false: one decoder head predicts the whole N x N patch (physics.md "
                        "s4) instead of the N/2 centre plus, with --object-window > 0.5, the probe_big outer branch; "
                        "the card records it")
    p.add_argument("--n-objects", type=int, help=f"corpus objects (default {CORPUS['n_objects']}; fewer for a quick "
                   "check of the script)")
    p.add_argument("--n-positions", type=int, help=f"positions per object (default {CORPUS['n_positions']})")
    p.add_argument("--step", type=float,
                   help="mean scan step of the corpus in pixels (CorpusConfig.step; default N // 8); the card's "
                        "recipe records it")
    p.add_argument("--eval-step", type=float,
                   help="scan step of the held-out scans in pixels (default: --step if given, else N // 8); the "
                        "card records it")
    p.add_argument("--dest", type=Path, default=DEST, help="where the pretrained/<name> directory is written")
    p.add_argument("--threads", type=int, help="CPU threads of the framework (OMP_NUM_THREADS; default: its own "
                   "choice). On a CPU shared with other jobs 1 thread wastes less time waiting for the other")
    p.add_argument("--reuse", action="store_true", help="keep an already trained <work-dir>/pretrain")
    p.add_argument("--no-export", action="store_true", help="train and evaluate only")
    p.add_argument("--reevaluate", action="store_true",
                   help="evaluate the model already written as <dest>/<name> again, with today's inference (e.g. "
                        "after a change of the stitching), on held-out scans of the step it was evaluated at, and "
                        "rewrite its sources.json and card.json (the card records this command); the weights and "
                        "the record of their training stay as they are; no --work-dir needed")
    args = p.parse_args(argv)
    if args.threads:  # before the framework is imported
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command = ["python", "benchmarks/make_pretrained.py", *(sys.argv[1:] if argv is None else argv)]
    if args.reevaluate:
        return reevaluate(args.name, args.dest, command)
    if args.work_dir is None:
        p.error("--work-dir is required (except with --reevaluate)")
    work = args.work_dir
    summary_path = work / "pretrain" / "summary.json"
    t0 = time.perf_counter()
    loads_path = work / "loads.json"
    if args.reuse and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        loads = json.loads(loads_path.read_text())
        log.info("reusing %s", summary_path)
    else:
        start = list(os.getloadavg())
        summary = train(work, args.nepochs, command, init_from=args.init_from, n_objects=args.n_objects,
                        n_positions=args.n_positions, step=args.step,
                        training={"learning_rate": args.learning_rate, "batch_size": args.batch_size,
                                  "realspace_weight": args.realspace_weight,
                                  "accelerator": args.accelerator, "max_train_seconds": args.max_train_seconds or None},
                        model={"n_filters_scale": args.n_filters_scale, "object_window": args.object_window,
                               "pad_object": args.pad_object})
        loads = {"cpus": os.cpu_count(), "threads": args.threads, "start": start, "end": list(os.getloadavg()),
                 "machine": platform.machine()}
        loads_path.write_text(json.dumps(loads))
        log.info("pretrain done in %.1f s", time.perf_counter() - t0)
    if args.no_export:
        return 0
    from ptycho import pretrained
    from ptycho_core import bundle

    model = bundle.load_bundle(summary["paths"]["bundle"])
    tc = attrs.evolve(model.training_config, train_data_file=None, test_data_file=None,
                      output_dir=Path("ptycho_output"))
    dest = pretrained.write(args.name, model, tc, {"format": 1, "name": args.name, "pending": "evaluation"},
                            root=args.dest)
    evaluation = evaluate(f"{pretrained.PREFIX}{args.name}", args.dest,
                          step=args.eval_step if args.eval_step is not None else args.step)
    summary = {k: v for k, v in summary.items() if k != "paths"}  # local paths of the work directory
    sources = {"summary": summary, "evaluation": evaluation, "loads": loads, "made_by": " ".join(command)}
    from ptycho_core import atomic

    atomic.write_text(dest / SOURCES, json.dumps(sources, indent=2) + "\n")
    card = make_card(args.name, sources, dest / pretrained.WEIGHTS)
    atomic.write_text(dest / pretrained.CARD, json.dumps(card, indent=2) + "\n")
    log.info("wrote %s (%.1f MB of weights)", dest, (dest / pretrained.WEIGHTS).stat().st_size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
