"""DDP smoke tests on the gloo backend, tiny model, 1 epoch, run in subprocesses.

Single node: Lightning's ``ddp`` strategy re-launches the running script for rank 1, so the
training runs in a small script file (not inside pytest's own process). Multi-node: two
processes started by the test, each posing as one node of a 2-node job (``num_nodes=2``,
``devices=1``) through the environment a cluster launcher sets (MASTER_ADDR, MASTER_PORT,
WORLD_SIZE, NODE_RANK, LOCAL_RANK), as torchrun or SLURM would on two machines.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    from torch_testdata import make_grouped, tiny_training_config
    from pathlib import Path
    from ptycho_torch.plugin import TorchBackend

    plugin = TorchBackend.as_plugin()
    from ptycho_torch.train import train_model

    out = Path({out!r})
    data = make_grouped(N=64, gridsize=1, n_groups=16)
    config = tiny_training_config(out, nepochs=1, batch_size=4, strategy="ddp", devices={devices},
                                  num_nodes={num_nodes})
    model = plugin.ptycho_build_model(config.model, config)
    result = train_model(model, data, config, enable_progress_bar=False)
    import torch.distributed as dist
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    (out / f"rank{{rank}}.json").write_text(json.dumps(
        {{"loss": result.history["loss"], "epochs": result.epochs, "world": world,
          "backend": dist.get_backend() if world > 1 else None,
          "weights": float(sum(p.detach().double().sum() for p in result.model.native.parameters()))}}))
    """
)


needs_gloo = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")
CLUSTER_KEYS = ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "SLURM_JOB_ID", "SLURM_NTASKS")


def _clean_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    for key in CLUSTER_KEYS:
        env.pop(key, None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_gloo
def test_ddp_two_cpu_processes_gloo(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path), devices=2, num_nodes=1))
    env = _clean_env()
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = sorted(p.name for p in tmp_path.glob("rank*.json"))
    assert ranks == ["rank0.json", "rank1.json"], proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    assert r0["world"] == 2 and r0["backend"] == "gloo"
    assert r0["epochs"] == 1 and len(r0["loss"]) == 1
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


@needs_gloo
def test_ddp_two_nodes_one_process_each(tmp_path):
    script = tmp_path / "ddp_nodes.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path), devices=1, num_nodes=2))
    port = str(_free_port())
    procs = []
    for node in (0, 1):
        env = dict(_clean_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2", NODE_RANK=str(node),
                   LOCAL_RANK="0")
        procs.append(subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=240)[0])
    finally:
        for proc in procs:
            proc.kill()
    for node, (proc, out) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"node {node}:\n{out[-3000:]}"
    ranks = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("rank*.json")}
    assert sorted(ranks) == ["rank0.json", "rank1.json"], outputs
    assert all(r["world"] == 2 and r["backend"] == "gloo" and r["epochs"] == 1 for r in ranks.values())
    # DDP keeps the replicas identical: both nodes end with the same weights
    assert ranks["rank0.json"]["weights"] == pytest.approx(ranks["rank1.json"]["weights"], rel=1e-6)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
