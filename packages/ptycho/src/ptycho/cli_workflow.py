"""``ptycho train | infer | run | evaluate | convert | demo``.

Flags mirror config field names (``--nepochs``, ``--gridsize``, ``--probe-big/--no-probe-big``,
...); ``--config FILE`` is read first and flags override it. ``--train-data``/``--test-data``
are short for ``--train-data-file``/``--test-data-file``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import attrs

from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.console import add_output_flags
from ptycho_data.cli_read import add_read_flags, read_options_from_args

ALIASES = {"train_data_file": ["--train-data"], "test_data_file": ["--test-data"], "model_path": ["--model"]}

REPEATED = {"train_data_file": (
    "training data: a DATA-001 NPZ, an HDF5 file, a lazy dataset directory, a directory of such datasets or a "
    "glob pattern (quoted); repeat the flag to train on several datasets together (each grouped and normalised "
    "on its own)")}
"""Fields whose flag may be given several times (the values form a list), with their help."""

RESUME_LAST = object()
"""Value of ``--resume`` given without a path: resume from :func:`last_checkpoint`."""

LAST_CHECKPOINT = {"pytorch": "last.ckpt", "tensorflow": "last.json"}
"""File of the latest checkpoint under ``<output_dir>/checkpoints``, per backend id."""


def last_checkpoint(config: TrainingConfig) -> Path:
    """The latest checkpoint of ``config.backend`` under ``config.output_dir / 'checkpoints'``.

    A backend without an entry in :data:`LAST_CHECKPOINT` gets the checkpoints folder itself.

    Raises
    ------
    ptycho_core.errors.ConfigError
        There is no such checkpoint (nothing to resume).
    """
    from ptycho_core.errors import ConfigError

    folder = Path(config.output_dir) / "checkpoints"
    name = LAST_CHECKPOINT.get(config.backend)
    path = folder / name if name else folder
    if not path.exists():
        expected = f"{name} of backend {config.backend!r}" if name else f"a checkpoint of backend {config.backend!r}"
        raise ConfigError(f"--resume: no checkpoint to resume from: {path} does not exist (expected {expected} "
                          "written by an earlier `ptycho train` with the same --output-dir and --backend); "
                          "pass --resume CKPT or train without --resume")
    return path


def _flag_type(field: attrs.Attribute) -> Any:
    default = field.default
    if isinstance(default, attrs.Factory) or default is attrs.NOTHING:
        return str
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    annotation = str(field.type)  # an optional field (default None): its annotation says the type
    for name, kind in (("bool", bool), ("float", float), ("int", int)):
        if name in annotation:
            return kind
    return str


def _add_field_flags(parser: argparse.ArgumentParser, cls: type, title: str, skip: tuple[str, ...] = (),
                     only: tuple[str, ...] | None = None, hidden: bool = False) -> None:
    group = parser.add_argument_group(title)
    for field in attrs.fields(cls):
        if field.name in skip or field.name == "model" or (only is not None and field.name not in only):
            continue
        flags = [f"--{field.name.replace('_', '-')}", *ALIASES.get(field.name, [])]
        doc = argparse.SUPPRESS if hidden else (field.metadata or {}).get("help") or _field_doc(cls, field.name)
        kind = _flag_type(field)
        if field.name in REPEATED:
            group.add_argument(*flags, dest=field.name, action="append", default=argparse.SUPPRESS,
                               metavar=field.name.upper(), help=REPEATED[field.name])
        elif kind is bool:
            group.add_argument(*flags, dest=field.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=doc)
        else:
            group.add_argument(*flags, dest=field.name, type=kind, default=argparse.SUPPRESS,
                               metavar=field.name.upper(), help=doc)


def _field_doc(cls: type, name: str) -> str:
    default = next(f for f in attrs.fields(cls) if f.name == name).default
    if isinstance(default, attrs.Factory):
        return f"{cls.__name__}.{name}"
    return f"{cls.__name__}.{name} (default: {default})"


def _config_from_args(args: argparse.Namespace, cls: type) -> Any:
    from ptycho_core.serialize import from_dict, load_config, to_dict

    base = load_config(args.config, cls) if getattr(args, "config", None) else cls()
    data = to_dict(base)
    given = vars(args)
    model_names = {f.name for f in attrs.fields(ModelConfig)}
    for key, value in given.items():
        if key in model_names:
            data["model"][key] = value
        elif key in {f.name for f in attrs.fields(cls)} and key != "model":
            data[key] = value
    return from_dict(cls, data, source="command line")


INIT_FROM_SOURCE_HELP = (
    "the weights of this model bundle (directory or .zip, e.g. from `ptycho pretrain`) "
    "or shipped model (pretrained:NAME, listed by `ptycho models`) instead of a new model; the model settings "
    "default to the bundle's and must equal them (a differing flag is an error naming the field); a bundle must be "
    "of --backend (convert it with `ptycho convert` otherwise)")
"""What ``--init-from BUNDLE`` takes (shared by ``ptycho train`` and ``ptycho pretrain``)."""
INIT_FROM_HELP = f"fine-tune: start from {INIT_FROM_SOURCE_HELP}; not with --resume"

OVERWRITE_HELP = ("replace the results of an earlier run in --output-dir (model bundle, reconstruction.npz, "
                  "summary.json, checkpoints); without it the command stops before doing any work and names the "
                  "existing path")


def _common(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = (),
            model_flags: bool = True) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML/JSON/YAML config file (flags override it)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    add_output_flags(parser)
    _add_field_flags(parser, cls, f"{cls.__name__} options", skip=skip)
    # infer: the bundle fixes the model; the flags stay (hidden) so that giving one is a clear error
    _add_field_flags(parser, ModelConfig, "ModelConfig options", hidden=not model_flags)


def _refuse_given(args: argparse.Namespace, names: tuple[str, ...], why: str) -> None:
    """A :class:`ConfigError` naming the flags of ``names`` given on the command line, saying ``why``."""
    from ptycho_core.errors import ConfigError

    given = ["/".join([f"--{n.replace('_', '-')}", *ALIASES.get(n, [])]) for n in names if n in vars(args)]
    if given:
        raise ConfigError(f"{', '.join(given)}: {why}")


def _print_paths(rec: Any, trained: str = "trained") -> None:
    """The result of ``run``/``infer``/``demo``: files, then the network's own quality, then what refinement adds.

    ``trained`` starts the line about the training (``ptycho demo``: "fine-tuned from pretrained:NAME:").
    """
    from ptycho.workflow import training_summary

    paths = rec.metadata.paths
    timings = rec.metadata.timings
    print(f"backend: {rec.metadata.backend}")
    for key, value in paths.items():
        print(f"  {key:<15} {value}")
    history = rec.metadata.history
    if history:
        fit = training_summary(history)
        took = f" in {timings['train_s']:.0f} s" if "train_s" in timings else ""
        if "deviance" in fit:
            print(f"network: {trained} {fit['epochs_run']} epochs{took}; fit to the data: Poisson deviance "
                  f"{fit['deviance']:.4g} (0 = perfect), amplitude misfit {fit['misfit']:.3g}")
    refined = rec.metadata.refine
    metrics = rec.metadata.metrics or {}
    network_metrics = metrics.get("network") if refined else metrics
    if "infer_s" in timings:
        print(f"network only: inference + stitching {timings['infer_s'] + timings.get('stitch_s', 0.0):.1f} s")
    if rec.metadata.network_misfit is not None and rec.metadata.flat_misfit:
        print("network only: " + _misfit_text(rec.metadata.network_misfit, rec.metadata.flat_misfit))
    _print_metrics(network_metrics)
    if refined:
        n = refined.iterations
        print(f"after refinement ({n} pass{'' if n == 1 else 'es'}, {refined.seconds:.1f} s): amplitude misfit "
              f"{refined.misfit[0]:.3g} -> {refined.misfit[-1]:.3g}")
        _print_metrics(metrics)


def _misfit_text(network: float, flat: float) -> str:
    """The network's fit to the measured patterns next to a flat object's (physics.md s7)."""
    return (f"amplitude misfit to the measured patterns {network:.3g}, {100 * network / flat:.0f} % of a flat "
            f"object's {flat:.3g} (0 = reproduces every pattern; no ground truth needed)")


def _print_metrics(metrics: dict | None) -> None:
    for part in ("amplitude", "phase") if metrics else ():
        m = metrics.get(part, {})
        if m:
            print(f"  {part:<10} " + "  ".join(f"{k}={v:.4g}" for k, v in m.items() if isinstance(v, float)))


def model_defaults_from_bundle(args: argparse.Namespace) -> list[str]:
    """``--init-from BUNDLE`` without ``--config``: the bundle's ModelConfig for every model flag not given.

    Returns the names of the fields taken from the bundle.
    """
    from ptycho.finetune import model_settings

    init_from = getattr(args, "init_from", None)
    if init_from is None or getattr(args, "config", None) is not None:
        return []
    settings = model_settings(init_from)
    taken = [k for k in settings if not hasattr(args, k)]
    for key in taken:
        setattr(args, key, settings[key])
    return taken


def _cmd_train(args: argparse.Namespace) -> int:
    from ptycho import workflow
    from ptycho_core import bundle, provenance

    _refuse_given(args, ("test_data_file",), "ptycho train does not reconstruct anything, so it would not be used; "
                  "use `ptycho run --test-data` to train and reconstruct, or `ptycho infer` with the trained bundle")
    model_defaults_from_bundle(args)
    cfg = _config_from_args(args, TrainingConfig)
    resume = last_checkpoint(cfg) if args.resume is RESUME_LAST else args.resume
    if resume is not None and args.init_from is not None:
        from ptycho_core.errors import ConfigError

        raise ConfigError("--init-from: cannot be combined with --resume (the checkpoint already holds the "
                          "weights); pass one of them")
    target = Path(cfg.output_dir) / workflow.BUNDLE_NAME
    workflow.check_no_result([target], args.overwrite)
    if args.init_from is not None:
        from ptycho.finetune import check_compatible

        check_compatible(cfg, args.init_from)  # before any work, so a mismatch costs nothing
    record = workflow.start_provenance(cfg, command=_command_line(args))
    if resume is not None:
        record["inputs"]["resume_from"] = provenance.input_record(resume)
    if args.init_from is not None:
        record["inputs"]["init_from"] = workflow.provenance_input(args.init_from)
    result = workflow.train(cfg, resume_from=resume, overwrite=args.overwrite, init_from=args.init_from,
                            read_options=read_options_from_args(args))
    if not workflow.is_primary_process():  # another rank of a DDP job: rank 0 writes the bundle
        return 0
    path = bundle.save_bundle(result.model, target, training_config=result.model.training_config or cfg,
                              overwrite=args.overwrite, provenance=provenance.finish(record))
    fit = workflow.training_summary(result.history)
    text = (f"Poisson deviance {fit['deviance']:.4g} (0 = perfect), amplitude misfit {fit['misfit']:.3g}"
            if "deviance" in fit else f"loss {fit['loss']:.6g}")
    print(f"trained {result.epochs} epochs with {cfg.backend}; final {text}")
    print(f"model bundle: {path}")
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from ptycho import pretrained, workflow
    from ptycho_core import bundle

    _refuse_given(args, tuple(f.name for f in attrs.fields(ModelConfig)),
                  "the model bundle (--model-path) fixes the model settings, so ptycho infer does not take model "
                  "flags; drop them (`ptycho config show` on the bundle's config.json shows its settings)")
    if "backend" not in vars(args) and getattr(args, "model_path", None) and not pretrained.is_reference(
            args.model_path):  # a shipped model loads into any backend: the default one unless --backend
        args.backend = bundle.read_manifest(args.model_path).get("backend")
    cfg = _config_from_args(args, InferenceConfig)
    _print_paths(workflow.infer(cfg, overwrite=args.overwrite, command=_command_line(args),
                                read_options=read_options_from_args(args)))
    return 0


def _command_line(args: argparse.Namespace) -> list[str] | None:
    """The command line ``ptycho.cli.main`` was given (recorded in the provenance of the result)."""
    return getattr(args, "command_line", None)


#: InferenceConfig fields that ``ptycho run`` and ``demo`` take as flags (the rest follow the TrainingConfig).
RUN_INFERENCE_FIELDS = ("stitch_crop", "stitch_weight", "groups_per_position", "flip_x", "flip_y", "transpose",
                        "refine_iterations")

#: InferenceConfig fields that ``ptycho run``/``demo`` fix themselves: the model is the one just trained
#: (its bundle fixes the model settings, as for ``ptycho infer``), and it reconstructs the training
#: config's test data (else its training data) into the same output directory with the same backend.
#: An ``[inference]`` section may repeat their values but not change them.
RUN_FIXED_FIELDS = ("model_path", "test_data_file", "backend", "output_dir")


def _resolved(value: Any) -> Any:
    return Path(value).resolve() if isinstance(value, Path) else value


def _run_inference_config(args: argparse.Namespace, cfg: TrainingConfig) -> InferenceConfig:
    """Inference settings of ``ptycho run``/``demo``.

    Those derived from the training config ``cfg`` (:func:`ptycho.workflow.inference_config_for`),
    then every key of the ``[inference]`` section of ``--config`` (a training flag for a field both
    configs have and that the inference config takes from the training one, such as ``--seed``, wins over
    the section; ``--batch-size`` is the training batch only), then the :data:`RUN_INFERENCE_FIELDS` flags.

    Raises
    ------
    ptycho_core.errors.ConfigError
        The section sets one of :data:`RUN_FIXED_FIELDS` to another value than the run uses.
    """
    from ptycho import workflow
    from ptycho_core.errors import ConfigError

    given = vars(args)
    derived = workflow.inference_config_for(cfg)
    overrides: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        from ptycho_core.serialize import load_section

        section, keys = load_section(args.config, InferenceConfig)
        uses = {"model_path": Path(cfg.output_dir) / workflow.BUNDLE_NAME}
        # the bundle fixes the model; a flag of the training config sets what is derived from it
        flagged = set(given) & set(workflow.INFERENCE_FROM_TRAINING)
        for key in sorted(keys - {"model"} - flagged):
            value = getattr(section, key)
            if key in RUN_FIXED_FIELDS:
                used = uses.get(key, getattr(derived, key))
                if _resolved(value) != _resolved(used):
                    command = getattr(args, "command", "run")
                    raise ConfigError(
                        f"{args.config} [inference]: {key} = {str(value)!r}, but ptycho {command} uses "
                        f"{str(used)!r} (it reconstructs the training config's test data, else its training data, "
                        "with the bundle it trains, into its --output-dir with its --backend); drop the key or set "
                        f"it in [training], or use `ptycho infer --config {args.config}` for another bundle or data")
                continue
            overrides[key] = value
    overrides.update({k: given[k] for k in RUN_INFERENCE_FIELDS if k in given})
    return attrs.evolve(derived, **overrides)


def _cmd_run(args: argparse.Namespace) -> int:
    from ptycho import workflow

    cfg = _config_from_args(args, TrainingConfig)
    _print_paths(workflow.run(cfg, _run_inference_config(args, cfg), overwrite=args.overwrite,
                              command=_command_line(args), read_options=read_options_from_args(args)))
    return 0


#: Epochs of ``ptycho demo`` unless --nepochs or --config says otherwise (TrainingConfig's default is for real runs).
#: Chosen from ``benchmarks/quality_curve.py`` (docs/benchmarks.md): on the demo's scan the network's own
#: phase SSIM still rises with every 15 epochs up to 60 (0.39 at 30, 0.45 at 45, 0.51 at 60) while the
#: amplitude SSIM stays near 0.4, so the demo trains as many epochs as fit its 5-minute budget on 2 cores.
DEMO_NEPOCHS = 60
#: Early stop of ``ptycho demo`` (epochs without a lower deviance) unless a flag or --config says otherwise.
DEMO_EARLY_STOP_PATIENCE = 6
#: The shipped model ``ptycho demo`` starts from (``ptycho models``), unless --from-scratch.
DEMO_MODEL = "pretrained:sim-n64-g2"
#: Fine-tuning epochs of ``ptycho demo`` from :data:`DEMO_MODEL` unless --nepochs or --config says otherwise:
#: as many as the from-scratch demo trains, so the two are comparable (docs/amortised.md: on an idle 2-core
#: machine 60 fine-tuning epochs took 146 s and the whole demo 2 min 39 s).
DEMO_FINETUNE_EPOCHS = DEMO_NEPOCHS
#: Training time budget of ``ptycho demo`` in seconds (``TrainingConfig.max_train_seconds``) unless a flag or --config
#: says otherwise: on a slow or shared machine the demo stops training after the first epoch past it, so the whole
#: job stays under 5 minutes on 2 cores (on 2026-12-04 these cores ran 60 fine-tuning epochs in 352 s, the demo in
#: 6 min 9 s; the rest of the demo, simulation, shipped-model pass, refinement and plots, took 17 s).
DEMO_MAX_TRAIN_SECONDS = 210.0
#: File of ``ptycho demo``'s output directory with the shipped model's own metrics (network only, before fine-tuning).
DEMO_PRETRAINED_METRICS = "pretrained_metrics.json"

#: Settings for a CPU run of a few minutes, used by ``ptycho demo`` and ``benchmarks/quality.py``
#: unless a flag or --config sets them. Measured on the default simulation (docs/benchmarks.md):
#: gridsize 2 (the overlap constraint inside each group) reconstructs the phase far better than
#: gridsize 1 at the same cost (a group of 4 is one 4-channel sample); n_filters_scale 1 makes
#: each step ~3x cheaper than 2; batch 4 gives 4x the optimiser steps per epoch of batch 16;
#: 20 passes of iterative refinement (~3 s for 256 patterns) take the network's output to the data.
CPU_PRESET = {"gridsize": 2, "n_filters_scale": 1, "batch_size": 4, "refine_iterations": 20}


def apply_cpu_preset(args: argparse.Namespace) -> list[str]:
    """Set the :data:`CPU_PRESET` values not given on the command line (nothing with --config)."""
    if getattr(args, "config", None) is not None:
        return []
    applied = [k for k in CPU_PRESET if not hasattr(args, k)]
    for key in applied:
        setattr(args, key, CPU_PRESET[key])
    return applied


def _cmd_demo(args: argparse.Namespace) -> int:
    from ptycho import workflow
    from ptycho_data.npz import save_dataset
    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    from_scratch = args.from_scratch
    if not from_scratch:
        args.init_from = Path(DEMO_MODEL)
        model_defaults_from_bundle(args)  # the shipped model's settings for every model flag not given
    if args.config is None and not hasattr(args, "nepochs"):
        # keeps the demo under 5 minutes on 2 CPU cores
        args.nepochs = DEMO_NEPOCHS if from_scratch else DEMO_FINETUNE_EPOCHS
    if args.config is None and not hasattr(args, "early_stop_patience"):
        args.early_stop_patience = DEMO_EARLY_STOP_PATIENCE
    if args.config is None and not hasattr(args, "max_train_seconds"):
        args.max_train_seconds = DEMO_MAX_TRAIN_SECONDS
    apply_cpu_preset(args)
    cfg = _config_from_args(args, TrainingConfig)
    if not from_scratch:
        from ptycho.finetune import check_compatible
        from ptycho_core.errors import ConfigError

        try:
            check_compatible(cfg, DEMO_MODEL)
        except ConfigError as exc:
            raise ConfigError(f"{exc}; or train from scratch with `ptycho demo --from-scratch`") from None
    out = Path(cfg.output_dir)  # --output-dir, else the config file's, else the default
    sim = SimulationConfig(seed=cfg.seed)
    data_path = out / "simulated.npz"
    results = [data_path, out / workflow.BUNDLE_NAME, *(out / n for n in workflow.RESULT_FILES), out / "checkpoints"]
    workflow.check_no_result(results if from_scratch else [*results, out / DEMO_PRETRAINED_METRICS], args.overwrite)
    print(f"simulating a dataset from the embedded defaults (N={sim.N}) ...")
    out.mkdir(parents=True, exist_ok=True)
    dataset = simulate_dataset(sim)
    save_dataset(dataset, data_path)
    cfg = attrs.evolve(cfg, train_data_file=data_path, output_dir=out)
    icfg = _run_inference_config(args, cfg)
    if not from_scratch:
        _demo_pretrained(cfg, icfg, dataset, out)
    rec = workflow.run(cfg, icfg, overwrite=args.overwrite, command=_command_line(args),
                       init_from=None if from_scratch else Path(DEMO_MODEL))
    _print_paths(rec, trained="trained" if from_scratch else f"fine-tuned from {DEMO_MODEL}:")
    print(f"images and metrics are in {out.resolve()}")
    return 0


def _demo_pretrained(cfg: TrainingConfig, icfg: InferenceConfig, dataset: Any, out: Path) -> None:
    """``ptycho demo``'s first step: reconstruct the scan with the shipped model alone, one pass; print the metrics."""
    import time

    from ptycho import pretrained, workflow
    from ptycho_core import atomic
    from ptycho_data.metrics import evaluate_reconstruction

    start = time.perf_counter()
    model = pretrained.load(DEMO_MODEL, backend=cfg.backend)
    rec = workflow.infer(attrs.evolve(icfg, model_path=Path(DEMO_MODEL), refine_iterations=0), model=model,
                         dataset=dataset, write=False)
    seconds = time.perf_counter() - start
    metrics = evaluate_reconstruction(rec.object, dataset.object, dataset.positions)
    network_misfit, flat_misfit = workflow.data_misfits(rec, dataset)
    card = pretrained.card(DEMO_MODEL)
    atomic.write_text(out / DEMO_PRETRAINED_METRICS, json.dumps(
        {"model": DEMO_MODEL, "backend": cfg.backend, "seconds": seconds, "metrics": metrics,
         "network_misfit": network_misfit, "flat_misfit": flat_misfit}, indent=2, default=float))
    print(f"shipped model {DEMO_MODEL} ({card['model']['parameters']:,} parameters, pretrained on "
          f"{card['corpus']['n_objects']} simulated objects; `ptycho models` shows its card), network only, one pass "
          f"per group: {seconds:.1f} s (load + predict + stitch)")
    print("  " + _misfit_text(network_misfit, flat_misfit))
    _print_metrics(metrics)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ptycho_core.errors import DataError
    from ptycho_data.metrics import evaluate_reconstruction
    from ptycho_data.npz import load_arrays
    from ptycho_data.readers import load_dataset

    truth = load_dataset(args.ground_truth, "ground_truth")
    if truth.object is None:
        raise DataError(f"{args.ground_truth}: no objectGuess (ground truth) in this file")
    # header-checked read: no pickles, no huge declared shapes, truncation is a DataError
    obj = load_arrays(
        args.reconstruction, ["object"], what="a reconstruction.npz written by ptycho run/infer")["object"]
    if obj.dtype.kind not in "fciu":
        raise DataError(f"{args.reconstruction}: key 'object': expected a numeric image, got dtype {obj.dtype}")
    if obj.shape != truth.object.shape:
        raise DataError(f"{args.reconstruction}: object shape {obj.shape} differs from ground truth "
                        f"{truth.object.shape}")
    try:
        metrics = evaluate_reconstruction(obj, truth.object, truth.positions, register=args.register)
    except DataError as exc:
        raise DataError(f"{args.reconstruction} (ground truth {args.ground_truth}): {exc}") from exc
    text = json.dumps(metrics, indent=2, default=float)
    if args.output:
        from ptycho_core.atomic import write_text

        write_text(args.output, text)
    print(text)
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from ptycho_core.convert import convert_bundle

    src = Path(args.bundle)
    out = args.output or src.with_name(f"{src.stem}-{args.to}{src.suffix}")
    path = convert_bundle(src, args.to, out, overwrite=args.overwrite)
    print(f"converted {src} -> {path} (backend {args.to})")
    return 0


def _add_refine_flag(parser: argparse.ArgumentParser) -> None:
    _add_field_flags(parser, InferenceConfig, "InferenceConfig options (reconstruction after training)",
                     only=RUN_INFERENCE_FIELDS)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the workflow subcommands to the ``ptycho`` parser."""
    p = sub.add_parser("train", help="train a model and save its bundle", description="Train a model.")
    _common(p, TrainingConfig, skip=("test_data_file",))
    _add_field_flags(p, TrainingConfig, "not used by train", only=("test_data_file",), hidden=True)
    add_read_flags(p)
    p.add_argument(
        "--resume", type=Path, nargs="?", const=RESUME_LAST, default=None, metavar="CKPT",
        help="continue an interrupted run up to --nepochs epochs in total (not nepochs more): bare --resume takes "
             "the last checkpoint of this backend under <output-dir>/checkpoints (pytorch: last.ckpt, tensorflow: "
             "last.json); --resume CKPT takes that checkpoint file (or a tensorflow checkpoints folder)",
    )
    p.add_argument("--init-from", type=Path, default=None, metavar="BUNDLE", help=INIT_FROM_HELP)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("infer", help="reconstruct a dataset with a trained bundle",
                       description="Reconstruct --test-data with the bundle at --model-path.")
    _common(p, InferenceConfig, model_flags=False)
    add_read_flags(p)
    p.set_defaults(func=_cmd_infer)

    p = sub.add_parser("run", help="train, save, load, infer, stitch and write images + metrics",
                       description="The main job: train -> save -> load -> infer -> stitch -> images and metrics.")
    _common(p, TrainingConfig)
    _add_refine_flag(p)
    add_read_flags(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("demo", help="simulate a scan and reconstruct it with the shipped model, fine-tuned and refined",
                       description="Simulate a scan (ptycho-data defaults: the camera / coins object, which no "
                       f"shipped model was trained on), reconstruct it in one pass with the shipped model {DEMO_MODEL} "
                       "(network only), then `ptycho run --init-from` it: fine-tune "
                       f"up to {DEMO_FINETUNE_EPOCHS} epochs from the shipped weights (early stop after "
                       f"{DEMO_EARLY_STOP_PATIENCE} without improvement, or after the first epoch past "
                       f"{DEMO_MAX_TRAIN_SECONDS:g} s of training) and refine; each step's metrics and time are "
                       f"printed. --from-scratch trains a new model instead (up to {DEMO_NEPOCHS} epochs). Uses "
                       + ", ".join(f"{k} {v}" for k, v in CPU_PRESET.items())
                       + " unless flags or --config say otherwise.")
    _common(p, TrainingConfig)
    _add_refine_flag(p)
    p.add_argument("--from-scratch", action="store_true",
                   help=f"train a new model (up to {DEMO_NEPOCHS} epochs) instead of fine-tuning the shipped model "
                        f"{DEMO_MODEL}")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("evaluate", help="metrics of a reconstruction against ground truth",
                       description="Compare reconstruction.npz with the objectGuess of a DATA-001 file.")
    p.add_argument("reconstruction", type=Path, help="reconstruction.npz written by ptycho run/infer")
    p.add_argument("ground_truth", type=Path, help="NPZ with objectGuess")
    p.add_argument("--register", action="store_true", help="sub-pixel registration before the metrics")
    p.add_argument("--output", type=Path, help="also write the metrics JSON here")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("convert", help="convert a model bundle to another backend",
                       description="Move weights between backends (canonical layout), writing a new bundle.")
    p.add_argument("bundle", type=Path, help="bundle directory or .zip")
    p.add_argument("--to", required=True, help="target backend id (pytorch or tensorflow)")
    p.add_argument("--output", type=Path, help="output bundle path (default: BUNDLE-<backend>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output bundle")
    p.set_defaults(func=_cmd_convert)
