"""The optimisation pieces of the airbench CIFAR-10 recipe: SGD parameter groups against torch.optim.SGD,
decoupled weight decay against its formula written out by hand, the per-example hyper-parameters, the
triangle schedule and Lookahead against a hand-written loop (all in float64)."""
import numpy as np
import pytest
import torch

from scratchnet import nn, optim

SHAPES = [(4, 3), (3,), (2, 5)]


def _problem(steps=6, seed=0):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]
    return weights, grads


def _groups(params, lr, wd):
    """The recipe's split: parameter 1 (a 'bias') at 64x the lr; the others at the base lr."""
    return [{"params": [params[0], params[2]]},
            {"params": [params[1]], "lr": 64 * lr, "weight_decay": wd}]


def _step_both(opt, topt, ps, tps, grads, before_step=None, rtol=1e-10, atol=1e-12):
    """Feed both optimisers the same gradients step by step (before_step(step) first), then compare weights."""
    for step, gs in enumerate(grads):
        if before_step is not None:
            before_step(step)
        for p, tp, g in zip(ps, tps, gs):
            p.grad, tp.grad = g.copy(), torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(ps, tps):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_param_groups_with_schedule_match_torch(nesterov):
    """Coupled decay per group, the lr changed by a schedule every step: exactly torch.optim.SGD, whose
    LambdaLR-style scheduling multiplies every group's initial lr by the same factor."""
    lr, wd, sched = 0.05, 1e-2, optim.TriangleLR(total=6, peak=0.5)
    weights, grads = _problem()
    ps = [nn.Parameter(w.copy()) for w in weights]
    tps = [torch.nn.Parameter(torch.tensor(w)) for w in weights]
    opt = optim.SGD(_groups(ps, lr, wd / 64), lr=lr, momentum=0.9, nesterov=nesterov, weight_decay=wd)
    topt = torch.optim.SGD(_groups(tps, lr, wd / 64), lr=lr, momentum=0.9, nesterov=nesterov, weight_decay=wd)
    initial = [g["lr"] for g in topt.param_groups]

    def schedule(step):
        sched.apply(opt, step)
        for group, lr0 in zip(topt.param_groups, initial):
            group["lr"] = lr0 * sched.factor(step)
    _step_both(opt, topt, ps, tps, grads, schedule)


def test_decoupled_weight_decay_follows_its_formula():
    """SGDW per group, by hand: buf <- mu buf + g; step = g + mu buf; p <- p - lr_g f step - f wd_g p,
    f the schedule's factor, lr_g the group's lr; the decay does not see the lr."""
    lr, mu, wd = 0.05, 0.85, 0.02
    sched = optim.TriangleLR(total=6, peak=0.4, start=0.2, end=0.07)
    weights, grads = _problem(seed=1)
    ps = [nn.Parameter(w.copy()) for w in weights]
    opt = optim.SGD(_groups(ps, lr, wd), lr=lr, momentum=mu, nesterov=True, weight_decay=wd, decoupled=True)
    group_lr, group_wd = [lr, 64 * lr, lr], [wd, wd, wd]  # per parameter, in SHAPES order
    want, bufs = [w.copy() for w in weights], [None] * len(weights)
    for step, gs in enumerate(grads):
        f = sched.factor(step)
        for i, g in enumerate(gs):
            bufs[i] = g.copy() if bufs[i] is None else mu * bufs[i] + g
            want[i] = want[i] - group_lr[i] * f * (g + mu * bufs[i]) - f * group_wd[i] * want[i]
        sched.apply(opt, step)
        for p, g in zip(ps, gs):
            p.grad = g.copy()
        opt.step()
    for p, w in zip(ps, want):
        np.testing.assert_allclose(p.data, w, rtol=1e-12, atol=1e-14)


def test_decoupled_without_decay_is_torch_sgd_and_decay_ignores_the_lr():
    weights, grads = _problem(seed=2)
    ps = [nn.Parameter(w.copy()) for w in weights]
    tps = [torch.nn.Parameter(torch.tensor(w)) for w in weights]
    opt = optim.SGD(_groups(ps, 0.1, 0.0), lr=0.1, momentum=0.9, nesterov=True, decoupled=True)
    topt = torch.optim.SGD(_groups(tps, 0.1, 0.0), lr=0.1, momentum=0.9, nesterov=True)
    _step_both(opt, topt, ps, tps, grads, rtol=1e-12, atol=1e-14)
    # with a zero gradient, one step shrinks by exactly (1 - wd) at any base lr, and by (1 - f wd) at factor f
    for lr in (1e-3, 10.0):
        p = nn.Parameter(np.full(3, 2.0))
        opt = optim.SGD([p], lr=lr, momentum=0.9, weight_decay=0.1, decoupled=True)
        p.grad = np.zeros(3)
        opt.step()
        np.testing.assert_allclose(p.data, 2.0 * 0.9, rtol=1e-15)
        opt.lr = 0.5 * lr
        opt.step()
        np.testing.assert_allclose(p.data, 2.0 * 0.9 * 0.95, rtol=1e-15)


def test_adam_param_groups_match_torch():
    weights, grads = _problem(seed=3)
    ps = [nn.Parameter(w.copy()) for w in weights]
    tps = [torch.nn.Parameter(torch.tensor(w)) for w in weights]
    opt = optim.AdamW(_groups(ps, 0.01, 0.1), lr=0.01, weight_decay=0.01)
    topt = torch.optim.AdamW(_groups(tps, 0.01, 0.1), lr=0.01, weight_decay=0.01)
    _step_both(opt, topt, ps, tps, grads)


def test_single_list_usage_and_group_errors():
    """SGD(params, lr=...) is one group; setting opt.lr (as train.py does) is the step's lr, exactly."""
    p = nn.Parameter(np.ones(2))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    assert len(opt.param_groups) == 1 and opt.params == [p] and opt.param_groups[0]["weight_decay"] == 0.0
    opt.lr = 0.03
    assert opt.group_lr(opt.param_groups[0]) == 0.03 and opt.lr_factor == pytest.approx(0.3)
    q = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match=r"unknown parameter-group keys \['wd'\]"):
        optim.SGD([{"params": [p], "wd": 0.1}])
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p, q]}, {"params": [q]}])
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        optim.SGD([{"params": [p]}, {"params": [q], "nesterov": True}], momentum=0.0)
    with pytest.raises(ValueError, match="learning rate must be >= 0"):
        optim.SGD([{"params": [p], "lr": -1.0}])
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([{"params": []}])


def test_per_example_sgd_args():
    args = optim.per_example_sgd_args(lr=11.5, weight_decay=0.0153, momentum=0.85, batch_size=1024)
    assert args["lr"] == pytest.approx(11.5 / (1024 * (1 + 1 / 0.15)))
    assert args["weight_decay"] == pytest.approx(0.0153)
    assert args["nesterov"] and args["decoupled"] and args["momentum"] == 0.85
    half = optim.per_example_sgd_args(lr=11.5, weight_decay=0.0153, momentum=0.85, batch_size=512)
    assert half["lr"] == args["lr"] and half["weight_decay"] == pytest.approx(0.0153 / 2)
    optim.SGD([nn.Parameter(np.ones(2))], **args)
    with pytest.raises(ValueError, match="momentum must be in"):
        optim.per_example_sgd_args(1.0, 0.0, momentum=1.0, batch_size=1)


def test_triangle_schedule():
    total = 100
    s = optim.TriangleLR(total, peak=0.23, start=0.2, end=0.07)
    f = np.array([s.factor(i) for i in range(total + 1)])
    assert s.peak_step == 23
    assert f[0] == pytest.approx(0.2) and f[23] == 1.0 and f[total] == pytest.approx(0.07)
    assert np.all(np.diff(f[:24]) > 0) and np.all(np.diff(f[23:]) < 0)
    np.testing.assert_allclose(f, np.interp(np.arange(total + 1), [0, 23, total], [0.2, 1.0, 0.07]), rtol=1e-12)
    assert s.factor(total + 50) == pytest.approx(0.07)
    down = optim.TriangleLR(10, peak=0.0, end=0.5)  # no warm-up: starts at the peak
    assert down.factor(0) == 1.0 and down.factor(10) == pytest.approx(0.5)
    opt = optim.SGD([nn.Parameter(np.zeros(2))], lr=0.4)
    assert s.apply(opt, 0) == pytest.approx(0.08) and opt.lr_factor == pytest.approx(0.2)
    with pytest.raises(ValueError, match="peak"):
        optim.TriangleLR(10, peak=1.5)


def test_lookahead_matches_a_hand_written_loop():
    """k = 5, decay varying with t, 23 steps (the last sync at 20, then 3 fast steps finish() discards)."""
    k, total = 5, 23
    rng = np.random.default_rng(4)
    weights = [rng.standard_normal(s) for s in SHAPES]
    moves = [[rng.standard_normal(s) for s in SHAPES] for _ in range(total)]
    decay = lambda t: 0.95 ** 5 * (t / total) ** 3  # noqa: E731 - the recipe's
    ps = [nn.Parameter(w.copy()) for w in weights]
    la = optim.Lookahead(ps, k=k, decay=decay)
    fast, slow = [w.copy() for w in weights], [w.copy() for w in weights]
    for t in range(1, total + 1):
        for i, m in enumerate(moves[t - 1]):
            fast[i] = fast[i] + m  # stands for an optimizer step
            ps[i].data += m
        if t % k == 0:
            d = decay(t)
            for i in range(len(slow)):
                slow[i] = d * slow[i] + (1 - d) * fast[i]
                fast[i] = slow[i].copy()
        la.step()
        for p, w in zip(ps, fast):
            np.testing.assert_allclose(p.data, w, rtol=1e-12, atol=1e-14)
    saved = la.state_dict()
    la.finish()
    for p, s in zip(ps, slow):
        np.testing.assert_allclose(p.data, s, rtol=1e-12, atol=1e-14)
    again = optim.Lookahead([nn.Parameter(w.copy()) for w in weights], k=k, decay=decay)
    again.load_state_dict(saved)
    assert again.t == total and all(np.array_equal(a, b) for a, b in zip(again.slow, la.slow))


def test_lookahead_with_sgd_keeps_float32_and_constant_decay():
    """decay = 0 is the plain optimizer; float32 weights stay float32."""
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal((3, 4)).astype(np.float32)
    runs = []
    for decay in (0.0, 0.5):
        p = nn.Parameter(w0.copy())
        opt, la = optim.SGD([p], lr=0.1, momentum=0.9), optim.Lookahead([p], k=2, decay=decay)
        for i in range(4):
            p.grad = (np.float32(i + 1) * w0).copy()
            opt.step()
            la.step()
        assert p.data.dtype == np.float32 and la.slow[0].dtype == np.float32
        runs.append(p.data.copy())
    plain = nn.Parameter(w0.copy())
    opt = optim.SGD([plain], lr=0.1, momentum=0.9)
    for i in range(4):
        plain.grad = (np.float32(i + 1) * w0).copy()
        opt.step()
    np.testing.assert_array_equal(runs[0], plain.data)
    assert not np.allclose(runs[1], plain.data)
    with pytest.raises(ValueError, match="k >= 1"):
        optim.Lookahead([plain], k=0)
