"""Prediction (``ptycho_infer``) and the one-batch model + physics + loss pass (``ptycho_forward``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from ptycho_backend_template.model import BACKEND_ID, check_data, physics_and_loss, predict, probe_for
from ptycho_core.contracts import ForwardOutput, InferenceResult

if TYPE_CHECKING:
    from ptycho_core.config import InferenceConfig, TrainingConfig
    from ptycho_core.contracts import GroupedData, ModelHandle


def infer_model(model: ModelHandle, data: GroupedData, config: InferenceConfig) -> InferenceResult:
    """Object patches for every group of ``data`` in batches of ``config.batch_size``.

    Returns
    -------
    InferenceResult
        ``patches`` (B*C, N, N) complex64 flattened group-major (patch ``b*C + c``), ``positions``
        (B*C, 2) = centroid + offset (x, y), ``metadata`` with the backend id, device and seconds.
    """
    mc = model.model_config
    check_data(mc, data)
    probe_n = probe_for(model.native, data, mc)
    params = model.native.weights
    t0 = time.perf_counter()
    chunks = [predict(params, data.X[lo:lo + config.batch_size], probe_n)
              for lo in range(0, data.n_groups, config.batch_size)]
    seconds = time.perf_counter() - t0
    patches = [chunk.transpose(0, 3, 1, 2).reshape(-1, mc.N, mc.N) for chunk in chunks]
    return InferenceResult(patches=np.concatenate(patches), positions=data.positions.reshape(-1, 2),
                           metadata={"backend": BACKEND_ID, "device": "cpu", "seconds": seconds})


def forward_model(model: ModelHandle, data: GroupedData, config: TrainingConfig) -> ForwardOutput:
    """Model, reference physics and reference loss for all of ``data`` as one batch.

    The probe is the model's when it holds one, else the data's normalised probe; the intensity
    scale is the model's; the loss uses ``s0`` and the term weights of ``config``.
    """
    mc = model.model_config
    check_data(mc, data)
    native = model.native
    out = physics_and_loss(native.weights, native.intensity_scale, data, probe_for(native, data, mc), mc, config)
    return ForwardOutput(patches=out["patches"], amplitude=out["amplitude"], loss=out["loss"])
