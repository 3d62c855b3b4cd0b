"""Modules (parameters, modes, state_dict), optimizers and schedules against torch.optim, the
backend switch, and an end-to-end training run on a synthetic problem."""
import math

import numpy as np
import pytest
import torch

import scratchnet as sn
from scratchnet import functional as F
from scratchnet import nn, optim
from scratchnet.backend import BackendError

from gradcheck import nhwc_to_nchw
from problems.p3.torch_reference import torch_twin as torch_twin_of


def small_net(rng=0, bn=False):
    layers = [nn.Conv2d(3, 6, 3, padding=1, rng=rng)]
    layers += [nn.BatchNorm2d(6)] if bn else []
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 5, 3, stride=2, padding=1, rng=rng + 1)]
    layers += [nn.BatchNorm2d(5)] if bn else []
    layers += [nn.ReLU(), nn.GlobalAvgPool2d(), nn.Linear(5, 4, rng=rng + 2)]
    return nn.Sequential(*layers)


def torch_twin(net):
    """The same network in PyTorch with copied weights (float64)."""
    return torch_twin_of(net).double()


def test_sequential_module_gradients_match_torch():
    rng = np.random.default_rng(0)
    with sn.backend.default_dtype_as(np.float64):
        net = small_net(bn=True)
    tnet = torch_twin(net)
    x = rng.standard_normal((3, 8, 10, 3))
    y = rng.integers(0, 4, 3)
    loss = F.cross_entropy(net(sn.Tensor(x)), y)
    loss.backward()
    tloss = torch.nn.functional.cross_entropy(tnet(nhwc_to_nchw(torch.tensor(x))), torch.tensor(y))
    tloss.backward()
    assert abs(loss.item() - tloss.item()) < 1e-12
    tparams = list(tnet.parameters())
    for (name, p), tp in zip(net.named_parameters(), tparams):
        tg = tp.grad
        tg = tg.permute(2, 3, 1, 0) if tg.dim() == 4 else (tg.T if tg.dim() == 2 else tg)
        np.testing.assert_allclose(p.grad, tg.numpy(), rtol=1e-6, atol=1e-9, err_msg=name)


def test_parameters_modes_and_he_init():
    net = small_net(bn=True)
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "5.weight", "5.bias",
                     "8.weight", "8.bias"]
    assert all(p.dtype == np.float32 for p in net.parameters())  # float32 by default
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    big = nn.Conv2d(64, 128, 3, rng=0)
    assert abs(big.weight.data.std() - math.sqrt(2 / (9 * 64))) < 0.002
    assert np.all(big.bias.data == 0)


def test_state_dict_roundtrip_and_errors(tmp_path):
    net = small_net(rng=0, bn=True)
    x = sn.Tensor(np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32))
    net(x)  # move the running statistics
    path = tmp_path / "w.npz"
    net.save(path)
    other = small_net(rng=5, bn=True).load(path)
    net.eval(), other.eval()
    np.testing.assert_array_equal(net(x).data, other(x).data)
    state = net.state_dict()
    assert "1.running_mean" in state and "1.running_var" in state
    bad = dict(state)
    bad.pop("0.bias")
    bad["extra.weight"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"missing keys \['0.bias'\].*unexpected keys \['extra.weight'\]"):
        other.load_state_dict(bad)
    wrong = dict(state)
    wrong["8.weight"] = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"'8.weight' has shape \(5, 4\) in the model but \(4, 5\)"):
        other.load_state_dict(wrong)


def test_batchnorm_frozen_scale_is_not_a_parameter():
    bn = nn.BatchNorm2d(4, affine=False)
    assert bn.parameters() == []
    assert set(bn.state_dict()) == {"running_mean", "running_var"}
    bn = nn.BatchNorm2d(4, train_scale=False)
    assert [n for n, _ in bn.named_parameters()] == ["bias"]
    x = sn.Tensor(np.random.default_rng(0).standard_normal((3, 2, 2, 4)).astype(np.float32))
    bn(x).sum().backward()
    assert bn.bias.grad is not None and bn.weight.grad is None
    np.testing.assert_array_equal(bn.weight.data, 1)


def _run_optimizer(make_sn, make_torch, steps=5):
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) for _ in range(steps)]
    p = nn.Parameter(w0.copy())
    tp = torch.nn.Parameter(torch.tensor(w0.copy()))
    opt, topt = make_sn([p]), make_torch([tp])
    for g in grads:
        p.grad = g.copy()
        tp.grad = torch.tensor(g.copy())
        opt.step()
        topt.step()
    np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                dict(momentum=0.8, weight_decay=0.01), dict(momentum=0.9, nesterov=True, weight_decay=5e-4)])
def test_sgd_matches_torch(kw):
    _run_optimizer(lambda ps: optim.SGD(ps, lr=0.1, **kw), lambda ps: torch.optim.SGD(ps, lr=0.1, **kw))


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam_and_adamw_match_torch(wd):
    _run_optimizer(lambda ps: optim.Adam(ps, lr=0.01, weight_decay=wd),
                   lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=wd))
    _run_optimizer(lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=wd or 0.01),
                   lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=wd or 0.01))


def test_optimizer_state_roundtrip_resumes_identically():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(5) for _ in range(6)]
    p1 = nn.Parameter(np.ones(5))
    o1 = optim.Adam([p1], lr=0.1)
    for g in grads:
        p1.grad = g
        o1.step()
    p2 = nn.Parameter(np.ones(5))
    o2 = optim.Adam([p2], lr=0.1)
    for g in grads[:3]:
        p2.grad = g
        o2.step()
    saved, saved_p = o2.state_dict(), p2.data.copy()
    p3 = nn.Parameter(saved_p)
    o3 = optim.Adam([p3], lr=0.1)
    o3.load_state_dict(saved)
    for g in grads[3:]:
        p3.grad = g
        o3.step()
    np.testing.assert_array_equal(p3.data, p1.data)


def test_schedules():
    s = optim.StepLR(every=10, gamma=0.5)
    assert [s.factor(i) for i in (0, 9, 10, 25)] == [1, 1, 0.5, 0.25]
    c = optim.CosineLR(total=100, final=0.1)
    assert c.factor(0) == 1 and abs(c.factor(100) - 0.1) < 1e-12 and abs(c.factor(50) - 0.55) < 1e-12
    w = optim.WarmupLinear(warmup=10, total=110, start=0.1, final=0.0)
    assert abs(w.factor(0) - 0.1) < 1e-12 and w.factor(10) == 1 and abs(w.factor(60) - 0.5) < 1e-12
    assert w.factor(110) == 0
    ww = optim.WithWarmup(5, optim.CosineLR(10))
    assert ww.factor(0) == 0.2 and ww.factor(4) == 1 and ww.factor(5) == 1
    opt = optim.SGD([nn.Parameter(np.zeros(2))], lr=0.4)
    assert abs(s.apply(opt, 10) - 0.2) < 1e-12 and opt.base_lr == 0.4


def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(0)
    gs = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    ps = [nn.Parameter(np.zeros_like(g)) for g in gs]
    tps = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in gs]
    for p, tp, g in zip(ps, tps, gs):
        p.grad, tp.grad = g.copy(), torch.tensor(g)
    norm = optim.clip_grad_norm(ps, 1.0)
    tnorm = torch.nn.utils.clip_grad_norm_(tps, 1.0)
    assert abs(norm - float(tnorm)) < 1e-10
    for p, tp in zip(ps, tps):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-5)


def test_no_grad_records_nothing():
    w = nn.Parameter(np.ones(3))
    with sn.no_grad():
        y = (w * 2).sum()
    assert not y.requires_grad and y._creator is None
    assert sn.is_grad_enabled()


def test_backend_errors_are_clear():
    with pytest.raises(BackendError, match="unknown backend 'tpu'; expected one of numpy, cupy"):
        sn.backend.array_module("tpu")
    if not sn.backend.cupy_available():
        with pytest.raises(BackendError, match="cupy"):
            small_net().to("cupy")


def test_float64_selectable():
    with sn.backend.default_dtype_as(np.float64):
        net = small_net()
        assert all(p.dtype == np.float64 for p in net.parameters())
    assert sn.backend.default_dtype() is np.float32


def test_hard_threshold_rnn_forward_is_exact_on_all_inputs():
    """Every (input, previous state) combination of a 2-input, 3-unit cell gives the step() of the formula."""
    rng = np.random.default_rng(0)
    net = sn.rnn.HardThresholdRNN(2, 3, rng=rng, dtype=np.float64)
    U, W, bh, v, by = (np.asarray(t.data) for t in (net.U, net.W, net.b_h, net.v, net.b_y))
    for h_bits in range(8):
        h_prev = np.array([(h_bits >> i) & 1 for i in range(3)], dtype=np.float64)
        net.h0.data = h_prev
        xs = np.array([[[a, b]] for a in (0, 1) for b in (0, 1)], dtype=np.float64)  # (4, T=1, 2)
        y, h = net(xs)
        for i, x in enumerate(xs[:, 0]):
            h_expect = (U @ x + W @ h_prev + bh > 0).astype(float)
            np.testing.assert_array_equal(h.data[i, 0], h_expect)
            assert y.data[i, 0] == float(v @ h_expect + by > 0)


def test_end_to_end_training_on_separable_problem():
    """A tiny conv net learns to tell images with a bright left half from a bright right half."""
    rng = np.random.default_rng(0)
    n = 256
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 8, 8, 3)).astype(np.float32) * 0.5
    x[y == 0, :, :4] += 1.0
    x[y == 1, :, 4:] += 1.0
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, rng=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 8, 3, padding=1, rng=2), nn.ReLU(), nn.GlobalAvgPool2d(), nn.Linear(8, 2, rng=3))
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)

    def evaluate():
        net.eval()
        with sn.no_grad():
            logits = net(sn.Tensor(x)).data
        net.train()
        return float(F.cross_entropy(sn.Tensor(logits), y).item()), float((logits.argmax(1) == y).mean())

    loss0, acc0 = evaluate()
    for epoch in range(8):
        for i in rng.permutation(n // 32):
            idx = slice(32 * i, 32 * i + 32)
            opt.zero_grad()
            loss = F.cross_entropy(net(sn.Tensor(x[idx])), y[idx])
            loss.backward()
            opt.step()
    loss1, acc1 = evaluate()
    assert loss1 < 0.5 * loss0
    assert acc1 > 0.95 and acc0 < 0.8


@pytest.mark.parametrize("bn", [False, True])
def test_float32_stays_float32_through_a_training_step(bn):
    """No silent float64 upcasts anywhere in forward, backward or the update."""
    net = small_net(bn=bn)
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = sn.Tensor(np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype(np.float32))
    logits = net(x)
    loss = F.cross_entropy(logits, np.array([0, 1, 2, 3]), label_smoothing=0.1)
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    loss.backward()
    opt.step()
    for name, p in net.named_parameters():
        assert p.grad.dtype == np.float32 and p.data.dtype == np.float32, name
    for name, b in net.named_buffers():
        assert b.dtype == np.float32, name


def test_full_reductions_keep_float64_under_the_float32_default():
    """numpy's x.sum() is a numpy scalar, not an array: it must keep x's dtype like any array result
    (it used to become float32, so float64 checks through a .sum() lost precision; CuPy was unaffected)."""
    assert sn.backend.default_dtype() is np.float32
    x = sn.Tensor(np.linspace(0.1, 1.0, 6).reshape(2, 3), requires_grad=True)
    s = (x * x).sum()
    assert s.dtype == np.float64 and isinstance(s.data, np.ndarray)
    s.backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad, 2 * x.data)
    bn = nn.BatchNorm2d(3, dtype=np.float64)
    y = sn.Tensor(np.random.default_rng(0).standard_normal((2, 2, 2, 3)), requires_grad=True)
    bn(y).sum().backward()
    assert y.grad.dtype == np.float64 and np.abs(y.grad).max() < 1e-12  # exactly ~0 in float64, not 1e-8


def test_to_numpy_takes_array_likes():
    """backend.to_numpy is the one host conversion (io, viz and the model builders call it): lists and
    scalars become arrays, as np.asarray made them before GPU arrays had to be handled too."""
    assert isinstance(sn.backend.to_numpy([1.0, 2.0]), np.ndarray)
    a = np.arange(3.0)
    assert sn.backend.to_numpy(a) is a
