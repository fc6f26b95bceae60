"""Prediction (``ptycho_infer``) and the one-batch model + physics + loss pass (``ptycho_forward``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from ptycho_backend_template.model import BACKEND_ID, physics_and_loss, predict, probe_for
from ptycho_core import reference
from ptycho_core.contracts import ForwardOutput, InferenceResult

if TYPE_CHECKING:
    from ptycho_core.config import InferenceConfig, TrainingConfig
    from ptycho_core.contracts import GroupedData, ModelHandle


def infer_model(model: ModelHandle, data: GroupedData, config: InferenceConfig) -> InferenceResult:
    """What to stitch for every group of ``data``, in batches of ``config.batch_size`` (physics.md s6).

    Returns
    -------
    InferenceResult
        With ``model_config.stitches_group_object`` (gridsize > 1, ``object_big``): each group's
        merged object (:func:`ptycho_core.reference.merge_patches`), (B, N, N) at the group
        centroids. Otherwise the patches flattened group-major (patch ``b*C + c``), (B*C, N, N)
        at centroid + offset. ``metadata`` holds the backend id, device and seconds.
    """
    mc = model.model_config
    data.check_fits(mc)
    probe_n = probe_for(model.native, data, mc)
    params = model.native.weights
    merged = mc.stitches_group_object
    t0 = time.perf_counter()
    chunks = []
    for lo in range(0, data.n_groups, config.batch_size):
        chunk = predict(params, data.X[lo:lo + config.batch_size], probe_n)  # (b, N, N, C)
        if merged:
            chunk = reference.merge_patches(chunk, data.offsets[lo:lo + config.batch_size], mc.gridsize)[1][..., None]
        chunks.append(chunk.transpose(0, 3, 1, 2).reshape(-1, mc.N, mc.N))
    seconds = time.perf_counter() - t0
    return InferenceResult(patches=np.concatenate(chunks),
                           positions=data.centroids if merged else data.positions.reshape(-1, 2),
                           metadata={"backend": BACKEND_ID, "device": "cpu", "seconds": seconds})


def forward_model(model: ModelHandle, data: GroupedData, config: TrainingConfig) -> ForwardOutput:
    """Model, reference physics and reference loss for all of ``data`` as one batch.

    The probe is the model's when it holds one, else the data's normalised probe; the intensity
    scale is the model's; the loss uses ``s0`` and the term weights of ``config``.
    """
    mc = model.model_config
    data.check_fits(mc)
    native = model.native
    out = physics_and_loss(native.weights, native.intensity_scale, data, probe_for(native, data, mc), mc, config)
    return ForwardOutput(patches=out["patches"], amplitude=out["amplitude"], loss=out["loss"])
