"""Typed facade over the plugin hooks: what the rest of ptycho calls.

    >>> from ptycho_core import backends
    >>> # the installed backends, read from package metadata (imports no framework)
    >>> [e.id for e in backends.available()]          # doctest: +SKIP
    ['pytorch', 'tensorflow']
    >>> be = backends.get("pytorch")                   # doctest: +SKIP
    >>> model = be.build_model(ModelConfig())          # doctest: +SKIP

Every operation is dispatched to the selected backend only; there is never a silent
fallback to another backend. A backend that returns ``None`` for an operation gives a
:class:`~ptycho_core.errors.BackendOperationError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptycho_core.config import default_backend
from ptycho_core.errors import BackendOperationError
from ptycho_core.registry import BackendEntry, Registry, default_registry

if TYPE_CHECKING:
    import numpy as np

    from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
    from ptycho_core.contracts import (
        BackendInfo,
        ForwardOutput,
        GroupedData,
        InferenceResult,
        ModelHandle,
        TrainResult,
    )

__all__ = ["Backend", "BackendEntry", "available", "get", "register_plugin_for_tests", "unregister_for_tests"]


class Backend:
    """One selected backend. Obtain it with :func:`get`."""

    def __init__(self, backend_id: str, registry: Registry) -> None:
        self.id = backend_id
        self._registry = registry
        registry.load(backend_id)

    def __repr__(self) -> str:
        return f"<Backend {self.id!r}>"

    @property
    def info(self) -> BackendInfo:
        """Versions, devices and weight format reported by the backend."""
        return self._registry.info(self.id)

    def _call(self, hook: str, **kwargs: Any) -> Any:
        result = self._registry.caller(self.id, hook)(**kwargs)
        if result is None:
            raise BackendOperationError(
                f"backend {self.id!r} does not implement {hook} (no plugin returned a result)"
            )
        return result

    def _check_model(self, model: ModelHandle) -> None:
        if model.backend != self.id:
            raise BackendOperationError(
                f"model belongs to backend {model.backend!r}, not {self.id!r}; "
                f"use backends.get({model.backend!r}) or convert it with `ptycho convert`"
            )

    def build_model(self, model_config: ModelConfig, training_config: TrainingConfig | None = None) -> ModelHandle:
        return self._call("ptycho_build_model", model_config=model_config, training_config=training_config)

    def train(
        self, model: ModelHandle, data: GroupedData, config: TrainingConfig, resume_from: Path | None = None
    ) -> TrainResult:
        self._check_model(model)
        return self._call("ptycho_train", model=model, data=data, config=config, resume_from=resume_from)

    def infer(self, model: ModelHandle, data: GroupedData, config: InferenceConfig) -> InferenceResult:
        self._check_model(model)
        return self._call("ptycho_infer", model=model, data=data, config=config)

    def forward(self, model: ModelHandle, data: GroupedData, config: TrainingConfig) -> ForwardOutput:
        self._check_model(model)
        return self._call("ptycho_forward", model=model, data=data, config=config)

    def save_model(self, model: ModelHandle, directory: Path) -> list[str]:
        self._check_model(model)
        return list(self._call("ptycho_save_model", model=model, directory=Path(directory)))

    def load_model(
        self, directory: Path, manifest: dict, model_config: ModelConfig, training_config: TrainingConfig | None = None
    ) -> ModelHandle:
        return self._call(
            "ptycho_load_model",
            directory=Path(directory),
            manifest=manifest,
            model_config=model_config,
            training_config=training_config,
        )

    def export_weights(self, model: ModelHandle) -> dict[str, np.ndarray]:
        self._check_model(model)
        return self._call("ptycho_export_weights", model=model)

    def import_weights(
        self, model_config: ModelConfig, training_config: TrainingConfig | None, weights: dict[str, np.ndarray]
    ) -> ModelHandle:
        return self._call(
            "ptycho_import_weights", model_config=model_config, training_config=training_config, weights=weights
        )

    def reassemble(
        self,
        patches: np.ndarray,
        positions: np.ndarray,
        crop_size: int,
        canvas_shape: tuple[int, int],
        origin: tuple[int, int],
    ) -> np.ndarray:
        """Stitch with the backend's native reassembly (or the NumPy reference as fallback)."""
        return self._call(
            "ptycho_reassemble_patches",
            patches=patches,
            positions=positions,
            crop_size=int(crop_size),
            canvas_shape=(int(canvas_shape[0]), int(canvas_shape[1])),
            origin=(int(origin[0]), int(origin[1])),
        )


def available(registry: Registry | None = None) -> list[BackendEntry]:
    """Installed and known-but-missing backends, read from package metadata only."""
    return (registry or default_registry()).entries()


def get(backend_id: str | None = None, registry: Registry | None = None) -> Backend:
    """Select a backend by id (``None``: ``$PTYCHO_BACKEND`` or ``'pytorch'``); imports only that one."""
    return Backend(backend_id or default_backend(), registry or default_registry())


def register_plugin_for_tests(plugin: Any, backend_id: str, registry: Registry | None = None) -> None:
    """Register an in-process backend as ``backend_id``: a
    :class:`~ptycho_core.backend_base.BackendEntrypoint` subclass or instance, or a plugin
    module or object with ``@hookimpl`` functions.

    For tests and applications embedding a backend without an installed distribution.
    """
    (registry or default_registry()).register(plugin, backend_id)


def unregister_for_tests(backend_id: str, registry: Registry | None = None) -> None:
    """Remove a backend registered with :func:`register_plugin_for_tests`."""
    reg = registry or default_registry()
    plugin = reg._backends.pop(backend_id, None)
    reg._infos.pop(backend_id, None)
    if plugin is not None:
        reg.pm.unregister(plugin)
