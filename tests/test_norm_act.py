"""The fused batch norm + activation op (scratchnet/kernels/norm_act.py): against its reference, the two
unfused layers, PyTorch in float64 and finite differences; Sequential's fusion switch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import scratchnet as sn
from scratchnet import functional as F
from scratchnet import parallel
from scratchnet.kernels import activation as act_k
from scratchnet.kernels import norm as norm_k
from scratchnet.kernels import norm_act as norm_act_k
from tests.gradcheck import compare_with_torch, finite_difference_check, nchw_to_nhwc, nhwc_to_nchw

TORCH_ACT = {"relu": TF.relu, "gelu": lambda z: TF.gelu(z, approximate="tanh")}
UNFUSED = {"relu": (act_k.relu_forward, act_k.relu_backward), "gelu": (act_k.gelu_forward, act_k.gelu_backward)}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def blocks(monkeypatch):
    """Many small blocks shared out between 3 threads, so every pass is cut up as on a big batch."""
    saved = parallel.num_threads()
    parallel.set_num_threads(3)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(act_k, "CACHE_BLOCK_BYTES", 200)
    for name in ("FORWARD_BLOCK_BYTES", "SUMS_BLOCK_BYTES", "GRAD_BLOCK_BYTES"):
        monkeypatch.setattr(norm_act_k, name, 200)
    yield
    parallel.set_num_threads(saved)


def _inputs(rng, shape, dtype=np.float64):
    c = shape[-1]
    x = (rng.standard_normal(shape) * 2 + 3.0 * rng.standard_normal(c)).astype(dtype)  # channel means far from 0
    return x, rng.uniform(0.5, 2, c).astype(dtype), rng.standard_normal(c).astype(dtype)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 5, 3, 7), (1, 3, 4, 5), (6, 5)])
def test_fused_equals_reference(activation, training, shape, rng, blocks):
    x, g, b = _inputs(rng, shape)
    dout = rng.standard_normal(shape)
    stats, ref_stats = [np.full(shape[-1], 0.3), np.full(shape[-1], 2.0)], [np.full(shape[-1], 0.3), np.full(shape[-1], 2.0)]
    out, cache = norm_act_k.batchnorm_act_forward(x, g, b, *stats, training, 0.1, 1e-5, activation)
    ref, ref_cache = norm_act_k.batchnorm_act_forward_reference(x, g, b, *ref_stats, training, 0.1, 1e-5, activation)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
    for a, r in zip(stats, ref_stats):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)
    fast = norm_act_k.batchnorm_act_backward(dout, cache)
    slow = norm_act_k.batchnorm_act_backward_reference(dout, ref_cache)
    for f, s in zip(fast, slow):
        np.testing.assert_allclose(f, s, rtol=1e-9, atol=1e-9)
    dx, dgamma, dbeta = norm_act_k.batchnorm_act_backward(dout, cache, need_dx=False)
    assert dx is None
    np.testing.assert_allclose(dgamma, fast[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("training", [True, False])
def test_fused_float32_against_the_two_layers(activation, training, rng, blocks):
    """Forward bit for bit as batch norm then the activation; backward within float32 rounding (its sums
    are added in other blocks), and float32 throughout."""
    x, g, b = _inputs(rng, (6, 5, 7, 9), np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    stats, ref_stats = [np.zeros(9, np.float32), np.ones(9, np.float32)], [np.zeros(9, np.float32), np.ones(9, np.float32)]
    out, cache = norm_act_k.batchnorm_act_forward(x, g, b, *stats, training, 0.1, 1e-5, activation)
    act_fwd, act_bwd = UNFUSED[activation]
    z, bn_cache = norm_k.batchnorm_forward(x, g, b, *ref_stats, training, 0.1, 1e-5)
    ref, act_cache = act_fwd(z)
    np.testing.assert_array_equal(out, ref)
    for a, r in zip(stats, ref_stats):
        np.testing.assert_array_equal(a, r)
    fused = norm_act_k.batchnorm_act_backward(dout, cache)
    unfused = norm_k.batchnorm_backward(act_bwd(dout, act_cache), bn_cache)
    for f, u in zip(fused, unfused):
        assert f.dtype == np.float32
        scale = float(np.abs(u).max())
        np.testing.assert_allclose(f, u, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (1, 3, 2, 4), (5, 3)])
def test_fused_against_torch_and_finite_differences(activation, training, shape, rng):
    x, gamma, beta = _inputs(rng, shape)
    c = shape[-1]
    rm0, rv0 = rng.standard_normal(c), rng.uniform(0.5, 2, c)

    def sn_fn(x, g, b):
        return F.batch_norm_act(x, g, b, rm0.copy(), rv0.copy(), training, 0.1, 1e-5, activation)

    def t_fn(x, g, b):
        layout = (nhwc_to_nchw, nchw_to_nhwc) if x.dim() == 4 else (lambda t: t, lambda t: t)
        z = TF.batch_norm(layout[0](x), torch.tensor(rm0), torch.tensor(rv0), g, b, training, 0.1, 1e-5)
        return layout[1](TORCH_ACT[activation](z))

    compare_with_torch(sn_fn, t_fn, [x, gamma, beta], rng)
    finite_difference_check(sn_fn, [x, gamma, beta], rng)


def test_bad_activation_is_named(rng):
    x, g, b = _inputs(rng, (2, 3))
    with pytest.raises(ValueError, match="activation must be one of"):
        norm_act_k.batchnorm_act_forward(x, g, b, np.zeros(3), np.ones(3), True, activation="tanh")


def _net(act, seed=0):
    r = np.random.default_rng(seed)
    with sn.backend.default_dtype_as(np.float64):
        conv = sn.nn.Conv2d(3, 4, 3, padding=1, rng=r)
        return sn.nn.Sequential(("conv", conv), ("bn", sn.nn.BatchNorm2d(4, momentum=0.3)), ("act", act()),
                                ("bn_last", sn.nn.BatchNorm2d(4)))  # not followed by an activation: not fused


@pytest.mark.parametrize("act", [sn.nn.ReLU, sn.nn.GELU])
def test_sequential_fuses_only_when_asked_and_gives_the_same_result(act, rng, monkeypatch):
    x = rng.standard_normal((3, 5, 5, 3))
    dout = rng.standard_normal((3, 5, 5, 4))
    results = {}
    for fuse in (True, False):
        monkeypatch.setattr(sn.nn, "FUSE_BN_ACTIVATION", fuse)
        net = _net(act)
        calls = []
        monkeypatch.setattr(F.BatchNormAct, "forward", _spy(F.BatchNormAct.forward, calls))
        xin = sn.Tensor(x.copy(), requires_grad=True)
        out = net(xin)
        out.backward(dout)
        assert len(calls) == (1 if fuse else 0)
        results[fuse] = (out.data, xin.grad, net.conv.weight.grad, net.bn.bias.grad, net.bn.running_mean.copy(),
                         net.bn.running_var.copy())
        monkeypatch.undo()
    for a, b in zip(results[True], results[False]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pool", [(2, 2), (3, 2)])
def test_relu_then_max_pool_runs_pool_first_with_the_same_bits(dtype, pool, monkeypatch):
    """COMMUTE_RELU_MAXPOOL: a ReLU before a max pool runs after it, giving the same output and gradients
    bit for bit, ties and all-negative windows included (values drawn from a few integers); an AvgPool2d
    (a mean does not commute with ReLU) and a ReLU not followed by a pool keep their order."""
    r = np.random.default_rng(3)
    x = r.integers(-3, 3, (2, 7, 7, 3)).astype(dtype)          # many ties, zeros, negative windows
    results, order = {}, {}
    for commute in (True, False):
        monkeypatch.setattr(sn.nn, "COMMUTE_RELU_MAXPOOL", commute)
        with sn.backend.default_dtype_as(dtype):
            net = sn.nn.Sequential(("conv", sn.nn.Conv2d(3, 3, 1, rng=np.random.default_rng(0))),
                                   ("relu", sn.nn.ReLU()), ("pool", sn.nn.MaxPool2d(*pool)),
                                   ("relu2", sn.nn.ReLU()), ("avg", sn.nn.AvgPool2d(2)))
        net.conv.weight.data[...] = np.eye(3, dtype=dtype)       # the conv passes x through: ties survive
        net.conv.bias.data[...] = 0
        calls = []
        for name in ("relu", "pool", "relu2", "avg"):
            layer = getattr(net, name)
            monkeypatch.setattr(layer, "forward", _spy_order(layer.forward, name, calls))
        xin = sn.Tensor(x.copy(), requires_grad=True)
        out = net(xin)
        out.backward(np.arange(out.data.size, dtype=dtype).reshape(out.shape) - 3)
        results[commute] = (out.data, xin.grad, net.conv.weight.grad, net.conv.bias.grad)
        order[commute] = (calls, net.run_groups())
        monkeypatch.undo()
    assert order[True] == (["pool", "relu", "relu2", "avg"], [[0], [2, 1], [3], [4]])
    assert order[False] == (["relu", "pool", "relu2", "avg"], [[0], [1], [2], [3], [4]])
    for a, b in zip(results[True], results[False]):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(a, b)
    assert np.any(results[True][1] != 0) and np.any(results[True][1] == 0)


def _spy_order(forward, name, calls):
    def run(*a, **k):
        calls.append(name)
        return forward(*a, **k)
    return run


def _spy(forward, calls):
    def run(self, *a, **k):
        calls.append(k.get("activation"))
        return forward(self, *a, **k)
    return run
