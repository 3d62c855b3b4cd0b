"""bench/train_step.py's measurements on tiny inputs: the per-layer table gives every layer both libraries'
forward and backward time and leaves the net and scratchnet's Functions as it found them; PyTorch's two
layouts train alike; the repeats' summary is the median of each figure; each side runs alone in a child."""
import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import scratchnet as sn
from scratchnet import nn


def load_bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "train_step.py"
    spec = importlib.util.spec_from_file_location("bench_train_step", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_net():
    rng = np.random.default_rng(0)
    return nn.Sequential(("conv", nn.Conv2d(3, 4, 3, padding=1, bias=False, rng=rng)), ("bn", nn.BatchNorm2d(4)),
                         ("relu", nn.ReLU()), ("pool", nn.MaxPool2d(2, 2)), ("gap", nn.GlobalAvgPool2d()),
                         ("fc", nn.Linear(4, 10, rng=rng)))


def test_per_layer_table_has_every_layer_and_restores_what_it_wrapped():
    bench = load_bench()
    net = tiny_net()
    before = {cls: (cls.forward, cls.backward) for cls in sn.Function.__subclasses__()}
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32)
    twin = bench.sgd_step_torch(net, x, np.array([1, 7]))
    rows = bench.profile_layers(net, x, np.array([1, 7]), steps=2, twin=twin)
    assert [r["layer"] for r in rows] == ["conv", "bn+relu", "pool", "gap", "fc"]  # one row per fused group
    assert rows[1]["op"] == "BatchNorm2d+ReLU (fused)"
    for r in rows:
        assert r["scratchnet_fwd_ms"] > 0 and r["torch_fwd_ms"] > 0, r
        assert r["scratchnet_bwd_ms"] > 0 and r["torch_bwd_ms"] > 0, r  # every layer here has a backward
    assert rows[0]["op"] == "Conv2d 3->4 3x3 on 8x8" and rows[0]["conv_gflops"] > 0
    assert all("forward" not in layer.__dict__ for layer in net.layers)
    assert {cls: (cls.forward, cls.backward) for cls in sn.Function.__subclasses__()} == before


def test_op_timer_books_each_op_to_its_class_and_to_the_layer_that_made_it():
    bench = load_bench()
    net = tiny_net()
    step = bench.sgd_step_scratchnet(net, np.ones((2, 8, 8, 3), np.float32), np.array([0, 1]))
    with bench.OpTimer(net=net) as timer:
        step()
    # the fused batch norm + ReLU is booked to the batch norm layer; the loss belongs to no layer
    assert set(timer.layer_fwd) == {"conv", "bn", "pool", "gap", "fc", "loss"}
    assert set(timer.layer_bwd) == set(timer.layer_fwd)
    assert {"Conv2d fwd", "Conv2d bwd", "BatchNormAct fwd", "CrossEntropy bwd"} <= set(timer.times)
    for per_layer, direction in ((timer.layer_fwd, "fwd"), (timer.layer_bwd, "bwd")):  # one booking, two views
        total = sum(v for k, v in timer.times.items() if k.endswith(direction))
        assert abs(sum(per_layer.values()) - total) < 1e-9


def test_per_layer_table_of_a_net_without_a_pytorch_twin_has_scratchnet_only():
    bench = load_bench()
    rng = np.random.default_rng(0)
    net = nn.Sequential(("conv", nn.Conv2d(3, 4, 3, rng=rng)), ("gelu", nn.GELU()), ("gap", nn.GlobalAvgPool2d()),
                        ("fc", nn.Linear(4, 10, rng=rng)))
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32)
    rows = bench.profile_layers(net, x, np.array([1, 7]), steps=1)
    assert [r["layer"] for r in rows] == ["conv", "gelu", "gap", "fc"]
    assert all("torch_fwd_ms" not in r and r["scratchnet_bwd_ms"] > 0 for r in rows)
    assert rows[0]["op"] == "Conv2d 3->4 3x3 on 6x6"


def test_layer_timing_waits_for_the_device_before_every_clock_reading():
    """On a GPU the kernels run asynchronously: every clock reading on both sides must follow a sync, else a
    layer's kernels land on a later layer. A counting sync stands in for the device's here."""
    bench = load_bench()
    net = tiny_net()
    x, y = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32), np.array([1, 7])
    twin = bench.sgd_step_torch(net, x, y)
    calls = []
    fwd, bwd = bench.torch_layer_times(twin.model, twin, sync=lambda: calls.append(1))
    n_layers = len(net.layers)
    assert set(fwd) == set(bwd) == set(range(n_layers))
    assert len(calls) == 2 * n_layers + n_layers + 1  # before/after each forward, each backward start, the end
    op_syncs = []
    with bench.OpTimer(sync=lambda: op_syncs.append(1)):  # scratchnet's side: a sync before and after each op
        bench.sgd_step_scratchnet(tiny_net(), x, y)()
    assert len(op_syncs) > 0
    calls.clear()
    bench.profile_layers(net, x, y, steps=1, twin=twin, sync=lambda: calls.append(1))
    assert len(calls) == len(op_syncs) + 3 * n_layers + 1  # the untimed steps sync nothing


def test_channels_last_twin_reads_the_numpy_batch_in_place_and_trains_as_the_nchw_one():
    """channels_last: the input is the NHWC batch itself (no copy), the model's weights NHWC-strided; one step
    of either layout gives the same weights (oneDNN's kernels differ, hence the tolerance)."""
    bench = load_bench()
    net = tiny_net()
    x, y = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32), np.array([1, 7])
    nchw, cl = bench.sgd_step_torch(net, x, y), bench.sgd_step_torch(net, x, y, channels_last=True)
    assert cl.input.data_ptr() == x.ctypes.data and cl.input.is_contiguous(memory_format=torch.channels_last)
    assert nchw.input.is_contiguous() and nchw.input.data_ptr() != x.ctypes.data
    assert cl.model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    nchw()
    cl()
    for a, b in zip(nchw.model.parameters(), cl.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_repeats_summary_takes_the_median_of_each_figure_against_the_faster_layout_of_each_run():
    bench = load_bench()
    runs = [{"scratchnet": 100.0, "torch_channels_last": 80.0, "torch_nchw": 120.0},
            {"scratchnet": 90.0, "torch_channels_last": 100.0, "torch_nchw": 95.0},   # NCHW won this one
            {"scratchnet": 110.0, "torch_channels_last": 85.0, "torch_nchw": 130.0}]
    s = bench.summarise_repeats(runs)
    assert s["scratchnet_ms"] == 100.0 and s["torch_channels_last_ms"] == 85.0 and s["torch_nchw_ms"] == 120.0
    assert s["torch_layout"] == "channels_last"
    assert s["torch_ms"] == 85.0                        # median of the per-run best: 80, 95, 85
    assert s["ratio"] == 1.25                           # median of 100/80, 90/95, 110/85 (not 100/85)
    assert [r["ratio"] for r in s["repeats"]] == [1.25, round(90 / 95, 3), round(110 / 85, 3)]
    assert set(s["repeats"][0]) == {"scratchnet_ms", "torch_channels_last_ms", "torch_nchw_ms", "ratio"}
    assert "scratchnet_im2col_ms" not in s and "ratio_im2col" not in s
    with_im2col = bench.summarise_repeats([{**r, "scratchnet_im2col": 2 * r["scratchnet"]} for r in runs])
    assert with_im2col["scratchnet_im2col_ms"] == 200.0 and with_im2col["ratio_im2col"] == 2.5
    assert with_im2col["repeats"][1]["scratchnet_im2col_ms"] == 180.0


def test_results_file_is_per_cpu_family_and_holds_machine_run_and_rows(tmp_path):
    import json
    bench = load_bench()
    assert bench.results_path("amd-zen4", tuned=True).name == "train_step_amd-zen4.json"
    assert bench.results_path("intel-avx512", tuned=False).name == "train_step_intel-avx512_untuned.json"
    out = tmp_path / "r" / "t.json"
    bench.write_results(out, {"cpu_family": "x"}, {"repeats": 3}, [{"net": "small"}])
    assert json.loads(out.read_text()) == {"machine": {"cpu_family": "x"}, "run": {"repeats": 3},
                                           "rows": [{"net": "small"}]}


@pytest.mark.parametrize("side", ["scratchnet", "torch"])
def test_each_side_runs_alone_in_a_child_that_reports_its_step_time_and_peak_memory(side):
    bench = load_bench()
    args = argparse.Namespace(threads=1, seed=0, no_tune=False)
    got = bench.run_alone(side, "small", 1, args, "channels_last")
    assert got["side"] == side and got["net"] == "small" and got["ms"] > 0
    if bench.rss_mb() is not None:  # Linux: the batch-128 step's activations alone are tens of MB
        assert got["rss_before_mb"] > 0 and 10 < got["peak_step_mb"] < 4096


def test_per_layer_table_without_fusion_has_one_row_per_layer(monkeypatch):
    bench = load_bench()
    monkeypatch.setattr(sn.nn, "FUSE_BN_ACTIVATION", False)
    monkeypatch.setattr(sn.nn, "COMMUTE_RELU_MAXPOOL", False)
    net = tiny_net()
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32)
    rows = bench.profile_layers(net, x, np.array([1, 7]), steps=1)
    assert [r["layer"] for r in rows] == ["conv", "bn", "relu", "pool", "gap", "fc"]
    assert all(r["scratchnet_fwd_ms"] > 0 for r in rows)
