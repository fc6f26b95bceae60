"""Resumable per-epoch CSV logs and atomic writes shared by the backends."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ptycho_core.training_log import atomic_write, continue_csv_log

FIELDS = ["epoch", "intensity_scale", "step", "train_loss"]
COLUMNS = {"train_loss": "loss", "intensity_scale": "intensity_scale"}
HISTORY = {"loss": [5.0, 4.0, 3.0, 2.0], "intensity_scale": [1.0, 1.1, 1.2, 1.3]}


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_rows_after_the_checkpoint_and_a_torn_line_are_dropped(tmp_path):
    log = tmp_path / "metrics.csv"
    log.write_text("epoch,intensity_scale,step,train_loss\n0,1.0,3,5.0\n1,1.1,7,4.0\n2,1.2,11,3.0\n3,1.3")
    continue_csv_log(log, 2, HISTORY, FIELDS, COLUMNS)
    rows = _rows(log)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert rows[1] == {"epoch": "1", "intensity_scale": "1.1", "step": "7", "train_loss": "4.0"}  # kept as written


def test_missing_epochs_are_rebuilt_from_the_history(tmp_path):
    log = tmp_path / "logs" / "metrics.csv"  # no file yet (killed before the first row was flushed)
    continue_csv_log(log, 3, HISTORY, FIELDS, COLUMNS)
    rows = _rows(log)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert rows[2] == {"epoch": "2", "intensity_scale": "1.2", "step": "", "train_loss": "3.0"}
    assert list(rows[0]) == FIELDS
    assert not [p for p in log.parent.iterdir() if p.name != "metrics.csv"]  # no temporary file left


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "state.weights.h5"
    target.write_text("old")

    def fail(tmp):
        assert tmp.endswith(".weights.h5")  # suffixes kept for Keras
        with open(tmp, "w") as fh:
            fh.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["state.weights.h5"]
    atomic_write(target, lambda tmp: Path(tmp).write_text("new"))
    assert target.read_text() == "new"


def test_atomic_write_honours_the_umask(tmp_path):
    import os

    from ptycho_core.training_log import atomic_write

    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("x"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
