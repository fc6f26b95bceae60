"""What the CLI leaves behind (issue 19): file modes, no silent overwrite, provenance, a quiet console.

One session of real ``ptycho`` subprocesses under umask 022, with tiny settings: simulate ->
train -> infer -> run -> demo (pytorch), and a ``run`` with tensorflow for its console.
stdout/stderr are pipes, so progress bars must be off.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.integration]

TINY = ["--nepochs", "1", "--n-filters-scale", "1", "--batch-size", "16"]
CHATTER = ("💡", "Tip:", "litlogger", "GPU available", "TPU available", "v_num", "absl::InitializeLog",
           "oneDNN custom operations", "oneDNN supports", "Trainer.fit", "font_manager", "findfont",
           "Checkpoint directory")


def ptycho(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``ptycho ARGS`` in a subprocess under umask 022, environment as a user has it (no TF_CPP_* set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    env["PYTHONHASHSEED"] = "0"
    proc = subprocess.run([sys.executable, "-m", "ptycho_core.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=900, preexec_fn=lambda: os.umask(0o022))
    if check and proc.returncode != 0:
        raise AssertionError(f"ptycho {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def assert_quiet(proc: subprocess.CompletedProcess) -> None:
    """No duplicated line, no framework chatter, no progress bar (carriage returns) in a piped run."""
    for name, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        lines = [line for line in text.splitlines() if line.strip()]
        duplicated = [line for line, n in Counter(lines).items() if n > 1]
        assert duplicated == [], f"{name} repeats lines: {duplicated}"
        found = [word for word in CHATTER if word in text]
        assert found == [], f"{name} has framework chatter {found}:\n{text}"
        assert "\r" not in text, f"{name} has a progress bar although it is not a terminal:\n{text!r}"
        assert "site-packages" not in text, f"{name} shows a raw library warning:\n{text}"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    procs = {}
    procs["simulate"] = ptycho("simulate", "-o", "data/scan.npz", "--n-positions", "64", cwd=root)
    procs["train"] = ptycho("train", "--backend", "pytorch", "--train-data", "data/scan.npz", "--output-dir", "tr",
                            *TINY, cwd=root)
    procs["infer"] = ptycho("infer", "--model-path", "tr/model", "--test-data", "data/scan.npz", "--output-dir",
                            "inf", cwd=root)
    procs["run"] = ptycho("run", "--backend", "pytorch", "--train-data", "data/scan.npz", "--output-dir", "run",
                          *TINY, "--refine-iterations", "2", cwd=root)
    procs["run-tf"] = ptycho("run", "--backend", "tensorflow", "--train-data", "data/scan.npz", "--output-dir",
                             "run-tf", *TINY, cwd=root)
    procs["demo"] = ptycho("demo", "--backend", "pytorch", "--output-dir", "demo", "--nepochs", "1",
                           "--refine-iterations", "1", cwd=root)
    return root, procs


def test_every_file_and_directory_is_readable_by_others(session):
    root, _ = session
    written = sorted(root.rglob("*"))
    assert len(written) > 50
    assert [p.name for p in written if p.name.startswith(".")] == []  # no temporary left behind
    wrong = [(str(p.relative_to(root)), oct(stat.S_IMODE(p.stat().st_mode))) for p in written
             if stat.S_IMODE(p.stat().st_mode) != (0o755 if p.is_dir() else 0o644)]
    assert wrong == []
    for must in ("data/scan.npz", "tr/model/model.ckpt", "tr/checkpoints/last.ckpt", "run/reconstruction.npz",
                 "run-tf/model/manifest.json", "demo/simulated.npz", "demo/model", "demo/summary.json"):
        assert (root / must).exists(), must


def test_console_has_no_duplicates_chatter_or_progress(session):
    _, procs = session
    for proc in procs.values():
        assert_quiet(proc)
    assert "INFO ptycho.workflow: training pytorch" in procs["train"].stderr  # our own lines stay


def test_demo_and_infer_state_the_network_fit_to_the_measured_patterns(session):
    root, procs = session
    out = procs["demo"].stdout
    # the shipped model's one pass, then the fine-tuned network: each next to a flat object's misfit
    assert out.count("amplitude misfit to the measured patterns") == 2, out
    assert out.index("shipped model") < out.index("amplitude misfit to the measured patterns")
    shipped = json.loads((root / "demo" / "pretrained_metrics.json").read_text())
    assert 0 < shipped["network_misfit"] < shipped["flat_misfit"] < 1  # the network explains more than a flat object
    inferred = json.loads((root / "inf" / "summary.json").read_text())
    assert 0 < inferred["network_misfit"] and 0 < inferred["flat_misfit"] < 1
    assert f"{inferred['network_misfit']:.3g}" in procs["infer"].stdout


@pytest.mark.parametrize("args, existing", [
    (["simulate", "-o", "data/scan.npz", "--n-positions", "64"], "data/scan.npz"),
    (["train", "--backend", "pytorch", "--train-data", "data/scan.npz", "--output-dir", "tr", *TINY], "tr/model"),
    (["infer", "--model-path", "tr/model", "--test-data", "data/scan.npz", "--output-dir", "inf"],
     "inf/reconstruction.npz"),
    (["run", "--backend", "pytorch", "--train-data", "data/scan.npz", "--output-dir", "run", *TINY], "run/model"),
    (["demo", "--output-dir", "demo", "--nepochs", "1"], "demo/simulated.npz"),
])
def test_rerun_refuses_to_replace_results(session, args, existing):
    root, _ = session
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    proc = ptycho(*args, cwd=root, check=False)
    assert proc.returncode == 2
    assert f"ptycho: error: {existing}: already exists" in proc.stderr
    assert "--overwrite" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before


def test_overwrite_replaces_the_result(session):
    root, _ = session
    old = json.loads((root / "inf" / "summary.json").read_text())["provenance"]["started"]
    proc = ptycho("infer", "--model-path", "tr/model", "--test-data", "data/scan.npz", "--output-dir", "inf",
                  "--overwrite", cwd=root)
    assert_quiet(proc)
    new = json.loads((root / "inf" / "summary.json").read_text())["provenance"]
    assert new["started"] >= old and "--overwrite" in new["command"]


def test_provenance_in_every_result(session):
    root, _ = session
    digest = hashlib.sha256((root / "data" / "scan.npz").read_bytes()).hexdigest()
    summary = json.loads((root / "run" / "summary.json").read_text())["provenance"]
    with np.load(root / "run" / "reconstruction.npz", allow_pickle=False) as npz:
        in_npz = json.loads(str(npz["provenance"][()]))
    bundle = json.loads((root / "run" / "model" / "manifest.json").read_text())["provenance"]
    for record in (summary, in_npz, bundle):
        assert record["command"][:2] == ["ptycho", "run"]
        assert record["inputs"]["train_data_file"]["sha256"] == digest
        assert record["inputs"]["train_data_file"]["path"] == str((root / "data" / "scan.npz").resolve())
        assert record["config"]["training"]["nepochs"] == 1
        assert record["config"]["inference"]["refine_iterations"] == 2
        assert record["versions"]["torch"] and record["versions"]["ptycho-core"]
        assert record["device"] == "cpu" or record["device"].startswith("cuda")
        assert record["started"].endswith("Z") and record["started"] <= record["finished"]
    assert summary == in_npz
    trained = json.loads((root / "tr" / "model" / "manifest.json").read_text())["provenance"]
    assert trained["command"][:2] == ["ptycho", "train"] and "inference" not in trained["config"]
    inferred = json.loads((root / "inf" / "summary.json").read_text())["provenance"]
    assert set(inferred["inputs"]) == {"test_data_file", "model_path"}


@pytest.mark.parametrize("target", ["run", "run/model", "run/reconstruction.npz", "run/summary.json", "tr/model"])
def test_info_prints_provenance(session, target):
    root, _ = session
    proc = ptycho("info", target, cwd=root)
    assert "command:   ptycho " in proc.stdout
    assert "sha256 " in proc.stdout and "data/scan.npz" in proc.stdout
    assert "torch 2." in proc.stdout
    assert "nepochs" in proc.stdout and "started:" in proc.stdout
