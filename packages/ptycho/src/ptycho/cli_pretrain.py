"""``ptycho pretrain``: simulate a training corpus from a recipe and train a model on it.

Flags: those of ``ptycho train`` (less the data files: the corpus is the training data) plus one
per :class:`~ptycho_core.corpus.CorpusConfig` field (``--n-objects``, ``--photon-levels 1e6 1e9``,
``--probe-from DATA``, ...; the corpus seed is ``--corpus-seed``). ``--config FILE`` may hold a
``[corpus]`` section next to ``[model]`` and ``[training]``; flags override it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import attrs

from ptycho_core.config import ModelConfig, TrainingConfig
from ptycho_core.console import add_output_flags
from ptycho_core.corpus import CorpusConfig

PREFIX = "corpus__"
"""argparse ``dest`` prefix of the CorpusConfig flags (their names may repeat other configs' fields)."""
FLAG_NAMES = {"seed": "--corpus-seed"}
"""CorpusConfig fields whose flag is not ``--<field-name>``."""
TUPLE_ARITY = {"zoom_range": 2, "feature_size_range": 2, "amplitude_range": 2, "phase_range": 2}


def corpus_flag(name: str) -> str:
    """The ``ptycho pretrain`` flag of a CorpusConfig field."""
    return FLAG_NAMES.get(name, f"--{name.replace('_', '-')}")


def _add_corpus_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("CorpusConfig options (the [corpus] section)")
    for field in attrs.fields(CorpusConfig):
        dest, flag = PREFIX + field.name, corpus_flag(field.name)
        doc = _corpus_doc(field)
        default = field.default
        if isinstance(default, bool):
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=doc)
        elif isinstance(default, tuple):
            kind = str if "str" in str(field.type) else float
            group.add_argument(flag, dest=dest, nargs=TUPLE_ARITY.get(field.name, "+"), type=kind,
                               default=argparse.SUPPRESS, metavar=field.name.upper(), help=doc)
        else:
            kind = int if isinstance(default, int) else float if field.name in ("step", "jitter") else (
                Path if field.name == "probe_from" else str)
            metavar = "DATA" if field.name == "probe_from" else field.name.upper()
            group.add_argument(flag, dest=dest, type=kind, default=argparse.SUPPRESS, metavar=metavar, help=doc)


def _corpus_doc(field: attrs.Attribute) -> str:
    from ptycho_core.corpus import CORPUS_OBJECT_KINDS

    docs = {
        "n_objects": "number of simulated objects (scans) in the corpus",
        "n_positions": "scan positions per object",
        "object_kinds": f"object kinds to draw from: {', '.join(CORPUS_OBJECT_KINDS)} (mixed = random blends)",
        "object_weights": "relative frequency of each --object-kinds entry (default: equal)",
        "images": "scikit-image pictures for the images/mixed kinds (default: all of ptycho-data's list)",
        "rotate": "rotate every picture by a random angle",
        "zoom_range": "LOW HIGH: crop each picture to 1/zoom of its side at a random place",
        "feature_size_range": "LOW HIGH: feature length in pixels of lines and random fields",
        "amplitude_range": "LOW HIGH: object amplitude",
        "phase_range": "LOW HIGH: object phase in radians",
        "photon_levels": "mean photons per pattern; each object draws one (each dataset is normalised on its own)",
        "noise": "Poisson noise on the counts",
        "scan": "scan pattern: raster, fermat or random",
        "step": "mean scan step in pixels (default N // 8)",
        "jitter": "std of Gaussian position jitter in pixels",
        "probe_from": "take the probe from this data file's probeGuess (NPZ, HDF5 or lazy dataset; N x N) instead "
                      "of the default simulated probe, so a beamline trains for its own probe without ground truth",
        "seed": "seed of the corpus (same recipe and seed: the same corpus, byte for byte)",
    }
    default = field.default
    shown = "not set" if default is None else (" ".join(str(v) for v in default) or "empty") if isinstance(
        default, tuple) else default
    return f"{docs[field.name]} (CorpusConfig.{field.name}, default: {shown})"


def corpus_config_from_args(args: argparse.Namespace) -> CorpusConfig:
    """The recipe: ``--config``'s ``[corpus]`` section (or the defaults) with the corpus flags applied."""
    from ptycho_core.serialize import from_dict, read_config_file, to_dict

    base = CorpusConfig()
    source = "command line"
    if getattr(args, "config", None) is not None:
        section = read_config_file(args.config).get("corpus")
        if section is not None:
            base = from_dict(CorpusConfig, section, source=f"{args.config} [corpus]")
            source = f"{args.config} [corpus] + command line"
    merged = to_dict(base)
    for key, value in vars(args).items():
        if key.startswith(PREFIX):
            merged[key[len(PREFIX):]] = str(value) if isinstance(value, Path) else value
    return from_dict(CorpusConfig, merged, source=source)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from ptycho.cli_workflow import _command_line, _config_from_args, model_defaults_from_bundle
    from ptycho.pretrain import pretrain

    corpus = corpus_config_from_args(args)
    model_defaults_from_bundle(args)
    cfg = _config_from_args(args, TrainingConfig)
    summary = pretrain(cfg, corpus, overwrite=args.overwrite, command=_command_line(args), init_from=args.init_from)
    fit = summary["training"]
    timings = summary["timings"]
    print(f"corpus: {summary['corpus']['n_objects']} objects x {corpus.n_positions} positions "
          f"({summary['corpus']['n_patterns']} patterns, N={summary['corpus']['N']}) in {timings['corpus_s']:.1f} s "
          f"-> {summary['paths']['corpus']}")
    text = (f"Poisson deviance {fit['deviance']:.4g} (0 = perfect), amplitude misfit {fit['misfit']:.3g}"
            if "deviance" in fit else f"loss {fit.get('loss', float('nan')):.6g}")
    start = f" from the weights of {summary['init_from']}" if summary.get("init_from") else ""
    print(f"trained {summary['epochs']} epochs{start} with {summary['backend']} in "
          f"{timings.get('train_s', 0.0):.1f} s; final {text}")
    print(f"model bundle: {summary['paths']['bundle']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ptycho pretrain`` to the ``ptycho`` parser."""
    from ptycho.cli_workflow import INIT_FROM_SOURCE_HELP, OVERWRITE_HELP, _add_field_flags

    p = sub.add_parser(
        "pretrain", help="simulate a training corpus from a recipe and train a model on it (streamed from disk)",
        description="Simulate a corpus of objects and scans ([corpus] recipe: object kinds and mix, photon levels, "
                    "scan, probe) into <output-dir>/corpus, one lazy dataset per object, train on all of them "
                    "(each grouped and normalised on its own), and save the model bundle <output-dir>/model; "
                    "summary.json and the bundle's provenance record the recipe. Reconstruct a new scan with "
                    "`ptycho infer --model-path <output-dir>/model`, fine-tune with `ptycho train --init-from`.")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="TOML/JSON/YAML config file with [model], [training] and [corpus] sections (flags override it)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP + " (and the corpus)")
    p.add_argument("--init-from", type=Path, default=None, metavar="BUNDLE",
                   help=f"continue pretraining: start from {INIT_FROM_SOURCE_HELP}")
    add_output_flags(p)
    _add_field_flags(p, TrainingConfig, "TrainingConfig options", skip=("train_data_file", "test_data_file"))
    _add_field_flags(p, ModelConfig, "ModelConfig options")
    _add_corpus_flags(p)
    p.set_defaults(func=_cmd_pretrain)
