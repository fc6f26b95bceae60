"""Weights in a core bundle (a Lightning ``model.ckpt``) and canonical weight export/import.

The checkpoint is a plain dict of tensors, strings and numbers with the configs as plain
dicts under ``hyper_parameters`` (Lightning's layout), so it loads with
``torch.load(path, weights_only=True)`` and with ``PtychoLightningModule.load_from_checkpoint``.
Canonical weights follow docs/conventions.md s6: kernels HWIO float32. Models are built and
loaded as the plain :class:`~ptycho_torch.pinn.PtychoPINN` (no Lightning import); training
wraps them (``ptycho_torch.train``).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from ptycho_core.config import ModelConfig, TrainingConfig
from ptycho_core.contracts import ModelHandle
from ptycho_core.errors import BundleError
from ptycho_torch.pinn import PtychoPINN, config_to_dict
from ptycho_torch.runtime import atomic_torch_save

BACKEND_ID = "pytorch"
WEIGHT_FILE = "model.ckpt"
# weight files other backends write, to recognise a bundle that is not ours
FOREIGN_FORMATS = {"model.keras": "tensorflow", "model.weights.h5": "tensorflow", "model.h5": "tensorflow"}


def build_handle(model_config: ModelConfig, training_config: TrainingConfig | None) -> ModelHandle:
    """A fresh, untrained model (weights seeded from ``training_config.seed`` when given)."""
    with torch.random.fork_rng(devices=[]):
        if training_config is not None:
            torch.manual_seed(training_config.seed)
        module = PtychoPINN(model_config=config_to_dict(model_config),
                            training_config=config_to_dict(training_config))
    module.eval()
    return ModelHandle(backend=BACKEND_ID, model_config=model_config, training_config=training_config,
                       native=module)


def checkpoint_dict(module: PtychoPINN, epoch: int = 0) -> dict:
    """A Lightning-compatible checkpoint dict (state_dict + plain-dict hyper_parameters)."""
    return {
        "epoch": int(epoch),
        "global_step": 0,
        "pytorch-lightning_version": metadata.version("lightning"),  # what L.__version__ says, without the import
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "hparams_name": "kwargs",
        "hyper_parameters": module.hyperparameters(),
    }


def save_model(model: ModelHandle, directory: Path) -> list[str]:
    """Write ``model.ckpt`` into ``directory``; returns ``['model.ckpt']``."""
    epoch = int(model.metadata.get("epochs", 0)) if isinstance(model.metadata, dict) else 0
    atomic_torch_save(checkpoint_dict(model.native, epoch), Path(directory) / WEIGHT_FILE)
    return [WEIGHT_FILE]


def _foreign_error(directory: Path, backend: str, files: list[str]) -> BundleError:
    what = ", ".join(files) if files else "no model.ckpt"
    return BundleError(
        f"{directory}: this bundle was written by backend {backend!r} ({what}); the pytorch backend reads "
        f"Lightning .ckpt files ({WEIGHT_FILE}); load it with backend={backend!r} or convert it with "
        f"`ptycho convert {directory} --to pytorch`"
    )


def load_model(directory: Path, manifest: dict, model_config: ModelConfig,
               training_config: TrainingConfig | None) -> ModelHandle:
    """Load ``model.ckpt`` from a verified bundle directory (``torch.load(weights_only=True)``)."""
    directory = Path(directory)
    foreign = sorted(name for name in FOREIGN_FORMATS if (directory / name).exists())
    written_by = manifest.get("backend", BACKEND_ID) if isinstance(manifest, dict) else BACKEND_ID
    if written_by != BACKEND_ID:
        raise _foreign_error(directory, str(written_by), foreign)
    path = directory / WEIGHT_FILE
    if not path.is_file():
        if foreign:
            raise _foreign_error(directory, FOREIGN_FORMATS[foreign[0]], foreign)
        raise BundleError(f"{directory}: missing {WEIGHT_FILE} (the pytorch backend's Lightning checkpoint)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or non-weights-only file
        raise BundleError(f"{path}: cannot be read as a weights-only torch checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise BundleError(f"{path}: expected a Lightning checkpoint dict with a 'state_dict' entry")
    module = PtychoPINN(model_config=config_to_dict(model_config), training_config=config_to_dict(training_config))
    try:
        module.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise BundleError(f"{path}: weights do not fit the model of config.json ({exc})") from None
    module.eval()
    return ModelHandle(backend=BACKEND_ID, model_config=model_config, training_config=training_config,
                       native=module, metadata={"epochs": int(ckpt.get("epoch", 0))})


def export_weights(model: ModelHandle) -> dict[str, np.ndarray]:
    """Canonical name -> float32 array (conventions s6); kernels HWIO."""
    module: PtychoPINN = model.native
    out: dict[str, np.ndarray] = {}
    for name, conv in module.net.canonical_convs():
        out[f"{name}.kernel"] = np.ascontiguousarray(conv.weight.detach().cpu().permute(2, 3, 1, 0).numpy(),
                                                     dtype=np.float32)
        out[f"{name}.bias"] = conv.bias.detach().cpu().numpy().astype(np.float32, copy=True)
    phys = module.physics
    out["intensity_scale"] = np.asarray(phys.intensity_scale.detach().cpu().numpy(), dtype=np.float32).reshape(())
    out["probe.real"] = phys.probe_real.detach().cpu().numpy().astype(np.float32, copy=True)
    out["probe.imag"] = phys.probe_imag.detach().cpu().numpy().astype(np.float32, copy=True)
    return out


def _take(weights: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if name not in weights:
        raise BundleError(f"weights: missing {name!r} (expected shape {shape}) for this model config")
    arr = np.asarray(weights[name])
    if arr.shape != shape:
        raise BundleError(f"weights: {name!r} has shape {arr.shape}, expected {shape} for this model config")
    return torch.from_numpy(np.array(arr, dtype=np.float32, order="C", copy=True))


def import_weights(model_config: ModelConfig, training_config: TrainingConfig | None,
                   weights: dict[str, np.ndarray]) -> ModelHandle:
    """Build a model for the configs and set every weight from canonical names (extra names are an error)."""
    handle = build_handle(model_config, training_config)
    module: PtychoPINN = handle.native
    used = set()
    with torch.no_grad():
        for name, conv in module.net.canonical_convs():
            kernel = _take(weights, f"{name}.kernel", tuple(conv.weight.permute(2, 3, 1, 0).shape))
            conv.weight.copy_(kernel.permute(3, 2, 0, 1))
            conv.bias.copy_(_take(weights, f"{name}.bias", tuple(conv.bias.shape)))
            used.update({f"{name}.kernel", f"{name}.bias"})
        phys = module.physics
        phys.intensity_scale.copy_(_take(weights, "intensity_scale", ()))
        N = model_config.N
        phys.probe_real.copy_(_take(weights, "probe.real", (N, N)))
        phys.probe_imag.copy_(_take(weights, "probe.imag", (N, N)))
        used.update({"intensity_scale", "probe.real", "probe.imag"})
    extra = sorted(set(weights) - used)
    if extra:
        raise BundleError(f"weights: unexpected names {extra} for this model config "
                          f"(N={model_config.N}, gridsize={model_config.gridsize}, "
                          f"pad_object={model_config.pad_object}, probe_big={model_config.probe_big}, "
                          f"object_window={model_config.object_window}, "
                          f"probe_big branch built: {model_config.uses_probe_big})")
    return handle
