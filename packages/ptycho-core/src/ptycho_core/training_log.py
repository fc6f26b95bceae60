"""Backend-neutral helpers for training outputs: atomic file writes and resumable CSV logs.

Both backends log one CSV row per epoch (Lightning's ``CSVLogger``, Keras' ``CSVLogger``) and
both must leave a log that ends exactly at the resumed epoch after a kill-and-resume
(docs/design.md: robustness). The columns differ per framework, the repair does not.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["HISTORY_KEYS", "atomic_write", "continue_csv_log"]

#: Per-epoch entries of ``TrainResult.history`` on every backend: the reported loss (Poisson
#: deviance plus any weighted MAE / real-space terms, >= 0), the deviance alone, the relative
#: amplitude misfit, the physics intensity scale, the learning rate the epoch used, and seconds.
HISTORY_KEYS = ("loss", "deviance", "misfit", "intensity_scale", "lr", "epoch_s")


def atomic_write(path: Path | str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` for a temporary file next to ``path``, then ``os.replace`` it onto ``path``.

    The temporary name keeps the suffixes of ``path`` (Keras checks for ``.weights.h5``); the
    file gets the permissions of a newly created file under the umask (0644 with umask 022).
    The data is flushed to disk (fsync) before the rename. A failure part-way leaves the
    previous file intact and removes the temporary one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets the mode open() would give
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def continue_csv_log(path: Path | str, start_epoch: int, history: Mapping[str, Sequence[float]],
                     fields: Sequence[str], columns: Mapping[str, str]) -> None:
    """Make the per-epoch CSV log of an interrupted run end at ``start_epoch`` completed epochs.

    Rows of epochs at or after ``start_epoch`` (run after the checkpoint, or a torn last line)
    are dropped; epochs missing before it are rebuilt from the checkpoint's ``history``, with
    CSV column ``c`` taken from ``history[columns[c]]`` (other columns left empty). The header
    of an existing file wins over ``fields``. The file is rewritten atomically.
    """
    path = Path(path)
    rows: dict[int, dict[str, str]] = {}
    header = list(fields)
    if path.is_file():
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or header)
            for row in reader:
                try:
                    epoch = int(row.get("epoch") or "")
                except ValueError:
                    continue
                if 0 <= epoch < start_epoch and None not in row.values():
                    rows[epoch] = row
    for epoch in range(start_epoch):
        if epoch not in rows:
            rows[epoch] = {"epoch": str(epoch)}
            for field, key in columns.items():
                values = history.get(key, [])
                rows[epoch][field] = repr(float(values[epoch])) if epoch < len(values) else ""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore", restval="")
            writer.writeheader()
            writer.writerows(rows[e] for e in sorted(rows))

    atomic_write(path, write)
