"""The pytest-side recorder, registered by :mod:`ptycho_ci.pytest_plugin` only when history is on.

For every test node it keeps the outcome, the summed setup/call/teardown duration, the
markers, the backend and (for failures) the exception class with its bases, its message
and its traceback frames, and at the end of the session writes one run, with the environment capture, the
artifact findings of ``--ptycho-ci-artifacts`` directories and the triggers the test
suite's conftest files register, into the history store in one transaction.
"""

from __future__ import annotations

import builtins
import os
import re
import time
from pathlib import Path

import pytest

from ptycho_ci.records import ArtifactFinding, TestResult

BACKEND_IDS = ("pytorch", "tensorflow")
IGNORED_MARKERS = {"parametrize", "usefixtures", "filterwarnings"}
MAX_MESSAGE = 4000
MAX_FRAMES = 60
"""Frames kept of a failure's traceback (the innermost ones, where the error was raised)."""


def exception_chain(exc: BaseException) -> tuple[str, ...]:
    """``module.QualName`` of the exception's class and its bases, most derived first (no object/BaseException)."""
    return class_chain(type(exc))


def class_chain(cls: type) -> tuple[str, ...]:
    """``module.QualName`` of an exception class and its bases, most derived first (no object/BaseException)."""
    return tuple(f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__ if c not in (object, BaseException))


def traceback_frames(info: pytest.ExceptionInfo, root: Path | None = None,
                     start: Path | None = None) -> tuple[str, ...]:
    """The frames of a failure's traceback, outermost first: ``path:line in qualified.name``.

    With ``start`` (the test's file) the frames of pytest itself before the test's own are left
    out, as pytest's report does; a failure that never reached that file keeps all frames.

    ``path`` is relative to ``root`` where it lies under it (``packages/ptycho-torch/tests/test_io.py``),
    else absolute (``.../site-packages/lightning/pytorch/core/saving.py``); the name is the code
    object's qualified name (``PtychoLightningModule.__init__``). At most :data:`MAX_FRAMES`.
    """
    out = []
    traceback = info.traceback
    if start is not None:
        traceback = traceback.cut(path=start)
    for entry in traceback:
        path = Path(str(entry.path))
        if root is not None:
            try:
                path = path.relative_to(root)
            except ValueError:
                pass
        code = entry.frame.code.raw
        out.append(f"{path.as_posix()}:{entry.lineno + 1} in {getattr(code, 'co_qualname', code.co_name)}")
    return tuple(out[-MAX_FRAMES:])


_ERROR_LINE = re.compile(r"^E\s+([A-Za-z_][\w.]*): (.*)$", re.M)
_FRAME_LINE = re.compile(r"^(\S.*?):(\d+): in (\S+)$", re.M)


def collection_failure(text: str, root: Path | None = None) -> dict:
    """Exception, bases, message and frames of a collection error, read from pytest's report text.

    A test module that fails to import (``import torch`` at its top with torch missing) has no
    test item and no exception object in any hook: pytest reports the traceback as text
    (``path:line: in name`` lines, then ``E   ModuleNotFoundError: No module named 'torch'``).
    The bases are known for built-in exception classes only.
    """
    errors = _ERROR_LINE.findall(text)
    frames = []
    for path, line, name in _FRAME_LINE.findall(text):
        p = Path(path)
        if root is not None and p.is_absolute():
            try:
                p = p.relative_to(root)
            except ValueError:
                pass
        frames.append(f"{p.as_posix()}:{line} in {name}")
    if not errors:
        return {"exc_type": None, "exc_types": (), "message": text[:MAX_MESSAGE], "frames": tuple(frames[-MAX_FRAMES:])}
    kind, message = errors[-1]
    cls = getattr(builtins, kind, None)
    chain = class_chain(cls) if isinstance(cls, type) and issubclass(cls, BaseException) else (kind,)
    return {"exc_type": kind.rsplit(".", 1)[-1], "exc_types": chain, "message": message[:MAX_MESSAGE],
            "frames": tuple(frames[-MAX_FRAMES:])}


def backend_of(item: pytest.Item, default: str | None) -> str | None:
    """Backend of a test: its pytorch/tensorflow marker, else a parameter equal to a backend id, else ``default``."""
    for name in BACKEND_IDS:
        if item.get_closest_marker(name) is not None:
            return name
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        for value in callspec.params.values():
            if isinstance(value, str) and value in BACKEND_IDS:
                return value
        for token in callspec.id.split("-"):
            if token in BACKEND_IDS:
                return token
    return default


class Recorder:
    """Collects results during the session and writes them to the history at its end."""

    def __init__(self, config: pytest.Config, path: str | os.PathLike) -> None:
        self.config = config
        self.path = Path(path)
        self.started = time.time()
        self.default_backend = config.getoption("ptycho_ci_backend") or os.environ.get("PTYCHO_CI_BACKEND") or None
        self.label = config.getoption("ptycho_ci_label") or os.environ.get("PTYCHO_CI_LABEL") or None
        self.described: dict[str, tuple[tuple[str, ...], str | None]] = {}
        self.excinfo: dict[tuple[str, str], tuple[str, tuple[str, ...], str, tuple[str, ...]]] = {}
        self.entries: dict[str, dict] = {}
        self.run_id: int | None = None
        self.notes: list[str] = []

    # -- collection of per-test facts ------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> None:
        if item.nodeid not in self.described:
            markers = tuple(sorted({m.name for m in item.iter_markers()} - IGNORED_MARKERS))
            self.described[item.nodeid] = (markers, backend_of(item, self.default_backend))
        info = call.excinfo
        if info is not None and not info.errisinstance((pytest.skip.Exception, pytest.xfail.Exception)):
            message = str(info.value)[:MAX_MESSAGE]
            self.excinfo[(item.nodeid, call.when)] = (info.type.__name__, exception_chain(info.value), message,
                                                      traceback_frames(info, self.config.rootpath, item.path))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A test file that cannot be collected (an import error at its top) is recorded as an ``error``."""
        if not report.failed:
            return
        entry = self.entries.setdefault(report.nodeid, {"outcome": "error", "duration": 0.0})
        entry.update(outcome="error", phase="collect", location=report.nodeid.split("::")[0],
                     **collection_failure(str(report.longrepr), self.config.rootpath))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.entries.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0})
        entry["duration"] += float(report.duration)
        wasxfail = hasattr(report, "wasxfail")
        if report.failed:
            if entry["outcome"] != "failed":  # a teardown error after a failed call stays "failed"
                entry["outcome"] = "failed" if report.when == "call" else "error"
            self._failure(entry, report)
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "xfailed" if wasxfail else "skipped"
        elif report.when == "call" and report.passed and wasxfail:
            entry["outcome"] = "xpassed"

    def _failure(self, entry: dict, report: pytest.TestReport) -> None:
        if "exc_type" in entry:
            return
        entry["phase"] = report.when
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:
            entry["location"] = f"{self._relative(crash.path)}:{crash.lineno}"
        found = self.excinfo.get((report.nodeid, report.when))
        if found is not None:
            entry["exc_type"], entry["exc_types"], entry["message"], entry["frames"] = found
        elif crash is not None:
            kind, sep, message = crash.message.partition(": ")
            is_name = sep and kind.replace(".", "").replace("_", "").isalnum()
            entry["exc_type"] = kind.rsplit(".", 1)[-1] if is_name else None
            entry["exc_types"] = (kind,) if is_name else ()
            entry["message"] = (message if is_name else crash.message)[:MAX_MESSAGE]
        else:
            entry["message"] = str(report.longrepr)[:MAX_MESSAGE]

    def _relative(self, path: str) -> str:
        try:
            return Path(path).relative_to(self.config.rootpath).as_posix()
        except ValueError:
            return str(path)

    def results(self) -> list[TestResult]:
        """The collected results (one per node id)."""
        out = []
        for nodeid, e in self.entries.items():
            markers, backend = self.described.get(nodeid, ((), self.default_backend))
            out.append(TestResult(
                nodeid=nodeid, outcome=e["outcome"], duration=e["duration"], markers=markers, backend=backend,
                exc_type=e.get("exc_type"), exc_types=tuple(e.get("exc_types", ())), message=e.get("message"),
                phase=e.get("phase"), location=e.get("location"), frames=tuple(e.get("frames", ())),
            ))
        return out

    # -- end of session ----------------------------------------------------------------
    def suite_triggers(self) -> list[dict]:
        """Trigger documents registered by conftest plugins through ``ptycho_ci_register_triggers``."""
        from ptycho_ci.triggers import plugin_documents, plugin_manager

        pm = plugin_manager(load_entry_points=False)
        for plugin in self.config.pluginmanager.get_plugins():
            impl = getattr(plugin, "ptycho_ci_register_triggers", None)
            if impl is None or plugin is self:
                continue
            if not hasattr(impl, "ptycho_ci_impl"):
                self.notes.append(f"{self.config.pluginmanager.get_name(plugin)}: ptycho_ci_register_triggers is "
                                  "not decorated with ptycho_ci.hookimpl; ignored")
                continue
            pm.register(plugin, name=self.config.pluginmanager.get_name(plugin))
        return [doc for doc, _source in plugin_documents(pm)]

    def artifact_findings(self, documents: list[dict]) -> list[ArtifactFinding]:
        """Findings of the ``--ptycho-ci-artifacts`` directories (options from the trigger set)."""
        dirs = self.config.getoption("ptycho_ci_artifacts") or []
        if not dirs:
            return []
        from ptycho_ci.artifacts import check_directory
        from ptycho_ci.triggers import load_triggers

        options = load_triggers(extra=[(d, "conftest") for d in documents]).artifact_options()
        out = []
        for d in dirs:
            if Path(d).is_dir():
                out.extend(check_directory(d, **options))
            else:
                out.append(ArtifactFinding(str(d), "png_missing", f"output directory {d} does not exist"))
        return out

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from ptycho_ci.environment import capture
        from ptycho_ci.errors import CIError
        from ptycho_ci.history import HistoryStore

        try:
            documents = self.suite_triggers()
            findings = self.artifact_findings(documents)
        except CIError as exc:
            self.notes.append(f"trigger or artifact check problem: {exc}")
            documents, findings = [], []
        params = self.config.invocation_params
        with HistoryStore(self.path) as store:
            self.run_id = store.add_run(
                self.results(), started=self.started, finished=time.time(), label=self.label,
                exitstatus=int(exitstatus), args=[str(a) for a in params.args],
                environment={**capture(self.config.rootpath), "invocation_dir": str(params.dir)},
                extra_triggers=documents, artifacts=findings,
            )

    def pytest_terminal_summary(self, terminalreporter) -> None:
        for note in self.notes:
            terminalreporter.write_line(f"ptycho-ci: {note}", yellow=True)
        if self.run_id is not None:
            terminalreporter.write_line(
                f"ptycho-ci: recorded run {self.run_id} ({len(self.entries)} tests) in {self.path}"
            )
