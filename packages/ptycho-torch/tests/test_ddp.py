"""DDP smoke test: 2 CPU processes on the gloo backend, tiny model, 1 epoch, run in a subprocess.

Lightning's ``ddp`` strategy re-launches the running script for rank 1, so the training runs
in a small script file (not inside pytest's own process).
"""

from __future__ import annotations

import json
import os
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
    from ptycho_torch import plugin
    from ptycho_torch.train import train_model

    out = Path({out!r})
    data = make_grouped(N=64, gridsize=1, n_groups=16)
    config = tiny_training_config(out, nepochs=1, batch_size=4, strategy="ddp", devices=2)
    model = plugin.ptycho_build_model(config.model, config)
    result = train_model(model, data, config, enable_progress_bar=False)
    import torch.distributed as dist
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    (out / f"rank{{rank}}.json").write_text(json.dumps(
        {{"loss": result.history["loss"], "epochs": result.epochs, "world": world,
          "backend": dist.get_backend() if world > 1 else None}}))
    """
)


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_ddp_two_cpu_processes_gloo(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = sorted(p.name for p in tmp_path.glob("rank*.json"))
    assert ranks == ["rank0.json", "rank1.json"], proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    assert r0["world"] == 2 and r0["backend"] == "gloo"
    assert r0["epochs"] == 1 and len(r0["loss"]) == 1
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
