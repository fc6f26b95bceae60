"""The run history: a SQLite file (standard library only) with a versioned schema.

The database runs in WAL mode with a busy timeout, and every run is written in one
``BEGIN IMMEDIATE`` transaction, so two CI jobs appending to the same file at once lose
nothing and readers never see half a run. ``PRAGMA user_version`` holds the schema
version; a file written by a newer ptycho-ci is refused instead of being misread.

    >>> store = HistoryStore("history.sqlite")                       # doctest: +SKIP
    >>> run = store.latest_run()                                      # doctest: +SKIP
    >>> store.last_runs(Selector.parse("marker:integration"), 5)      # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ptycho_ci.errors import HistoryError
from ptycho_ci.records import ArtifactFinding, Run, TestResult

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 60_000

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    label TEXT,
    exitstatus INTEGER,
    args TEXT NOT NULL DEFAULT '[]',
    environment TEXT NOT NULL DEFAULT '{}',
    extra_triggers TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    nodeid TEXT NOT NULL,
    outcome TEXT NOT NULL,
    duration REAL NOT NULL,
    markers TEXT NOT NULL DEFAULT '[]',
    backend TEXT,
    exc_type TEXT,
    exc_types TEXT NOT NULL DEFAULT '[]',
    message TEXT,
    phase TEXT,
    location TEXT,
    PRIMARY KEY (run_id, nodeid)
);
CREATE INDEX IF NOT EXISTS results_by_node ON results(nodeid, run_id);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    check_name TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS baselines (
    selector TEXT PRIMARY KEY,
    seconds REAL NOT NULL,
    n_runs INTEGER NOT NULL,
    measured_at REAL NOT NULL,
    machine TEXT NOT NULL DEFAULT '{}'
);
"""

_SCHEMA_V2 = """
ALTER TABLE results ADD COLUMN frames TEXT NOT NULL DEFAULT '[]'
"""
"""Version 2 adds the traceback frames of a failure (``TestResult.frames``)."""

_RESULT_COLUMNS = ("nodeid, outcome, duration, markers, backend, exc_type, exc_types, message, phase, location, "
                   "frames")


class HistoryStore:
    """A run-history database at ``path`` (created on first write unless ``create=False``)."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise HistoryError(
                f"{self.path}: no run history there (record runs with `pytest --ptycho-ci-history {self.path}`)"
            )
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._setup()
                break
            except sqlite3.OperationalError as exc:
                # Two connections switching a new file to WAL at once can deadlock on the lock
                # upgrade; SQLite then answers "locked" without waiting. Back off and retry.
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(random.uniform(0.01, 0.1))
                    continue
                self._db.close()
                raise HistoryError(f"{self.path}: cannot open the history ({exc})") from None
            except sqlite3.DatabaseError as exc:
                self._db.close()
                raise HistoryError(f"{self.path}: not a readable ptycho-ci history database ({exc})") from None

    def _setup(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema --------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{self.path}: history schema version {version} is newer than this ptycho-ci reads "
                f"({SCHEMA_VERSION}); upgrade ptycho-ci"
            )
        if version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]  # another writer may have migrated
            if version == 0:
                for statement in filter(str.strip, _SCHEMA_V1.split(";")):
                    self._db.execute(statement)
            if version < 2:
                self._db.execute(_SCHEMA_V2)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        """``PRAGMA user_version`` of the file."""
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @property
    def journal_mode(self) -> str:
        """The SQLite journal mode (``wal`` on every filesystem that supports it)."""
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    # -- writing -------------------------------------------------------------------
    def add_run(
        self,
        results: Iterable[TestResult],
        *,
        started: float,
        finished: float,
        label: str | None = None,
        exitstatus: int | None = None,
        args: Iterable[str] = (),
        environment: dict | None = None,
        extra_triggers: Iterable[dict] = (),
        artifacts: Iterable[ArtifactFinding] = (),
    ) -> int:
        """Append one run with its results and artifact findings in one transaction.

        Parameters
        ----------
        results : iterable of TestResult
            One result per test node id.
        started, finished : float
            Start and end of the session, seconds since the epoch.
        label, exitstatus, args, environment
            Run label (tier), pytest exit status, pytest arguments, environment capture.
        extra_triggers : iterable of dict
            Trigger documents registered by the test suite (conftest), applied to this run.
        artifacts : iterable of ArtifactFinding
            Findings of the artifact checks of this run.

        Returns
        -------
        int
            The new run id (ids grow with insertion order).
        """
        rows = [
            (r.nodeid, r.outcome, float(r.duration), json.dumps(list(r.markers)), r.backend, r.exc_type,
             json.dumps(list(r.exc_types)), r.message, r.phase, r.location, json.dumps(list(r.frames)))
            for r in results
        ]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            cur = self._db.execute(
                "INSERT INTO runs (started, finished, label, exitstatus, args, environment, extra_triggers) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (float(started), float(finished), label, exitstatus, json.dumps(list(args)),
                 json.dumps(environment or {}, default=str), json.dumps(list(extra_triggers), default=str)),
            )
            run_id = int(cur.lastrowid)
            self._db.executemany(
                f"INSERT OR REPLACE INTO results (run_id, {_RESULT_COLUMNS}) VALUES ({', '.join(['?'] * 12)})",
                [(run_id, *row) for row in rows],
            )
            self._insert_artifacts(run_id, artifacts)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return run_id

    def _insert_artifacts(self, run_id: int, findings: Iterable[ArtifactFinding]) -> None:
        self._db.executemany(
            "INSERT INTO artifacts (run_id, path, check_name, message) VALUES (?, ?, ?, ?)",
            [(run_id, f.path, f.check, f.message) for f in findings],
        )

    def add_artifacts(self, run_id: int, findings: Iterable[ArtifactFinding]) -> None:
        """Attach artifact findings to an existing run."""
        self.run(run_id)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._insert_artifacts(run_id, findings)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def set_baseline(self, selector: str, seconds: float, n_runs: int, measured_at: float, machine: dict) -> None:
        """Store (or replace) the calibrated baseline runtime of ``selector``."""
        self._db.execute(
            "INSERT OR REPLACE INTO baselines (selector, seconds, n_runs, measured_at, machine) VALUES (?, ?, ?, ?, ?)",
            (selector, float(seconds), int(n_runs), float(measured_at), json.dumps(machine, default=str)),
        )

    # -- reading -------------------------------------------------------------------
    def _run_from_row(self, row: tuple) -> Run:
        run_id, started, finished, label, exitstatus, args, env, extra = row
        counts = dict(self._db.execute(
            "SELECT outcome, COUNT(*) FROM results WHERE run_id = ? GROUP BY outcome", (run_id,)
        ).fetchall())
        return Run(id=run_id, started=started, finished=finished, label=label, exitstatus=exitstatus,
                   args=tuple(json.loads(args)), environment=json.loads(env), extra_triggers=tuple(json.loads(extra)),
                   counts=counts)

    _RUN_COLUMNS = "id, started, finished, label, exitstatus, args, environment, extra_triggers"

    def runs(self, last: int | None = None, label: str | None = None) -> list[Run]:
        """Recorded runs, oldest first; ``last`` keeps only the most recent ones."""
        where, params = ("WHERE label = ?", [label]) if label is not None else ("", [])
        limit = f"LIMIT {int(last)}" if last is not None else ""
        rows = self._db.execute(
            f"SELECT {self._RUN_COLUMNS} FROM runs {where} ORDER BY id DESC {limit}", params
        ).fetchall()
        return [self._run_from_row(r) for r in reversed(rows)]

    def run(self, run_id: int) -> Run:
        """The run with id ``run_id``."""
        row = self._db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if row is None:
            raise HistoryError(f"{self.path}: no run with id {run_id} (see `ptycho-ci history --history {self.path}`)")
        return self._run_from_row(row)

    def latest_run(self, label: str | None = None) -> Run:
        """The most recently recorded run (optionally with ``label``)."""
        found = self.runs(last=1, label=label)
        if not found:
            what = f" labelled {label!r}" if label is not None else ""
            raise HistoryError(f"{self.path}: the history holds no run{what} yet")
        return found[0]

    def results(self, run_id: int) -> list[TestResult]:
        """Every test result of a run, in node-id order."""
        rows = self._db.execute(
            f"SELECT {_RESULT_COLUMNS} FROM results WHERE run_id = ? ORDER BY nodeid", (int(run_id),)
        ).fetchall()
        return [
            TestResult(nodeid=n, outcome=o, duration=d, markers=tuple(json.loads(m)), backend=b, exc_type=e,
                       exc_types=tuple(json.loads(es)), message=msg, phase=ph, location=loc,
                       frames=tuple(json.loads(fr)))
            for n, o, d, m, b, e, es, msg, ph, loc, fr in rows
        ]

    def artifacts(self, run_id: int) -> list[ArtifactFinding]:
        """Artifact findings recorded with a run."""
        rows = self._db.execute(
            "SELECT path, check_name, message FROM artifacts WHERE run_id = ? ORDER BY rowid", (int(run_id),)
        ).fetchall()
        return [ArtifactFinding(path=p, check=c, message=m) for p, c, m in rows]

    def last_runs(
        self, matches: Callable[[TestResult], bool], n: int, *, up_to: int | None = None, label: str | None = None
    ) -> list[tuple[Run, list[TestResult]]]:
        """The last ``n`` runs holding at least one result that ``matches`` accepts.

        Parameters
        ----------
        matches : callable
            ``TestResult -> bool``, usually ``lambda r: selector.matches(r, groups)``.
        n : int
            Number of runs wanted.
        up_to : int, optional
            Ignore runs recorded after this run id (evaluate an older run as if it were the latest).
        label : str, optional
            Only runs with this label.

        Returns
        -------
        list of (Run, list of TestResult)
            Oldest first, each run with its selected results.
        """
        out: list[tuple[Run, list[TestResult]]] = []
        for run in reversed(self.runs(label=label)):
            if up_to is not None and run.id > up_to:
                continue
            selected = [r for r in self.results(run.id) if matches(r)]
            if selected:
                out.append((run, selected))
                if len(out) >= n:
                    break
        return list(reversed(out))

    def baselines(self) -> dict[str, dict]:
        """Calibrated baselines: selector -> ``{'seconds', 'n_runs', 'measured_at', 'machine'}``."""
        rows = self._db.execute("SELECT selector, seconds, n_runs, measured_at, machine FROM baselines").fetchall()
        return {s: {"seconds": sec, "n_runs": n, "measured_at": t, "machine": json.loads(m)}
                for s, sec, n, t, m in rows}

    def count_runs(self) -> int:
        """Number of recorded runs."""
        return int(self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
