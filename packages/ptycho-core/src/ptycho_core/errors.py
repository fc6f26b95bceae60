"""Exception classes of ptycho.

Every error subclasses a builtin so callers can catch what they already know
(``ValueError``, ``RuntimeError``, ...) and also :class:`PtychoError` to catch
everything ptycho raises on purpose. Messages say what was wrong, what exists and
what to do; the CLI prints them as one line and exits with code 2 for
:class:`PtychoInputError` subclasses (bad input or configuration).
"""

from __future__ import annotations

import difflib


class PtychoError(Exception):
    """Base class of every error ptycho raises on purpose."""


class PtychoInputError(PtychoError):
    """Bad input: a data file, a configuration or a bundle that does not fit the contract.

    The CLI exits with code 2 for these.
    """


class ConfigError(PtychoInputError, ValueError):
    """A configuration value is invalid (names the field, the value and what is allowed)."""


class DataError(PtychoInputError, ValueError):
    """A dataset does not fit the DATA-001 contract (names the file and key)."""


class BundleError(PtychoInputError, ValueError):
    """A model bundle is missing, malformed or has been tampered with."""


class BundleIntegrityError(BundleError):
    """A file of a bundle does not match the sha256 recorded in its manifest."""


class OutputExistsError(PtychoInputError, FileExistsError):
    """An earlier result would be replaced and overwriting was not asked for (names the path)."""


class UnknownBackendError(PtychoInputError, ValueError):
    """A backend id that no installed or known backend has."""

    def __init__(self, name: str, valid: list[str]):
        self.name = name
        self.valid = sorted(valid)
        msg = f"unknown backend {name!r}; valid backends are: {', '.join(repr(v) for v in self.valid)}"
        close = difflib.get_close_matches(name, self.valid, n=1, cutoff=0.4)
        if not close:
            close = [v for v in self.valid if v.startswith(name[:2].lower())][:1]
        if close:
            msg += f" (did you mean {close[0]!r}?)"
        super().__init__(msg)


class BackendNotInstalledError(PtychoError, ImportError):
    """A known backend whose package is not installed (the message gives the pip command)."""

    def __init__(self, name: str, distribution: str):
        self.backend = name
        self.distribution = distribution
        super().__init__(
            f"backend {name!r} is not available (plugin may not be installed): "
            f"install it with `pip install {distribution}`"
        )


class MissingDependencyError(PtychoError, ImportError):
    """An optional ptycho package needed for this operation is not installed (says what to install)."""


class BackendLoadError(PtychoError, ImportError):
    """An installed backend plugin failed to import or register; the original error is chained."""


class HookValidationError(PtychoError, RuntimeError):
    """A plugin does not fit the hook specifications: a hook ptycho does not define (e.g. a
    misspelled name), or a backend class whose operation does not take its hook's arguments,
    names an unknown operation or lacks a required class attribute."""


class BackendOperationError(PtychoError, RuntimeError):
    """A backend did not implement an operation or returned something outside the contract."""


class TrainingDivergedError(PtychoError, RuntimeError):
    """Training produced a NaN or infinite loss and was stopped."""


def did_you_mean(name: str, valid: list[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
