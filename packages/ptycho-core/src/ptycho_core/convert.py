"""Move a trained model between backends (``ptycho convert BUNDLE --to BACKEND``).

Weights travel as canonical NumPy arrays (docs/conventions.md s6): the source backend
exports them, the target backend imports them, and the core writes a new bundle.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from ptycho_core import backends, bundle
from ptycho_core.errors import ConfigError


def convert_bundle(source: str | os.PathLike, to: str, output: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Convert the bundle at ``source`` into a bundle of backend ``to`` at ``output``."""
    model = bundle.load_bundle(source)
    if model.backend == to:
        raise ConfigError(f"{source}: bundle already belongs to backend {to!r}; nothing to convert")
    target = backends.get(to)
    weights = backends.get(model.backend).export_weights(model)
    tc = model.training_config
    tc = None if tc is None else attrs.evolve(tc, backend=to)
    converted = target.import_weights(model.model_config, tc, weights)
    ic = model.metadata.get("inference_config")
    ic = None if ic is None else attrs.evolve(ic, backend=to)
    return bundle.save_bundle(converted, output, training_config=tc, inference_config=ic, overwrite=overwrite)
