"""Where a TensorFlow training step goes: network alone vs network + physics + Poisson loss.

Times (ms per step, mean of 10 after one warm-up call, each a ``tf.function``) for one batch of
``--batch`` groups of random amplitudes at N = 64:

- ``net``: forward + backward + Adam through the network with a trivial loss (the bound that
  ``benchmarks/run.py`` uses for its training rows);
- ``full``: the same with the physics layer and the Poisson loss (what ``model.fit`` runs per
  step, without Keras' own per-step machinery);
- ``physics``: network forward (no gradient) + physics forward and backward;
- ``net forward``: the network forward alone.

Example: ``python benchmarks/profile_tf_step.py --gridsize 2 --nfs 1 --batch 16``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gridsize", type=int, default=2)
    p.add_argument("--nfs", type=int, default=1, help="n_filters_scale")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ptycho_core.config import ModelConfig, TrainingConfig
    from ptycho_tf._env import keras, tf
    from ptycho_tf.module import PtychoModel

    mc = ModelConfig(N=64, gridsize=a.gridsize, n_filters_scale=a.nfs)
    model = PtychoModel(mc, TrainingConfig(model=mc, backend="tensorflow"), seed=0)
    rng = np.random.default_rng(0)
    C = mc.gridsize**2
    X = tf.constant(rng.random((a.batch, 64, 64, C)).astype(np.float32) + 0.1)
    offsets = tf.constant(rng.uniform(-4, 4, (a.batch, C, 2)))
    r, c = np.indices((64, 64)) - 32
    model.physics.set_probe(np.exp(-(r**2 + c**2) / 200.0).astype(np.complex64))
    opt = keras.optimizers.Adam(1e-3)
    weights = model.net.trainable_variables

    @tf.function
    def net(X):
        with tf.GradientTape() as tape:
            amp, phase = model.net(X, training=True)
            loss = tf.reduce_mean(amp) + tf.reduce_mean(phase)
        opt.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    @tf.function
    def full(X, offsets):
        with tf.GradientTape() as tape:
            loss = model.loss_terms(X, model((X, offsets), training=True))["loss"]
        opt.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    @tf.function
    def physics(X, offsets):
        amp, phase = model.net(X, training=False)
        with tf.GradientTape() as tape:
            tape.watch(amp)
            tape.watch(phase)
            lam, _ = model.physics(tf.complex(amp * tf.cos(phase), amp * tf.sin(phase)), offsets)
            loss = tf.reduce_mean(lam)
        return tape.gradient(loss, [amp, phase])

    @tf.function
    def net_forward(X):
        return model.net(X, training=False)

    def ms(f, *args) -> float:
        f(*args)
        t0 = time.perf_counter()
        for _ in range(a.repeats):
            f(*args)
        return (time.perf_counter() - t0) / a.repeats * 1e3

    rows = [("net", ms(net, X)), ("full", ms(full, X, offsets)), ("physics", ms(physics, X, offsets)),
            ("net forward", ms(net_forward, X))]
    print(f"gridsize {a.gridsize}, n_filters_scale {a.nfs}, batch {a.batch} groups, N=64, "
          f"load {os.getloadavg()[0]:.1f}")
    for name, value in rows:
        print(f"{name:12s} {value:8.1f} ms/step")
    print(f"full / net = {rows[1][1] / rows[0][1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
