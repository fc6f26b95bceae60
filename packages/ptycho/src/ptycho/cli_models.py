"""``ptycho models``: the pretrained models shipped with the package and their model cards."""

from __future__ import annotations

import argparse
import json
from typing import Any

METRIC_COLUMNS = (("amplitude", "ssim"), ("phase", "ssim"), ("amplitude", "psnr"), ("phase", "psnr"),
                  ("amplitude", "frc50"), ("phase", "frc50"))


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def format_card(card: dict[str, Any]) -> str:
    """The model card as text (every field of ``card.json`` that a user needs to judge the model)."""
    lines = [f"{card['reference']}: {card['description']}"]
    m = card["model"]
    extra = "".join(f"{key} {m[key]}, " for key in ("object_window", "pad_object") if key in m)  # when not default
    lines.append(f"  model: N={m['N']}, gridsize {m['gridsize']}, n_filters_scale {m['n_filters_scale']}, {extra}"
                 f"{m['parameters']:,} parameters; probe: {card['probe']}")
    c = card["corpus"]
    recipe = c["recipe"]
    kinds = ", ".join(f"{k} (weight {w:g})" for k, w in zip(recipe["object_kinds"], recipe["object_weights"] or
                                                             [1.0] * len(recipe["object_kinds"])))
    scan = recipe["scan"] + ("" if recipe.get("step") is None else f" (step {recipe['step']:g} px)")
    lines.append(f"  corpus: {c['n_objects']} objects x {recipe['n_positions']} positions ({c['n_patterns']:,} "
                 f"patterns), kinds {kinds}; pictures {', '.join(recipe['images'])}; photons per pattern "
                 f"{', '.join(f'{p:g}' for p in recipe['photon_levels'])}; {scan} scan; corpus seed "
                 f"{recipe['seed']}")
    t = card["training"]
    hw = t["hardware"]
    lines.append(f"  training command: {t['command']}")
    lines.append(f"  training: backend {t['backend']} on {t['device']}, seed {t['seed']}, {t['epochs']} epochs = "
                 f"{t['steps']:,} optimiser steps of batch {t['batch_size']}, learning rate {t['learning_rate']:g}; "
                 f"final Poisson deviance {t['deviance']:.4g}, amplitude misfit {t['misfit']:.3g}")
    if t.get("init_from"):
        sha = (t.get("init_from_record") or {}).get("sha256")
        lines.append(f"  continued from: {t['init_from']}" + (f" (sha256 {sha[:16]}...)" if sha else "")
                     + ", the weights it had when this training started; the training and wall-time figures here "
                       "are of this stage only")
    lines.append(f"  wall time: {_fmt_seconds(t['wall_s'])} (corpus {t['corpus_s']:.0f} s, training "
                 f"{t['train_s']:.0f} s), {t['finished'][:10]}; hardware: {hw['description']}, load average "
                 f"{hw['load_average_start'][0]:.1f} at the start, {hw['load_average_end'][0]:.1f} at the end")
    e = card["evaluation"]
    lines.append(f"  held-out objects (not in the corpus), {e['what']}:")
    short = {"amplitude": "amp", "phase": "phase"}
    header = "    " + f"{'object':<24}" + "".join(f"{short[p] + ' ' + k.upper():>13}" for p, k in METRIC_COLUMNS)
    lines.append(header)
    for label, row in e["objects"].items():
        lines.append("    " + f"{label:<24}" + "".join(f"{row[p][k]:>13.3f}" for p, k in METRIC_COLUMNS))
    mean = e["mean"]
    lines.append("    " + f"{'mean':<24}" + "".join(f"{mean[p][k]:>13.3f}" for p, k in METRIC_COLUMNS))
    target = e.get("target")
    if target:
        lines.append(f"  {target}")
    w = card["weights"]
    lines.append(f"  weights: {w['file']} ({w['bytes'] / 1e6:.1f} MB, sha256 {w['sha256'][:16]}...), canonical "
                 "layout: loads into every installed backend")
    return "\n".join(lines)


def _cmd_models(args: argparse.Namespace) -> int:
    from ptycho import pretrained

    names = [pretrained.name_of(args.name)] if args.name else pretrained.names()
    cards = {name: pretrained.card(name) for name in names}  # an unknown name: ConfigError listing the models
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    if not cards:
        print("no pretrained models are installed")
        return 0
    for name in names:
        print(format_card(cards[name]))
        print(f"  directory: {pretrained.directory(name)}")
    print("use one with: ptycho infer --model-path pretrained:NAME --test-data DATA (any --backend), or "
          "ptycho train --init-from pretrained:NAME to fine-tune it")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ptycho models`` to the ``ptycho`` parser."""
    p = sub.add_parser(
        "models", help="list the pretrained models shipped with the package and their model cards",
        description="List the pretrained models installed with the ptycho package (pretrained:NAME, usable "
                    "wherever a model bundle is: `ptycho infer --model-path pretrained:NAME`, `ptycho train "
                    "--init-from pretrained:NAME`) with their model cards: corpus recipe, training command, seed, "
                    "steps, wall time and hardware, and the quality measured on held-out objects.")
    p.add_argument("name", nargs="?", help="show only this model (NAME or pretrained:NAME)")
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.set_defaults(func=_cmd_models)
