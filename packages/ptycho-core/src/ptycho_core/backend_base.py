"""Write a backend as one class: :class:`BackendEntrypoint` (in the spirit of xarray's).

A backend subclasses :class:`BackendEntrypoint` once and names the subclass in its
``ptycho.backends`` entry point::

    [project.entry-points."ptycho.backends"]
    pytorch = "ptycho_torch.plugin:TorchBackend"

The subclass holds what the backend says about itself as class attributes and implements the
operations it supports. The pluggy hook implementations (``ptycho_register_backend`` and one
``ptycho_<operation>`` per implemented operation) are generated from it by
:meth:`BackendEntrypoint.as_plugin`, which the registry calls when it loads the entry point.
The hook signatures live in :mod:`ptycho_core.hookspecs` only: an operation is implemented
either

* as a method named after the hook without its ``ptycho_`` prefix (``train`` for
  ``ptycho_train``) taking the hook's arguments, by name (checked when the plugin is made), or
* as an entry of :attr:`BackendEntrypoint.operations`, ``"module:function"``, imported on the
  first call and called with the hook's arguments by name. This keeps the framework out of
  the import of the plugin module without writing each signature again.

An operation the class implements in neither way gets no hook implementation, so the facade
reports it as not implemented (:class:`~ptycho_core.errors.BackendOperationError`), and
``reassemble_patches`` falls back to the NumPy reference.

A plain module (or object) with :data:`~ptycho_core.hookspecs.hookimpl` functions still
registers as a backend; :func:`plugin_for` passes it through unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ptycho_core import hookspecs
from ptycho_core.errors import BackendOperationError, HookValidationError
from ptycho_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from ptycho_core.contracts import BackendInfo

__all__ = ["OPERATIONS", "STANDARD_LAYOUT", "BackendEntrypoint", "BackendPlugin", "hook_parameters", "plugin_for",
           "standard_operations"]

_PREFIX = "ptycho_"
_REGISTER_HOOK = "ptycho_register_backend"

OPERATIONS: tuple[str, ...] = tuple(
    name.removeprefix(_PREFIX)
    for name, value in vars(hookspecs).items()
    if name.startswith(_PREFIX) and name != _REGISTER_HOOK and callable(value)
)
"""The operations a backend may implement: the operation hooks of :mod:`ptycho_core.hookspecs`
without their ``ptycho_`` prefix (``build_model``, ``train``, ..., ``reassemble_patches``)."""

_ABOVE_THE_BACKENDS = ("ptycho", "ptycho_data", "ptycho_ci")
"""Packages a backend must not build on (the application, the data layer, the test tooling)."""

_REQUIRED_ATTRIBUTES = ("id", "distribution", "framework", "weight_format")


STANDARD_LAYOUT: dict[str, str] = {
    "build_model": "io:build_handle",
    "infer": "infer:infer_model",
    "forward": "infer:forward_model",
    "save_model": "io:save_model",
    "load_model": "io:load_model",
    "export_weights": "io:export_weights",
    "import_weights": "io:import_weights",
}
"""Where an operation lives (``module:function``, relative to the package) in a backend package laid out
like the bundled ones (docs/design.md, "Layout": the same module names in every backend)."""


def standard_operations(package: str, **more: str) -> dict[str, str]:
    """The ``operations`` table of a backend package with :data:`STANDARD_LAYOUT`, plus ``more``.

    ``more`` adds or replaces entries (``reassemble_patches="pkg.reassemble:stitch"``); the table is
    checked like any other when the backend is registered.

        >>> standard_operations("ptycho_torch")["infer"]
        'ptycho_torch.infer:infer_model'
    """
    table = {op: f"{package}.{where}" for op, where in STANDARD_LAYOUT.items()}
    table.update(more)
    return table


def hook_parameters(operation: str) -> tuple[str, ...]:
    """The argument names of the hook of ``operation``, read from its specification."""
    return tuple(inspect.signature(getattr(hookspecs, _PREFIX + operation)).parameters)


class BackendEntrypoint:
    """Base class of a ptycho backend; subclass it once (see the module docstring).

    Class attributes (``id``, ``distribution``, ``framework`` and ``weight_format`` are required):

    ``id``
        the backend id, equal to the entry-point name (``--backend ID``).
    ``distribution``
        the distribution providing the backend; its installed version is reported.
    ``framework``
        the framework's name as shown by ``ptycho backends`` (``"pytorch"``, ``"numpy"``).
    ``framework_distributions``
        the distributions whose installed versions are reported (missing ones are left out).
    ``weight_format``
        one line on the weight files a bundle of this backend holds.
    ``description``
        one line for ``ptycho backends --devices``.
    ``operations``
        operation name -> ``"module:function"``, for operations implemented by a function
        imported on first use (see the module docstring).

    Override :meth:`devices` to report the devices the framework sees (default ``('cpu',)``),
    and :meth:`info` only to describe the backend differently. ``__init__`` takes no
    arguments; keep it cheap, it runs when the backend is selected.
    """

    id: ClassVar[str] = ""
    distribution: ClassVar[str] = ""
    framework: ClassVar[str] = ""
    framework_distributions: ClassVar[tuple[str, ...]] = ()
    weight_format: ClassVar[str] = ""
    description: ClassVar[str] = ""
    operations: ClassVar[Mapping[str, str]] = {}

    def devices(self) -> tuple[str, ...]:
        """The devices the backend can run on, ``'cpu'`` first."""
        return ("cpu",)

    def info(self) -> BackendInfo:
        """The :class:`~ptycho_core.contracts.BackendInfo` of ``ptycho_register_backend``."""
        from ptycho_core.contracts import BackendInfo
        from ptycho_core.provenance import installed_versions

        return BackendInfo(
            id=self.id,
            distribution=self.distribution,
            version=installed_versions((self.distribution,)).get(self.distribution, "unknown"),
            framework=self.framework,
            framework_versions=installed_versions(tuple(self.framework_distributions)),
            devices=self.devices(),
            weight_format=self.weight_format,
            description=self.description,
        )

    @classmethod
    def implemented_operations(cls) -> tuple[str, ...]:
        """The operations this class implements, as methods or through :attr:`operations`."""
        return tuple(op for op in OPERATIONS if op in cls.operations or callable(getattr(cls, op, None)))

    @classmethod
    def as_plugin(cls) -> BackendPlugin:
        """A new instance of the class wrapped as a pluggy plugin (what the registry registers)."""
        return BackendPlugin(cls())


class BackendPlugin:
    """The pluggy plugin generated from a :class:`BackendEntrypoint` instance.

    Its attributes ``ptycho_register_backend`` and ``ptycho_<operation>`` (one per implemented
    operation) are :data:`~ptycho_core.hookspecs.hookimpl` functions that delegate to
    :attr:`backend`. Each takes exactly the arguments of its hook specification.

    Raises
    ------
    HookValidationError
        a required class attribute is missing, an ``operations`` entry names an unknown
        operation or a module that does not exist, an operation is implemented twice, or a
        method does not take its hook's arguments.
    """

    def __init__(self, backend: BackendEntrypoint) -> None:
        self.backend = backend
        cls = type(backend)
        _check_attributes(cls)
        _check_operation_table(cls)

        def ptycho_register_backend() -> BackendInfo:
            return backend.info()

        self.ptycho_register_backend = hookimpl(ptycho_register_backend)
        for op in cls.implemented_operations():
            if op in cls.operations:
                target: Callable[..., Any] = _LazyFunction(cls, op, cls.operations[op])
            else:
                target = getattr(backend, op)
                _check_parameters(f"{cls.__qualname__}.{op}", op, target)
            setattr(self, _PREFIX + op, _hook_implementation(op, target))

    def __repr__(self) -> str:
        return f"<ptycho backend plugin {type(self.backend).__qualname__} id={self.backend.id!r}>"


def plugin_for(obj: Any) -> Any:
    """What to register with pluggy for ``obj``.

    A :class:`BackendEntrypoint` subclass or instance becomes its :class:`BackendPlugin`;
    anything else (a module or object with ``@hookimpl`` functions) is returned unchanged.
    """
    if isinstance(obj, type) and issubclass(obj, BackendEntrypoint):
        return obj.as_plugin()
    if isinstance(obj, BackendEntrypoint):
        return BackendPlugin(obj)
    return obj


def _hook_implementation(op: str, target: Callable[..., Any]) -> Callable[..., Any]:
    """A hookimpl function for ``op`` whose arguments are those of the hook, calling ``target`` by name."""
    names = hook_parameters(op)

    def implementation(*args: Any) -> Any:
        return target(**dict(zip(names, args, strict=True)))

    implementation.__name__ = implementation.__qualname__ = _PREFIX + op
    implementation.__doc__ = f"Generated: calls {target!r} with the arguments of {_PREFIX + op}."
    # pluggy reads an implementation's argument names through ``__wrapped__`` (inspect.unwrap),
    # and passes the arguments in that order: the specification's names, the specification's order.
    implementation.__wrapped__ = getattr(hookspecs, _PREFIX + op)  # type: ignore[attr-defined]
    return hookimpl(implementation)


def _check_parameters(where: str, op: str, func: Callable[..., Any]) -> None:
    """Raise :class:`HookValidationError` unless ``func`` accepts the arguments of the hook of ``op`` by name."""
    expected = hook_parameters(op)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin without a signature: it will tell when called
        return
    try:
        signature.bind(**dict.fromkeys(expected))
    except TypeError as exc:
        raise HookValidationError(
            f"{where}{signature} does not take the arguments of the hook {_PREFIX + op}: expected "
            f"({', '.join(expected)}) by name ({exc}); see ptycho_core.hookspecs.{_PREFIX + op}"
        ) from None


def _check_attributes(cls: type[BackendEntrypoint]) -> None:
    missing = [a for a in _REQUIRED_ATTRIBUTES if not isinstance(getattr(cls, a), str) or not getattr(cls, a)]
    if missing:
        raise HookValidationError(
            f"backend class {cls.__qualname__} must set the class attribute(s) {', '.join(missing)} "
            f"(non-empty strings); required: {', '.join(_REQUIRED_ATTRIBUTES)}"
        )
    dists = cls.framework_distributions
    if isinstance(dists, str) or not all(isinstance(d, str) for d in dists):
        raise HookValidationError(
            f"{cls.__qualname__}.framework_distributions must be a tuple of distribution names, "
            f"got {dists!r}"
        )


def _check_operation_table(cls: type[BackendEntrypoint]) -> None:
    for op, path in cls.operations.items():
        where = f"{cls.__qualname__}.operations[{op!r}]"
        if op not in OPERATIONS:
            import difflib

            close = difflib.get_close_matches(op, OPERATIONS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise HookValidationError(f"{where}: unknown operation{hint} valid: {', '.join(OPERATIONS)}")
        if callable(getattr(cls, op, None)):
            raise HookValidationError(f"{where}: {op} is also a method of {cls.__qualname__}; implement it once")
        module, _, attribute = path.partition(":") if isinstance(path, str) else ("", "", "")
        if not module or not attribute.isidentifier():
            raise HookValidationError(f"{where} = {path!r}: expected 'module:function'")
        # The entries are imported by name, which import-linter cannot see: keep them inside the layers
        # (docs/design.md, "Packages and layers"): a backend builds on the kernel, never on the layers above it.
        if module.partition(".")[0] in _ABOVE_THE_BACKENDS:
            raise HookValidationError(
                f"{where} = {path!r}: an operation may not live in {module.partition('.')[0]!r}: a backend builds "
                f"on the kernel (ptycho_core) and its own package, never on {', '.join(_ABOVE_THE_BACKENDS)}")
        try:  # imports the parent packages only, not the module holding the framework code
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            raise HookValidationError(f"{where} = {path!r}: there is no module {module!r}")


class _LazyFunction:
    """``module:function`` of an ``operations`` entry, imported (and checked) on the first call."""

    def __init__(self, cls: type[BackendEntrypoint], op: str, path: str) -> None:
        self._where = f"{cls.__qualname__}.operations[{op!r}] = {path!r}"
        self._op = op
        self._path = path
        self._function: Callable[..., Any] | None = None

    def __repr__(self) -> str:
        return self._path

    def __call__(self, **kwargs: Any) -> Any:
        if self._function is None:
            module, _, attribute = self._path.partition(":")
            # a name-import, checked against the layers by _check_operation_table
            function = getattr(importlib.import_module(module), attribute, None)  # noqa: TID251
            if not callable(function):
                raise BackendOperationError(f"{self._where}: module {module!r} has no function {attribute!r}")
            _check_parameters(f"{self._where}: {attribute}", self._op, function)
            self._function = function
        return self._function(**kwargs)
