"""bench/train_step.py's per-layer table on a tiny net: every layer gets both libraries' forward and
backward time, and the timer leaves the net and scratchnet's Functions as they found them."""
import importlib.util
from pathlib import Path

import numpy as np

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
    assert [r["layer"] for r in rows] == ["conv", "bn", "relu", "pool", "gap", "fc"]
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
    assert set(timer.layer_fwd) == {"conv", "bn", "relu", "pool", "gap", "fc", "loss"}  # the loss: no layer
    assert set(timer.layer_bwd) == set(timer.layer_fwd)
    assert {"Conv2d fwd", "Conv2d bwd", "BatchNorm fwd", "CrossEntropy bwd"} <= set(timer.times)
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
