"""Pretrained models shipped with the ``ptycho`` package, loadable offline by name by every backend.

    >>> from ptycho import pretrained
    >>> pretrained.names()                                           # doctest: +SKIP
    ['sim-n64-g2']
    >>> model = pretrained.load("pretrained:sim-n64-g2", backend="tensorflow")  # doctest: +SKIP

A shipped model is a directory ``ptycho/pretrained/<name>/`` (package data) holding

- ``weights.npz``: the canonical weights (docs/conventions.md s6) written by
  ``ptycho_core.backends.export_weights``, float32, compressed; every backend builds the model and
  sets them with ``import_weights``, so the model is not tied to the backend that trained it;
- ``config.json``: ``{"model": ModelConfig, "training": TrainingConfig}`` as dicts;
- ``card.json``: the model card (corpus recipe, training command, seed, epochs and steps, wall time
  and hardware, quality on held-out objects), written by ``benchmarks/make_pretrained.py`` from its
  own measurements.

``pretrained:NAME`` is accepted wherever a model bundle path is (``ptycho infer --model-path``,
``ptycho train --init-from``, :func:`ptycho.workflow.load_model`, :func:`ptycho.workflow.train`'s
``init_from``); :func:`load` resolves either. ``ptycho models`` lists the shipped models and their cards.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptycho_core.errors import ConfigError

if TYPE_CHECKING:
    from ptycho_core.config import ModelConfig, TrainingConfig
    from ptycho_core.contracts import ModelHandle

__all__ = ["PREFIX", "card", "configs", "directory", "is_reference", "load", "load_model_config", "name_of",
           "names", "weights", "write"]

PREFIX = "pretrained:"
"""A model path ``pretrained:NAME`` names a shipped model instead of a bundle."""
ROOT = Path(__file__).resolve().parent
WEIGHTS, CONFIG, CARD = "weights.npz", "config.json", "card.json"


def names(root: Path | None = None) -> list[str]:
    """The shipped models (directories of ``root``, default this package, holding weights, config and card)."""
    root = ROOT if root is None else Path(root)
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and all((p / f).is_file() for f in (WEIGHTS, CONFIG, CARD)))


def is_reference(value: Any) -> bool:
    """Whether ``value`` (a str or path) is ``pretrained:NAME`` rather than a bundle path."""
    return isinstance(value, (str, os.PathLike)) and os.fspath(value).startswith(PREFIX)


def name_of(value: str | os.PathLike) -> str:
    """``NAME`` of ``pretrained:NAME`` (a bare name is returned as it is)."""
    text = os.fspath(value)
    return text[len(PREFIX):] if text.startswith(PREFIX) else text


def directory(name: str | os.PathLike, root: Path | None = None) -> Path:
    """The directory of the shipped model ``name`` (or ``pretrained:name``).

    Raises
    ------
    ptycho_core.errors.ConfigError
        No such shipped model; the message lists the available ones.
    """
    key = name_of(name)
    available = names(root)
    if key not in available:
        listed = ", ".join(f"{PREFIX}{n}" for n in available) or "none (this installation ships no models)"
        raise ConfigError(f"{PREFIX}{key}: no such pretrained model; available: {listed} (`ptycho models` "
                          "shows their cards)")
    return (ROOT if root is None else Path(root)) / key


def card(name: str | os.PathLike, root: Path | None = None) -> dict[str, Any]:
    """The model card of ``name`` (``card.json``)."""
    return json.loads((directory(name, root) / CARD).read_text(encoding="utf-8"))


def configs(name: str | os.PathLike, root: Path | None = None) -> tuple[ModelConfig, TrainingConfig]:
    """The ModelConfig and TrainingConfig the model was trained with (``config.json``)."""
    from ptycho_core.config import ModelConfig, TrainingConfig
    from ptycho_core.serialize import from_dict

    path = directory(name, root) / CONFIG
    data = json.loads(path.read_text(encoding="utf-8"))
    return (from_dict(ModelConfig, data.get("model", {}), source=str(path)),
            from_dict(TrainingConfig, data.get("training", {}), source=str(path)))


def load_model_config(name: str | os.PathLike, root: Path | None = None) -> ModelConfig:
    """The ModelConfig of the shipped model ``name`` (weights not read)."""
    return configs(name, root)[0]


def weights(name: str | os.PathLike, root: Path | None = None) -> dict[str, Any]:
    """The canonical weights of ``name``: name -> float32 array."""
    import numpy as np

    with np.load(directory(name, root) / WEIGHTS, allow_pickle=False) as data:
        return {key: np.asarray(data[key]) for key in data.files}


def load(path: str | os.PathLike, backend: str | None = None, *, training_config: TrainingConfig | None = None,
         root: Path | None = None) -> ModelHandle:
    """Load a model: ``pretrained:NAME`` with ``backend`` (default: the installation's default), else a bundle.

    A shipped model is built by ``backend`` from its canonical weights (any installed backend); its
    training config is ``training_config`` if given (fine-tuning), else the shipped one with
    ``backend``. A bundle path goes to :func:`ptycho_core.bundle.load_bundle` (whose backend must be
    ``backend`` when given).
    """
    import attrs

    from ptycho_core import backends, bundle
    from ptycho_core.config import default_backend

    if not is_reference(path):
        return bundle.load_bundle(path, backend=backend)
    key = name_of(path)
    model_config, shipped_training = configs(key, root)
    backend = backend or default_backend()
    tc = training_config if training_config is not None else attrs.evolve(shipped_training, backend=backend)
    handle = backends.get(backend).import_weights(model_config, tc, weights(key, root))
    handle.metadata["bundle"] = f"{PREFIX}{key}"
    handle.metadata["pretrained"] = key
    return handle


def write(name: str, model: ModelHandle, training_config: TrainingConfig, model_card: dict[str, Any],
          root: Path | None = None) -> Path:
    """Write ``model`` as the shipped model ``name`` under ``root`` (canonical weights, configs, card).

    Used by ``benchmarks/make_pretrained.py``; replaces an existing model of that name.
    """
    import numpy as np

    from ptycho_core import atomic, backends
    from ptycho_core.serialize import to_dict

    out = (ROOT if root is None else Path(root)) / name
    out.mkdir(parents=True, exist_ok=True)
    exported = backends.get(model.backend).export_weights(model)
    canonical = {k: np.asarray(v, dtype=np.float32) for k, v in exported.items()}
    with atomic.atomic_file(out / WEIGHTS) as tmp, tmp.open("wb") as fh:
        np.savez_compressed(fh, **canonical)
    atomic.write_text(out / CONFIG, json.dumps({"model": to_dict(model.model_config),
                                                "training": to_dict(training_config)}, indent=2, default=str) + "\n")
    atomic.write_text(out / CARD, json.dumps(model_card, indent=2, default=str) + "\n")
    return out
