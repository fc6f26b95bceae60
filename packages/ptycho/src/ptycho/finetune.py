"""Fine-tuning: start training from the weights of a model bundle (``ptycho train --init-from BUNDLE``).

    >>> from ptycho import workflow
    >>> result = workflow.train(config, init_from="pretrained/model")  # doctest: +SKIP

``BUNDLE`` may also be a shipped model ``pretrained:NAME`` (:mod:`ptycho.pretrained`; any backend loads it).
A bundle must have been written by ``config.backend`` (a bundle of another backend is converted
first with ``ptycho convert``) and with the same :class:`~ptycho_core.config.ModelConfig` as
``config.model`` (the architecture and physics settings; the training settings may differ).
Training then starts from its weights (network and trainable physics scale); the probe comes from
the new data, as for a new model, and the optimiser starts afresh.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from ptycho_core.config import ModelConfig, TrainingConfig
from ptycho_core.contracts import ModelHandle
from ptycho_core.errors import ConfigError


def model_differences(expected: ModelConfig, found: ModelConfig) -> list[str]:
    """``"name: bundle X, config Y"`` for every ModelConfig field that differs."""
    a, b = attrs.asdict(found), attrs.asdict(expected)
    return [f"{name}: bundle {a[name]!r}, config {b[name]!r}" for name in a if a[name] != b[name]]


def bundle_model_config(path: str | os.PathLike) -> tuple[str | None, ModelConfig]:
    """The backend id and ModelConfig recorded in a bundle (manifest and config.json; weights not loaded).

    For a shipped model ``pretrained:NAME`` the backend is ``None``: every backend loads its canonical weights.
    """
    import json
    import zipfile

    from ptycho import pretrained
    from ptycho_core import bundle
    from ptycho_core.serialize import from_dict

    if pretrained.is_reference(path):
        return None, pretrained.load_model_config(path)
    path = Path(path)
    manifest = bundle.read_manifest(path)
    try:
        if path.is_dir():
            raw = (path / bundle.CONFIG).read_bytes()
        else:
            with zipfile.ZipFile(path) as zf:
                raw = zf.read(bundle.CONFIG)
        configs = json.loads(raw)
    except (KeyError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise bundle.BundleError(f"{path}: cannot read {bundle.CONFIG} ({exc})") from None
    if not isinstance(configs, dict):
        raise bundle.BundleError(f"{path}: {bundle.CONFIG} must hold a JSON object")
    return str(manifest.get("backend")), from_dict(ModelConfig, configs.get("model", {}),
                                                   source=f"{path}/{bundle.CONFIG}")


def check_compatible(config: TrainingConfig, path: str | os.PathLike) -> None:
    """Raise :class:`ConfigError` unless the bundle at ``path`` can start ``config``'s training.

    The backend must be ``config.backend`` (else: convert with ``ptycho convert``) and the
    ModelConfig must equal ``config.model`` (the message names every differing field).
    """
    owner, model_config = bundle_model_config(path)
    if owner is not None and owner != config.backend:
        raise ConfigError(
            f"init_from: {path} is a bundle of backend {owner!r}, but this run trains with {config.backend!r}; "
            f"convert it first: `ptycho convert {path} --to {config.backend}` (then --init-from the converted "
            f"bundle), or train with --backend {owner}"
        )
    diff = model_differences(config.model, model_config)
    if diff:
        raise ConfigError(
            f"init_from: the ModelConfig of {path} differs from this run's in {len(diff)} field(s): "
            + "; ".join(diff) + " (fine-tuning keeps the architecture: use the bundle's model settings)"
        )


def initial_model(config: TrainingConfig, path: str | os.PathLike) -> ModelHandle:
    """The model of the bundle at ``path``, checked by :func:`check_compatible`, ready for ``backend.train``."""
    from ptycho import pretrained

    check_compatible(config, path)
    return pretrained.load(path, backend=config.backend, training_config=config)


def model_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The ModelConfig fields of a bundle as a dict (the defaults of ``ptycho train --init-from``)."""
    return attrs.asdict(bundle_model_config(path)[1])
