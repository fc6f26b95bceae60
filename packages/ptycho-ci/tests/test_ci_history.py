"""The SQLite history store: schema, round trip, queries, concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest
from ci_helpers import add_run, failed, healthy_run, integration, passed

from ptycho_ci.errors import HistoryError
from ptycho_ci.guardrails import Selector
from ptycho_ci.history import SCHEMA_VERSION, HistoryStore
from ptycho_ci.records import ArtifactFinding


def test_new_store_is_versioned_and_in_wal_mode(tmp_path):
    with HistoryStore(tmp_path / "sub" / "h.sqlite") as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.journal_mode == "wal"
        assert store.count_runs() == 0


def test_round_trip_of_a_run(tmp_path):
    with HistoryStore(tmp_path / "h.sqlite") as store:
        bad = failed("pkg/test_a.py::test_x[pytorch]", "TypeError", "boom\nsecond line", markers=("pytorch", "slow"),
                     backend="pytorch")
        finding = ArtifactFinding("out/a.png", "png_too_small", "12 bytes")
        run_id = add_run(store, [passed("pkg/test_a.py::test_ok"), bad], label="ci-pr", artifacts=[finding],
                         extra_triggers=[{"id": "X"}])
    with HistoryStore(tmp_path / "h.sqlite", create=False) as store:
        run = store.run(run_id)
        assert run.label == "ci-pr" and run.counts == {"passed": 1, "failed": 1}
        assert run.environment["git_commit"] == "abc123def456"
        assert run.args == ("tests/integration", "--ptycho-ci-history", "h.sqlite")
        assert run.extra_triggers == ({"id": "X"},)
        results = {r.nodeid: r for r in store.results(run_id)}
        assert results["pkg/test_a.py::test_x[pytorch]"] == bad
        assert store.artifacts(run_id) == [finding]
        assert store.latest_run().id == run_id


def test_last_runs_of_a_selector(tmp_path):
    with HistoryStore(tmp_path / "h.sqlite") as store:
        ids = [healthy_run(store, s) for s in (30.0, 31.0)]
        add_run(store, [passed("pkg/test_unit.py::test_x")])
        ids.append(healthy_run(store, 33.0))
        sel = Selector.parse("marker:integration")
        window = store.last_runs(lambda r: sel.matches(r), 2)
        assert [run.id for run, _ in window] == ids[1:]
        assert all(len(results) == 2 for _, results in window)
        assert [run.id for run, _ in store.last_runs(lambda r: sel.matches(r), 5, up_to=ids[1])] == ids[:2]
        assert [r.id for r in store.runs(last=2)] == [3, 4]


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(HistoryError, match="no run history there"):
        HistoryStore(tmp_path / "absent.sqlite", create=False)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HistoryError, match="not a readable ptycho-ci history"):
        HistoryStore(junk)
    with HistoryStore(tmp_path / "empty.sqlite") as store:
        with pytest.raises(HistoryError, match="holds no run yet"):
            store.latest_run()
        with pytest.raises(HistoryError, match="no run with id 7"):
            store.run(7)


def test_schema_1_history_is_migrated_and_keeps_its_runs(tmp_path):
    from ptycho_ci.history import _SCHEMA_V1

    path = tmp_path / "h.sqlite"
    with sqlite3.connect(path) as db:  # a history written by ptycho-ci before traceback frames were recorded
        db.executescript(_SCHEMA_V1)
        db.execute("INSERT INTO runs (started, finished, label) VALUES (0, 1, 'old')")
        db.execute("INSERT INTO results (run_id, nodeid, outcome, duration, exc_type, exc_types, message) "
                   "VALUES (1, 'pkg/test_a.py::test_x', 'failed', 0.5, 'TypeError', '[\"builtins.TypeError\"]', "
                   "'boom')")
        db.execute("PRAGMA user_version = 1")
    with HistoryStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 2
        (old,) = store.results(1)
        assert old.exc_types == ("builtins.TypeError",) and old.message == "boom" and old.frames == ()
        bad = failed("pkg/test_b.py::test_y", "TypeError", "boom", frames=("pkg/test_b.py:3 in test_y",))
        run_id = add_run(store, [bad])
        assert store.results(run_id) == [bad]


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "h.sqlite"
    HistoryStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(HistoryError, match="newer than this ptycho-ci reads"):
        HistoryStore(path)


def test_failed_write_leaves_no_partial_run(tmp_path):
    with HistoryStore(tmp_path / "h.sqlite") as store:
        healthy_run(store)
        with pytest.raises(AttributeError):  # fails after the run row is inserted, inside the transaction
            store.add_run([passed("a::b")], started=0.0, finished=1.0, artifacts=[object()])
        assert store.count_runs() == 1
        assert [r.id for r in store.runs()] == [1]
        healthy_run(store)
        assert store.count_runs() == 2


WRITER = textwrap.dedent("""
    import sys
    from ptycho_ci.history import HistoryStore
    from ptycho_ci.records import TestResult

    path, label, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = HistoryStore(path)
    for i in range(n):
        results = [TestResult(nodeid=f"tests/test_{label}.py::test_{k}", outcome="passed", duration=i + k / 10)
                   for k in range(3)]
        store.add_run(results, started=float(i), finished=float(i + 1), label=label, environment={"i": i})
    store.close()
""")


def test_two_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), label, "200"], stderr=subprocess.PIPE,
                              text=True) for label in ("jobA", "jobB")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with HistoryStore(path, create=False) as store:
        assert store.count_runs() == 400
        for label in ("jobA", "jobB"):
            runs = store.runs(label=label)
            assert sorted(r.environment["i"] for r in runs) == list(range(200))
            assert all(r.counts == {"passed": 3} for r in runs)
        sample = store.runs(label="jobB")[-1]
        assert [r.duration for r in store.results(sample.id)] == pytest.approx([199.0, 199.1, 199.2])


def test_many_processes_creating_a_new_history_at_once(tmp_path):
    """Switching a brand-new file to WAL from several processes at once must not fail with 'locked'."""
    path = tmp_path / "fresh.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"job{k}", "1"], stderr=subprocess.PIPE,
                              text=True) for k in range(8)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    with HistoryStore(path, create=False) as store:
        assert store.count_runs() == 8


def test_integration_helper_is_selected_by_group(tmp_path):
    from ptycho_ci.triggers import load_triggers

    groups = load_triggers().groups
    sel = Selector.parse("group:integration")
    assert all(sel.matches(r, groups) for r in integration(10.0))
    assert not sel.matches(passed("packages/ptycho-core/tests/test_config.py::test_x"), groups)
