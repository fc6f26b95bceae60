"""``ptycho pretrain``: simulate a training corpus from a recipe, train on it, save the model bundle.

    >>> from ptycho_core.config import TrainingConfig
    >>> from ptycho_core.corpus import CorpusConfig
    >>> from ptycho.pretrain import pretrain
    >>> summary = pretrain(TrainingConfig(nepochs=2, output_dir="pre"), CorpusConfig(n_objects=2))  # doctest: +SKIP

The corpus (:class:`~ptycho_core.corpus.CorpusConfig`) is written object by object by
``ptycho_data.corpus.write_corpus`` to ``<output_dir>/corpus`` (one lazy dataset per object, so it
need not fit in memory), then trained on like several training datasets
(:func:`ptycho.workflow.train`: each object grouped and normalised on its own, batches
mixing objects). Outputs in ``output_dir``: ``corpus/`` (with ``corpus.json``: the recipe and
what every object drew), the bundle ``model/`` (its manifest's provenance records the recipe
under ``config.corpus``), ``summary.json`` (recipe, corpus size, fit, timings, provenance) and
the training checkpoints and logs. Nothing is replaced without ``overwrite``. With ``init_from`` (a
bundle or shipped model ``pretrained:NAME`` of the same architecture, checked before the corpus is
written) training continues from its weights: e.g. the shipped model pretrained further on a corpus
simulated with a beamline's own probe (``CorpusConfig.probe_from``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ptycho import workflow
from ptycho_core import atomic, bundle, provenance
from ptycho_core.config import TrainingConfig
from ptycho_core.corpus import CorpusConfig
from ptycho_core.errors import ConfigError

log = logging.getLogger("ptycho.pretrain")

CORPUS_DIR = "corpus"
SUMMARY = "summary.json"


def outputs(config: TrainingConfig) -> list[Path]:
    """What ``pretrain`` writes in ``config.output_dir`` (checked before any work)."""
    out = Path(config.output_dir)
    return [out / CORPUS_DIR, out / workflow.BUNDLE_NAME, out / SUMMARY, out / "checkpoints"]


def pretrain(config: TrainingConfig, corpus: CorpusConfig, *, overwrite: bool = False,
             command: Sequence[str] | None = None, init_from: Path | str | None = None) -> dict[str, Any]:
    """Write the corpus of ``corpus``, train ``config`` on it and save the bundle; return the summary.

    ``init_from``: start from the weights of this bundle or ``pretrained:NAME`` instead of a new model
    (:func:`ptycho.workflow.train`); its architecture must be ``config.model``'s.

    ``config.train_data_file`` and ``test_data_file`` are ignored (the corpus is the training data).

    Raises
    ------
    ptycho_core.errors.OutputExistsError
        An earlier result in ``output_dir`` and not ``overwrite``.
    ptycho_core.errors.ConfigError
        Strategy 'ddp' (every process would write the corpus): write it with one process first and
        train on ``<output_dir>/corpus`` with ``ptycho train``.
    """
    if not isinstance(corpus, CorpusConfig):
        raise ConfigError(f"pretrain: expected a CorpusConfig recipe, got {type(corpus).__name__}")
    if config.strategy == "ddp":
        raise ConfigError("TrainingConfig.strategy: 'ddp' is not supported by pretrain (every process would write "
                          "the corpus); pretrain with one process, or train on an existing corpus directory with "
                          "`ptycho train --train-data DIR/corpus --strategy ddp`")
    out = Path(config.output_dir)
    workflow.check_no_result(outputs(config), overwrite)
    if init_from is not None:
        from ptycho.finetune import check_compatible

        init_from = Path(init_from)
        check_compatible(config, init_from)  # before the corpus is written, so a mismatch costs nothing
    corpus_dir = out / CORPUS_DIR
    cfg = attrs.evolve(config, train_data_file=corpus_dir, test_data_file=None)
    record = provenance.start(command=command, backend=cfg.backend, accelerator=cfg.accelerator,
                              configs={"training": cfg, "corpus": corpus}, inputs={"probe_from": corpus.probe_from})
    if init_from is not None:
        record["inputs"]["init_from"] = workflow.provenance_input(init_from)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    from ptycho_data.corpus import write_corpus

    paths = write_corpus(
        corpus, cfg.model.N, corpus_dir, overwrite=overwrite, progress=None if cfg.progress else False,
        load_dataset=workflow.load_dataset)
    corpus_s = time.perf_counter() - t0
    log.info("corpus of %d objects written in %.1f s; training", len(paths), corpus_s)
    result = workflow.train(cfg, overwrite=overwrite, init_from=init_from)
    finished = provenance.finish(record)
    bundle_path = bundle.save_bundle(result.model, out / workflow.BUNDLE_NAME,
                                     training_config=result.model.training_config or cfg,
                                     overwrite=overwrite, provenance=finished)
    history = {k: [float(v) for v in vals] for k, vals in result.history.items()}
    summary = {
        "backend": cfg.backend,
        "corpus": {"directory": str(corpus_dir), "recipe": finished["config"]["corpus"], "N": cfg.model.N,
                   "n_objects": len(paths), "n_patterns": len(paths) * corpus.n_positions},
        "epochs": result.epochs,
        "init_from": None if init_from is None else str(init_from),
        "training": workflow.training_summary(history),
        "timings": {"corpus_s": corpus_s, **{k: float(v) for k, v in result.timings.items()}},
        "paths": {"bundle": str(bundle_path), "corpus": str(corpus_dir)},
        "provenance": finished,
    }
    atomic.write_text(out / SUMMARY, json.dumps(summary, indent=2, default=str))
    return summary
