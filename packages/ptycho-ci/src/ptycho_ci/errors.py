"""Exception classes of ptycho-ci (subclasses of :mod:`ptycho_core.errors`).

Each message names the file, table, key or value at fault and what was expected.
"""

from __future__ import annotations

from ptycho_core.errors import PtychoError, PtychoInputError


class CIError(PtychoError):
    """Base class of every error ptycho-ci raises on purpose."""


class HistoryError(CIError, PtychoInputError, ValueError):
    """A run-history database is unreadable, of an unknown schema version, or lacks the asked-for run."""


class TriggerSpecError(CIError, PtychoInputError, ValueError):
    """A trigger or group definition (TOML file or plugin) does not fit the trigger language."""


class SelectorError(CIError, PtychoInputError, ValueError):
    """A selector string is not ``session``, ``node:<glob>``, ``marker:<name>`` or ``group:<name>``."""


class ArtifactError(CIError, PtychoInputError, ValueError):
    """An output directory given for artifact checks does not exist or is not a directory."""
