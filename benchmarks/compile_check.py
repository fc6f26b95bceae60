"""Does compiling the training step help on this machine? ``torch.compile`` and XLA (``jit_compile``).

For each framework, one training step of the backend's own network (forward, trivial loss,
backward, Adam; batch ``--batch`` groups, N=64) is timed as it runs in the backend (eager
torch; a ``tf.function`` without XLA) and compiled (``torch.compile(net)`` with the default
inductor backend; ``tf.function(jit_compile=True)``). Printed per variant: the first call
(tracing and compiling included) and the median of ``--repeats`` later steps. Each framework
runs in its own subprocess.

Example: ``python benchmarks/compile_check.py --gridsize 1 --nfs 1 --repeats 10``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

N = 64


def _time_steps(step, repeats: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def worker_torch(gridsize: int, nfs: int, batch: int, repeats: int) -> dict:
    import torch

    from ptycho_torch.model import PtychoNet

    out = {}
    X = torch.rand(batch, gridsize * gridsize, N, N, generator=torch.Generator().manual_seed(0))
    for name in ("eager", "torch.compile"):
        torch.manual_seed(0)
        net = PtychoNet(N=N, gridsize=gridsize, n_filters_scale=nfs)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        run = torch.compile(net) if name == "torch.compile" else net

        def step(run=run, opt=opt) -> None:
            opt.zero_grad()
            torch.view_as_real(run(X)).mean().backward()
            opt.step()

        out[name] = _time_steps(step, repeats)
    return out


def worker_tf(gridsize: int, nfs: int, batch: int, repeats: int) -> dict:
    import numpy as np

    from ptycho_core.config import ModelConfig
    from ptycho_tf._env import keras, tf
    from ptycho_tf.model import build_network

    out = {}
    X = tf.constant(np.random.default_rng(0).random((batch, N, N, gridsize * gridsize), dtype=np.float32))
    for name, jit in (("tf.function", False), ("tf.function(jit_compile=True)", True)):
        net = build_network(ModelConfig(N=N, gridsize=gridsize, n_filters_scale=nfs), seed=0)
        opt = keras.optimizers.Adam(learning_rate=1e-3)
        opt.build(net.trainable_variables)  # no variable creation inside the traced step

        @tf.function(jit_compile=jit)
        def train_step(xb, net=net, opt=opt):
            with tf.GradientTape() as tape:
                amp, phase = net(xb, training=True)
                loss = tf.reduce_mean(amp) + tf.reduce_mean(phase)
            opt.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))
            return loss

        out[name] = _time_steps(lambda f=train_step: f(X).numpy(), repeats)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gridsize", type=int, default=1)
    p.add_argument("--nfs", type=int, default=1, help="n_filters_scale")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--framework", choices=("pytorch", "tensorflow"), action="append",
                   help="only these (default: both)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    args = (a.gridsize, a.nfs, a.batch, a.repeats)
    if a.worker:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        print(json.dumps((worker_torch if a.worker == "pytorch" else worker_tf)(*args)))
        return 0
    print(f"gridsize {a.gridsize}, n_filters_scale {a.nfs}, batch {a.batch} groups, N={N}, "
          f"median of {a.repeats} steps, load {os.getloadavg()[0]:.1f}")
    print(f"{'variant':32s} {'first step (s)':>15s} {'step (ms)':>10s} {'vs uncompiled':>14s}")
    for fw in a.framework or ["pytorch", "tensorflow"]:
        cmd = [sys.executable, __file__, "--worker", fw, "--gridsize", str(a.gridsize), "--nfs", str(a.nfs),
               "--batch", str(a.batch), "--repeats", str(a.repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{fw}: failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        base = next(iter(res.values()))[1]
        for name, (first, step) in res.items():
            print(f"{name:32s} {first:15.1f} {step * 1e3:10.1f} {step / base:14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
