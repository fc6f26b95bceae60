"""The CPU fast path: channels-last activations, the upsampling gradient, fused Adam, thread count,
and the device selection of benchmarks/run.py (its CUDA branch is the same code with another device)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from ptycho_core.errors import ConfigError
from ptycho_torch import runtime
from ptycho_torch.model import PtychoNet, to_channels_last, upsample2x
from ptycho_torch.pinn import adam

RUN_PY = Path(__file__).resolve().parents[3] / "benchmarks" / "run.py"


def _pair(gridsize: int, **kw) -> tuple[PtychoNet, PtychoNet]:
    nets = []
    for layout in ("contiguous", "channels_last"):
        torch.manual_seed(0)
        nets.append(PtychoNet(N=64, gridsize=gridsize, n_filters_scale=1, layout=layout, **kw))
    return nets[0], nets[1]


@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("probe_big", [True, False])
def test_channels_last_layout_gives_the_contiguous_layouts_output_and_gradients(gridsize, probe_big):
    plain, fast = _pair(gridsize, probe_big=probe_big, object_big=False)
    X = torch.rand(3, gridsize**2, 64, 64, generator=torch.Generator().manual_seed(1))
    outs = []
    for net in (plain, fast):
        y = net(X)
        torch.view_as_real(y).square().mean().backward()
        outs.append(y.detach())
        assert y.dtype == torch.complex64 and y.shape == X.shape and y.is_contiguous()
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    for (name, p), (_, q) in zip(plain.named_parameters(), fast.named_parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
        assert q.is_contiguous(), name  # parameters (and so state dicts) keep the standard order


def test_single_channel_input_runs_the_network_channels_last():
    x = torch.rand(2, 1, 8, 8)
    y = to_channels_last(x)
    assert torch.equal(y, x) and y.data_ptr() == x.data_ptr()
    conv = torch.nn.Conv2d(1, 4, 3, padding=1)
    assert conv(y).is_contiguous(memory_format=torch.channels_last)
    assert not conv(y).is_contiguous()  # what x.contiguous(memory_format=channels_last) alone would not give
    assert not conv(x.contiguous(memory_format=torch.channels_last)).stride(1) == 1


@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample2x_matches_interpolate_in_value_and_gradient(channels_last):
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    if channels_last:
        x = to_channels_last(x)
    x.requires_grad_()
    y = upsample2x(x)
    ref_in = x.detach().clone().requires_grad_()
    ref = torch.nn.functional.interpolate(ref_in, scale_factor=2, mode="nearest")
    assert torch.equal(y, ref)
    assert (y.stride(1) == 1) == channels_last
    g = torch.rand_like(ref)
    (y * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(x.grad, ref_in.grad, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(upsample2x, (x.detach().clone().requires_grad_(),))


def test_unknown_layout_is_a_config_error():
    with pytest.raises(ConfigError, match="layout"):
        PtychoNet(N=64, layout="nhwc")
    net = PtychoNet(N=64, n_filters_scale=1)
    with pytest.raises(ConfigError, match="layout"):
        net.layout = "blocked"


def test_fused_adam_takes_the_same_steps_as_the_per_tensor_loop():
    torch.manual_seed(0)
    a = torch.nn.Linear(7, 3)
    b = torch.nn.Linear(7, 3)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = adam(a.parameters(), 1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    assert opt_a.defaults["fused"] and not opt_b.defaults.get("fused")
    x = torch.rand(5, 7, generator=torch.Generator().manual_seed(2))
    for _ in range(5):
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            net(x).square().sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert set(opt_a.state_dict()["state"][0]) == set(opt_b.state_dict()["state"][0])


def test_cgroup_quota_caps_the_cpu_count(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert runtime.available_cpus(tmp_path) == 4  # no cgroup files: the affinity set
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert runtime.available_cpus(tmp_path) == 2  # 1.5 CPUs -> 2 threads
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert runtime.available_cpus(tmp_path) == 4
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert runtime.available_cpus(tmp_path) == 1


def test_fit_threads_lowers_but_never_raises_the_thread_count(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0}, raising=False)
        assert runtime.fit_threads(tmp_path) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
        assert runtime.fit_threads(tmp_path) == 1  # a lower count is kept
    finally:
        torch.set_num_threads(before)


def _load_run_py():
    if not RUN_PY.is_file():
        pytest.skip("benchmarks/run.py is not in this checkout")
    spec = importlib.util.spec_from_file_location("bench_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_device_selection():
    run = _load_run_py()
    assert run.resolve_device("auto", "pytorch") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert run.resolve_device("cpu", "pytorch") == "cpu"
    assert run.resolve_device("auto", "reference") == "cpu"
    with pytest.raises(ValueError, match="device"):
        run.resolve_device("gpu0", "pytorch")
    assert run._accelerator("cuda") == "gpu" and run._accelerator("cpu") == "cpu"
    assert run._tf_device("cuda") == "/GPU:0" and run._tf_device("cpu") == "/CPU:0"


def test_benchmark_inference_worker_on_the_selected_device():
    run = _load_run_py()
    res = run.worker_infer_pytorch(1, groups=4, repeats=1, nfs=1, device="cpu")
    assert res["device"] == "cpu" == res["detail"]["device"]
    assert res["detail"]["max_rel_diff_fast_vs_current"] < 1e-5
    assert res["detail"]["max_rel_diff_backend_vs_bare"] < 1e-5
    assert all(math.isfinite(res[k]) and res[k] > 0 for k in ("figure", "bound", "bare_current"))


def test_benchmark_training_worker_on_the_selected_device():
    run = _load_run_py()
    res = run.worker_train_pytorch(1, groups=4, epochs=2, nfs=1, device="cpu")
    assert res["device"] == "cpu"
    assert len(res["detail"]["backend_epoch_s"]) == 2
    assert len(res["detail"]["bare_fast_epoch_s"]) == len(res["detail"]["bare_current_epoch_s"]) == 3
    assert all(math.isfinite(res[k]) and res[k] > 0 for k in ("figure", "bound", "bare_current"))
