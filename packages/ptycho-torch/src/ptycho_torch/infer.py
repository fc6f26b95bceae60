"""Batched prediction of object patches (no gradients, eval mode) and the single-batch forward pass."""

from __future__ import annotations

import time

import numpy as np
import torch

from ptycho_core.config import InferenceConfig, TrainingConfig
from ptycho_core.contracts import ForwardOutput, GroupedData, InferenceResult, LazyArray, ModelHandle
from ptycho_torch.physics import centre_crop, merge
from ptycho_torch.pinn import PtychoPINN, config_to_dict, grouped_tensors, normalized_probe
from ptycho_torch.runtime import fit_threads, resolve_accelerator

BACKEND_ID = "pytorch"


def _device(accelerator: str) -> torch.device:
    return torch.device("cuda" if resolve_accelerator(accelerator) == "gpu" else "cpu")


def _channels_first(batch: np.ndarray) -> torch.Tensor:
    """A (b, N, N, C) NumPy batch read from a lazy ``X`` as a channels-first float32 tensor."""
    src = torch.from_numpy(np.asarray(batch, dtype=np.float32)).permute(0, 3, 1, 2)
    return torch.empty(src.shape, dtype=torch.float32).copy_(src)  # standard strides, like an in-memory batch


def predict_patches(module: PtychoPINN, X: torch.Tensor | LazyArray, batch_size: int,
                    device: torch.device, offsets: torch.Tensor | None = None) -> np.ndarray:
    """Network output for channels-first ``X`` in batches: (B, C, N, N) complex64 NumPy.

    ``X`` may also be a lazy (B, N, N, C) :class:`~ptycho_core.contracts.LazyArray`, read one
    batch at a time. With ``offsets`` (B, C, 2), each group's patches are merged (physics.md s5
    steps 1-2) and the result is the group object, (B, 1, N, N).
    """
    was_training = module.training
    module.eval()
    out = []
    gridsize, N, window = module.model_config.gridsize, module.model_config.N, module.model_config.window_side
    try:
        with torch.inference_mode():
            for start in range(0, X.shape[0], batch_size):
                xb = X[start:start + batch_size]
                xb = _channels_first(xb) if isinstance(X, LazyArray) else xb
                pb = module.net(xb.to(device, non_blocking=True))
                if offsets is not None:
                    ob = offsets[start:start + batch_size].to(device)
                    pb = centre_crop(merge(pb, ob, gridsize, window), N)[:, None]
                out.append(pb.cpu())
    finally:
        module.train(was_training)
    return torch.cat(out).numpy()


def infer_model(model: ModelHandle, data: GroupedData, config: InferenceConfig) -> InferenceResult:
    """What to stitch for every group of ``data`` (physics.md s6).

    Returns
    -------
    InferenceResult
        With ``model_config.stitches_group_object`` (gridsize > 1, ``object_big``): one merged
        group object per group, ``patches`` (B, N, N) at ``positions`` = the group centroids.
        Otherwise the network's patches flattened group-major (patch ``b*C + c``), (B*C, N, N)
        at centroid + offset. ``metadata`` holds the backend id, device and timing.
    """
    module: PtychoPINN = model.native
    mc = model.model_config
    data.check_fits(mc)
    device = _device(config.accelerator)
    if device.type == "cpu":
        fit_threads()
    X = data.X if data.is_lazy else grouped_tensors(data)[0]
    merged = mc.stitches_group_object
    offsets = torch.from_numpy(np.ascontiguousarray(data.offsets, dtype=np.float32)) if merged else None
    t0 = time.perf_counter()
    module.to(device)
    try:
        patches = predict_patches(module, X, config.batch_size, device, offsets)
    finally:
        module.cpu()
    seconds = time.perf_counter() - t0
    return InferenceResult(
        patches=patches.reshape(-1, mc.N, mc.N),
        positions=data.centroids if merged else data.positions.reshape(-1, 2),
        metadata={"backend": BACKEND_ID, "device": str(device), "seconds": seconds},
    )


def forward_model(model: ModelHandle, data: GroupedData, config: TrainingConfig) -> ForwardOutput:
    """Network + physics + loss for all of ``data`` as one batch (eval mode, no gradients).

    The probe is the model's when it holds one (trained, loaded or imported), otherwise
    ``reference.normalize_probe(data.probe, ...)``; the loss uses ``s0`` from ``config.nphotons``
    and the weights of ``config``.
    """
    module: PtychoPINN = model.native
    data.check_fits(model.model_config)
    eval_module = PtychoPINN(model_config=config_to_dict(model.model_config), training_config=config_to_dict(config))
    eval_module.load_state_dict(module.state_dict())
    eval_module.eval()
    probe = None if eval_module.physics.probe_is_set() else normalized_probe(data.probe, model.model_config)
    with_y = data.Y is not None and config.realspace_weight > 0
    tensors = grouped_tensors(data, with_y=with_y)
    with torch.inference_mode():
        out = eval_module.compute(tensors[0], tensors[1], tensors[2] if with_y else None, probe=probe)
    patches = out["patches"].permute(0, 2, 3, 1).numpy()
    amplitude = torch.sqrt(out["lambda"]).permute(0, 2, 3, 1).numpy()
    return ForwardOutput(patches=patches, amplitude=amplitude, loss=float(out["loss"]))
