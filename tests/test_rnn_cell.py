"""The hard-threshold RNN cell: the fast array forward equals the Tensor path, the hand-set adder cell's
eight (carry, bit, bit) cases, and gradients through the surrogate."""
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import scratchnet
from scratchnet import functional as F
from scratchnet.autograd import Tensor
from scratchnet.rnn import HardThresholdRNN

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "rnn_adder.json"


@pytest.fixture(scope="module")
def hand_net():
    return HardThresholdRNN.from_weights(json.loads(WEIGHTS.read_text()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_run_array_equals_tensor_forward(dtype):
    rng = np.random.default_rng(3)
    net = HardThresholdRNN(n_in=2, n_hidden=3, rng=rng, dtype=dtype)
    x = rng.integers(0, 2, (257, 9, 2)).astype(dtype)
    with scratchnet.no_grad():
        y_t, h_t = net(x)
    y_a, h_a = net.run_array(x)
    np.testing.assert_array_equal(y_a, y_t.numpy())
    np.testing.assert_array_equal(h_a, h_t.numpy())
    assert 0 < y_a.mean() < 1 or 0 < h_a.mean() < 1  # not a degenerate all-constant comparison


def test_run_array_rejects_bad_shape(hand_net):
    with pytest.raises(ValueError, match="batch, time, 2"):
        hand_net.run_array(np.zeros((4, 3)))


@pytest.mark.parametrize("carry,a,b", list(itertools.product((0, 1), repeat=3)))
def test_cell_eight_cases(hand_net, carry, a, b):
    """h_t = [s >= 1, s >= 2, s >= 3] and y_t = s mod 2 with s = a + b + carry, from *every* previous state
    whose carry unit (the 2nd) equals `carry`: the new state depends on (carry, x_t) only."""
    s = a + b + carry
    for h1, h3 in itertools.product((0, 1), repeat=2):
        hand_net.h0.data = np.array([h1, carry, h3], dtype=np.float64)
        y, h = hand_net.run_array(np.array([[[a, b]]], dtype=np.float64))
        assert h[0, 0].tolist() == [s >= 1, s >= 2, s >= 3]
        assert y[0, 0] == s % 2
        # the Tensor path agrees
        y2, h2 = hand_net(np.array([[[a, b]]], dtype=np.float64))
        assert h2.numpy()[0, 0].tolist() == h[0, 0].tolist() and y2.numpy()[0, 0] == y[0, 0]
    hand_net.h0.data = np.zeros(3)


def test_cell_pre_activations_never_zero(hand_net):
    """Margins: over all 8 (state, input) combinations every pre-activation is at least 0.5 from 0."""
    U, W, b, v, by = (np.asarray(p.data) for p in (hand_net.U, hand_net.W, hand_net.b_h, hand_net.v, hand_net.b_y))
    for h_prev in itertools.product((0, 1), repeat=3):
        for x in itertools.product((0, 1), repeat=2):
            a = U @ np.array(x) + W @ np.array(h_prev) + b
            assert np.abs(a).min() >= 0.5
            assert abs(v @ (a > 0) + by) >= 0.5


@pytest.mark.parametrize("surrogate", ["ste", "sigmoid"])
def test_gradient_flows_with_surrogate(surrogate):
    """Regression: the output unit's v . h used a 1-D matmul whose backward raised; all params get grads."""
    rng = np.random.default_rng(0)
    net = HardThresholdRNN(rng=rng, surrogate=surrogate, dtype=np.float64)
    for p in (net.U, net.W, net.b_h, net.v, net.b_y):  # small weights: pre-activations inside the STE window
        p.data = 0.3 * p.data
    x = rng.integers(0, 2, (16, 5, 2)).astype(np.float64)
    y, _ = net(Tensor(x))
    loss = F.mean((y - Tensor(rng.integers(0, 2, (16, 5)).astype(np.float64))) ** 2)
    loss.backward()
    for p in (net.U, net.W, net.b_h, net.v, net.b_y):
        assert p.grad is not None and p.grad.shape == p.shape and np.isfinite(p.grad).all()
    assert any(np.abs(p.grad).sum() > 0 for p in (net.U, net.W, net.b_h, net.v, net.b_y))


def test_from_weights_rejects_bad_shapes():
    w = json.loads(WEIGHTS.read_text())
    with pytest.raises(ValueError, match="'W' has shape"):
        HardThresholdRNN.from_weights({**w, "W": [[1, 0], [0, 1]]})
    with pytest.raises(ValueError, match="'h_0' is missing"):
        HardThresholdRNN.from_weights({k: v for k, v in w.items() if k != "h_0"})


class _TorchStep(torch.autograd.Function):
    """PyTorch twin of functional.Step: exact threshold forward, surrogate slope backward."""

    @staticmethod
    def forward(ctx, a, surrogate, beta):
        ctx.save_for_backward(a)
        ctx.surrogate, ctx.beta = surrogate, beta
        return (a > 0).to(a.dtype)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        if ctx.surrogate == "ste":
            return g * (a.abs() <= 1).to(a.dtype), None, None
        s = torch.sigmoid(ctx.beta * a)
        return g * ctx.beta * s * (1 - s), None, None


@pytest.mark.parametrize("surrogate,beta", [("ste", 1.0), ("sigmoid", 1.0), ("sigmoid", 3.0)])
def test_backprop_through_time_matches_torch(surrogate, beta):
    """Gradients of every parameter, h0 included, through 4 time steps against a PyTorch twin of the
    cell (float64): a graph cut between steps or a wrong surrogate shows up here."""
    rng = np.random.default_rng(3)
    net = HardThresholdRNN(rng=rng, surrogate=surrogate, beta=beta, train_h0=True, dtype=np.float64)
    for p in (net.U, net.W, net.b_h, net.v, net.b_y):   # pre-activations near the STE window
        p.data = 0.4 * p.data
    net.h0.data = rng.uniform(-0.5, 0.5, 3)
    x = rng.integers(0, 2, (5, 4, 2)).astype(np.float64)
    ry, rh = rng.standard_normal((5, 4)), rng.standard_normal((5, 4, 3))
    y, h = net(Tensor(x))
    (F.sum(y * Tensor(ry)) + F.sum(h * Tensor(rh))).backward()

    params = {k: torch.tensor(getattr(net, k).data, requires_grad=True) for k in ("U", "W", "b_h", "v", "b_y", "h0")}
    step = lambda a: _TorchStep.apply(a, surrogate, beta)  # noqa: E731
    ht = params["h0"].expand(5, 3)
    ys, hs = [], []
    for t in range(4):
        ht = step(torch.tensor(x[:, t]) @ params["U"].T + ht @ params["W"].T + params["b_h"])
        ys.append(step((ht * params["v"]).sum(1) + params["b_y"]))
        hs.append(ht)
    np.testing.assert_array_equal(y.data, torch.stack(ys, 1).detach().numpy())
    (torch.sum(torch.stack(ys, 1) * torch.tensor(ry)) + torch.sum(torch.stack(hs, 1) * torch.tensor(rh))).backward()
    for k, p in params.items():
        assert np.abs(p.grad.numpy()).sum() > 0, k   # every parameter takes part
        np.testing.assert_allclose(getattr(net, k).grad, p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
