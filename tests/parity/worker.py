"""Runs one backend in its own process for the parity tests (never both frameworks in one process).

    python worker.py export  BACKEND GRIDSIZE OUT.npz
    python worker.py forward BACKEND GRIDSIZE WEIGHTS.npz DATA.npz OUT.npz

GRIDSIZE is 1 or 2, or ``2w``: gridsize 2 with ``object_window`` 1.0 (whole patches merged, the
probe_big outer branch built).
    python worker.py stitch  BACKEND DATA.npz OUT.npz
    python worker.py export_bundle BACKEND BUNDLE OUT.npz
    python worker.py pretrained BACKEND NAME DATA.npz OUT.npz
"""

from __future__ import annotations

import sys

import attrs
import numpy as np

from ptycho_core import backends
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.contracts import GroupedData


def model_config(spec: str) -> ModelConfig:
    """The model of a parity case: ``'1'``, ``'2'`` (gridsize) or ``'2w'`` (gridsize 2, object_window 1.0)."""
    if spec.endswith("w"):
        return ModelConfig(N=64, gridsize=int(spec[:-1]), object_window=1.0)
    return ModelConfig(N=64, gridsize=int(spec))


def configs(backend: str, spec: str, out_dir: str = ".") -> TrainingConfig:
    return TrainingConfig(model=model_config(spec), backend=backend, nepochs=1, batch_size=16,
                          seed=3, intensity_scale_trainable=True, output_dir=out_dir, neighbor_count=4)


def load_grouped(path: str) -> GroupedData:
    with np.load(path, allow_pickle=False) as f:
        return GroupedData(X=f["X"], offsets=f["offsets"], centroids=f["centroids"], indices=f["indices"],
                           probe=f["probe"], norm_factor=float(f["norm_factor"]))


def main(argv: list[str]) -> None:
    cmd, backend = argv[0], argv[1]
    be = backends.get(backend)
    if cmd == "export":
        cfg = configs(backend, argv[2])
        model = be.build_model(cfg.model, cfg)
        np.savez(argv[3], **be.export_weights(model))
    elif cmd == "forward":
        spec, weights_path, data_path, out = argv[2], argv[3], argv[4], argv[5]
        with np.load(weights_path, allow_pickle=False) as f:
            weights = {k: f[k] for k in f.files}
        data = load_grouped(data_path)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            cfg = configs(backend, spec, tmp)
            model = be.import_weights(cfg.model, cfg, weights)
            exported = be.export_weights(model)
            fwd = be.forward(model, data, cfg)
            inferred = be.infer(model, data, InferenceConfig(model=cfg.model, backend=backend, batch_size=7,
                                                             accelerator="cpu"))
            trained = be.train(model, data, attrs.evolve(cfg, output_dir=tmp), None).model
            after = be.forward(trained, data, cfg)
        np.savez(out, patches=fwd.patches, amplitude=fwd.amplitude, loss=fwd.loss, loss_after=after.loss,
                 infer_patches=inferred.patches, infer_positions=inferred.positions,
                 **{f"w:{k}": v for k, v in exported.items()})
    elif cmd == "export_bundle":
        from ptycho_core.bundle import load_bundle

        model = load_bundle(argv[2], backend=backend)
        np.savez(argv[3], **be.export_weights(model))
    elif cmd == "pretrained":  # a shipped model, loaded by name (ptycho.pretrained), on grouped data
        from ptycho import pretrained

        model = pretrained.load(f"pretrained:{argv[2]}", backend=backend)
        assert model.backend == backend
        data = load_grouped(argv[3])
        fwd = be.forward(model, data, model.training_config)
        inferred = be.infer(model, data, InferenceConfig(model=model.model_config, backend=backend, batch_size=7,
                                                         accelerator="cpu"))
        np.savez(argv[4], patches=fwd.patches, amplitude=fwd.amplitude, loss=fwd.loss,
                 infer_patches=inferred.patches, **{f"w:{k}": v for k, v in be.export_weights(model).items()})
    elif cmd == "stitch":
        with np.load(argv[2], allow_pickle=False) as f:
            obj = be.reassemble(f["patches"], f["positions"], int(f["crop"]), tuple(f["shape"]), tuple(f["origin"]))
        np.savez(argv[3], object=obj)
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
