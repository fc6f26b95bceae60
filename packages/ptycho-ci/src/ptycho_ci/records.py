"""Plain records of the run history: a run, a test result and an artifact finding."""

from __future__ import annotations

from dataclasses import dataclass, field

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
"""Recorded outcomes. ``error`` is a failure in setup or teardown."""
FAILING = ("failed", "error")


@dataclass(frozen=True)
class TestResult:
    """One test node of one run.

    ``duration`` sums setup, call and teardown in seconds. ``exc_types`` lists the failure's
    exception class and its bases as ``module.QualName`` (most derived first), so a trigger
    on ``ValueError`` also matches ``ptycho_core.errors.DataError``. ``frames`` is the failure's
    traceback, outermost first, one ``path:line in qualified.function`` per frame (paths relative
    to the rootdir where they lie under it), so a trigger can match where the error came from
    (``load_from_checkpoint``, ``ptycho_torch/model.py``) as well as what it says.
    """

    __test__ = False  # not a pytest test class

    nodeid: str
    outcome: str
    duration: float
    markers: tuple[str, ...] = ()
    backend: str | None = None
    exc_type: str | None = None
    exc_types: tuple[str, ...] = ()
    message: str | None = None
    phase: str | None = None
    location: str | None = None
    frames: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        """True for ``failed`` and ``error`` outcomes."""
        return self.outcome in FAILING


@dataclass(frozen=True)
class Run:
    """One recorded pytest session. Times are seconds since the epoch."""

    id: int
    started: float
    finished: float
    label: str | None = None
    exitstatus: int | None = None
    args: tuple[str, ...] = ()
    environment: dict = field(default_factory=dict)
    extra_triggers: tuple[dict, ...] = ()
    counts: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Wall time of the session in seconds."""
        return self.finished - self.started


@dataclass(frozen=True)
class ArtifactFinding:
    """A problem with a file of an output directory (``check`` names the artifact check)."""

    path: str
    check: str
    message: str
