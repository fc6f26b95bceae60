"""Backend registry: entry-point discovery, lazy loading and subset dispatch.

Listing backends reads entry-point metadata only (nothing is imported); selecting a
backend imports that backend's plugin module and no other. Operation hooks are
called through :meth:`pluggy.PluginManager.subset_hook_caller` with every *other*
backend removed, so a backend never has to check which backend was asked for, while
non-backend plugins (wrappers, the ``trylast`` NumPy reference) still take part.

Environment switches:

``PTYCHO_BACKEND``
    default backend id when none is given (an explicit argument always wins).
``PTYCHO_DISABLE_PLUGIN_AUTOLOAD``
    if set to a non-empty value, entry points are not loaded; only plugins
    registered explicitly (tests, embedding applications) are available.
``PTYCHO_TRACE_HOOKS``
    if set, every hook call is logged to the ``ptycho_core.hooks`` logger at DEBUG level.
"""

from __future__ import annotations

import functools
import logging
import os
import types
from importlib import metadata
from typing import Any

import attrs
import pluggy

from ptycho_core import hookspecs
from ptycho_core.backend_base import BackendEntrypoint, BackendPlugin, plugin_for
from ptycho_core.errors import (
    BackendLoadError,
    BackendNotInstalledError,
    HookValidationError,
    UnknownBackendError,
)

ENTRY_POINT_GROUP = "ptycho.backends"

KNOWN_BACKENDS: dict[str, str] = {"pytorch": "ptycho-torch", "tensorflow": "ptycho-tf"}
"""Backend ids shipped by the ptycho project and the distribution that provides each."""

log = logging.getLogger("ptycho_core.registry")
_hook_log = logging.getLogger("ptycho_core.hooks")


@attrs.frozen
class BackendEntry:
    """One backend as seen from package metadata (nothing imported)."""

    id: str
    distribution: str
    version: str | None
    installed: bool
    value: str = ""

    @property
    def install_command(self) -> str:
        return f"pip install {self.distribution}"


def _autoload_disabled() -> bool:
    return bool(os.environ.get("PTYCHO_DISABLE_PLUGIN_AUTOLOAD", "").strip())


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def refresh() -> None:
    """Forget cached entry-point metadata (after installing a backend at run time)."""
    _entry_points.cache_clear()


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return KNOWN_BACKENDS.get(ep.name, "?"), None
    return dist.metadata["Name"], dist.version


class Registry:
    """A plugin manager for the ``ptycho`` project plus the discovery of backends.

    Most code uses the module-level default registry through :mod:`ptycho_core.backends`.
    """

    def __init__(self, *, autoload: bool | None = None) -> None:
        self.autoload = (not _autoload_disabled()) if autoload is None else autoload
        self._backends: dict[str, Any] = {}
        self._infos: dict[str, Any] = {}
        self._pm: pluggy.PluginManager | None = None

    @property
    def pm(self) -> pluggy.PluginManager:
        """The plugin manager, created on first use with the NumPy reference plugin registered.

        Created lazily so that listing backends (``ptycho backends``) imports neither NumPy
        nor the reference implementation.
        """
        if self._pm is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
            pm.add_hookspecs(hookspecs)
            from ptycho_core.reference import ReferencePlugin

            pm.register(ReferencePlugin(), name="ptycho-reference")
            if os.environ.get("PTYCHO_TRACE_HOOKS", "").strip():
                pm.trace.root.setwriter(lambda msg: _hook_log.debug(msg.rstrip()))
                pm.enable_tracing()
            self._pm = pm
        return self._pm

    # -- discovery ---------------------------------------------------------
    def entries(self) -> list[BackendEntry]:
        """Installed and known backends, from metadata only (imports nothing)."""
        out: dict[str, BackendEntry] = {}
        if self.autoload:
            for name, ep in _entry_points().items():
                dist, version = _dist_of(ep)
                out[name] = BackendEntry(name, dist, version, True, ep.value)
        for name in self._backends:
            if name not in out:
                out[name] = BackendEntry(name, KNOWN_BACKENDS.get(name, "(registered in-process)"), None, True)
        for name, dist in KNOWN_BACKENDS.items():
            out.setdefault(name, BackendEntry(name, dist, None, False))
        return sorted(out.values(), key=lambda e: e.id)

    def valid_ids(self) -> list[str]:
        return [e.id for e in self.entries()]

    # -- loading -----------------------------------------------------------
    def register(self, plugin: Any, backend_id: str) -> None:
        """Register an already-imported backend plugin under ``backend_id``.

        ``plugin`` is a :class:`~ptycho_core.backend_base.BackendEntrypoint` subclass or
        instance (its generated plugin is registered), or a module or object with ``@hookimpl``
        functions (registered as it is).
        """
        plugin = plugin_for(plugin)
        if isinstance(plugin, BackendPlugin) and plugin.backend.id != backend_id:
            raise HookValidationError(
                f"backend {backend_id!r} is provided by {type(plugin.backend).__qualname__}, whose id is "
                f"{plugin.backend.id!r}; the entry-point name (or registered id) and the class attribute "
                "id must be the same"
            )
        if backend_id in self._backends:
            self.pm.unregister(self._backends.pop(backend_id))
            self._infos.pop(backend_id, None)
        self.pm.register(plugin, name=f"backend:{backend_id}")
        self._check_pending(backend_id)
        self._backends[backend_id] = plugin

    def _check_pending(self, backend_id: str) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            plugin = self.pm.get_plugin(f"backend:{backend_id}")
            if plugin is not None:
                self.pm.unregister(plugin)
            valid = sorted(h for h in dir(hookspecs) if h.startswith("ptycho_"))
            raise HookValidationError(
                f"backend {backend_id!r} implements a hook ptycho does not define ({exc}); valid hooks: "
                + ", ".join(valid)
            ) from exc

    def load(self, backend_id: str) -> Any:
        """Import (once) and register the plugin of ``backend_id``; return the registered plugin object."""
        if backend_id in self._backends:
            return self._backends[backend_id]
        eps = _entry_points() if self.autoload else {}
        if backend_id not in eps:
            if backend_id in KNOWN_BACKENDS:
                raise BackendNotInstalledError(backend_id, KNOWN_BACKENDS[backend_id])
            raise UnknownBackendError(backend_id, self.valid_ids())
        ep = eps[backend_id]
        try:
            plugin = ep.load()
        except Exception as exc:
            raise BackendLoadError(
                f"backend {backend_id!r} is installed ({ep.value}) but failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self.register(_backend_class_of_module(backend_id, ep, plugin), backend_id)
        return self._backends[backend_id]

    def info(self, backend_id: str) -> Any:
        """The :class:`BackendInfo` of a backend (loads it)."""
        if backend_id not in self._infos:
            plugin = self.load(backend_id)
            impl = getattr(plugin, "ptycho_register_backend", None)
            if impl is None:
                raise BackendLoadError(f"backend {backend_id!r} does not implement ptycho_register_backend")
            try:
                self._infos[backend_id] = impl()
            except Exception as exc:
                raise BackendLoadError(f"backend {backend_id!r} failed to describe itself: {exc}") from exc
        return self._infos[backend_id]

    def caller(self, backend_id: str, hook_name: str) -> Any:
        """A hook caller for ``hook_name`` that only reaches ``backend_id`` and non-backend plugins."""
        self.load(backend_id)
        others = [p for name, p in self._backends.items() if name != backend_id]
        return self.pm.subset_hook_caller(hook_name, remove_plugins=others)


def _backend_class_of_module(backend_id: str, ep: metadata.EntryPoint, plugin: Any) -> Any:
    """``plugin``, or the backend class it defines when the entry point names a module with a class but no hooks.

    ``pytorch = "ptycho_torch.plugin"`` (the module) then works like ``"ptycho_torch.plugin:TorchBackend"``
    (the form the bundled backends use): metadata installed before a backend became a class, or a
    third party who names the module. A module with several backend classes is ambiguous (an error
    naming them); one whose class has another id is refused by :meth:`Registry.register`.
    """
    if not isinstance(plugin, types.ModuleType) or any(name.startswith("ptycho_") for name in vars(plugin)):
        return plugin
    classes = [
        value for value in vars(plugin).values()
        if isinstance(value, type) and issubclass(value, BackendEntrypoint) and value.__module__ == plugin.__name__
    ]
    if len(classes) > 1:
        names = ", ".join(c.__name__ for c in classes)
        raise BackendLoadError(
            f"backend {backend_id!r}: the entry point names the module {ep.value!r}, which defines several backend "
            f"classes ({names}); name one: {backend_id} = \"{plugin.__name__}:{classes[0].__name__}\"")
    return classes[0] if classes else plugin


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The process-wide registry used by :mod:`ptycho_core.backends`."""
    return Registry()


def valid_backend_ids() -> list[str]:
    """Known backend ids plus installed and in-process registered ones (imports nothing)."""
    return default_registry().valid_ids()

