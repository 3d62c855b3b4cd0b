"""P3 helpers in problems/p3: CIFAR download decision (no network used) and the PyTorch reference nets."""
import math

import numpy as np
import pytest

import problems.p3.cifar_download as dl
from problems.common.cli import UserError
from cifar_helpers import make_pickles, make_tree

torch = pytest.importorskip("torch")
from problems.p3 import torch_reference as tr  # noqa: E402


# ----------------------------------------------------------------------------------------------- download

def _forbid_network(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("must not download")
    monkeypatch.setattr(dl, "_torchvision_download", boom)
    monkeypatch.setattr(dl, "network_reachable", boom)


def test_no_download_when_tree_exists(tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    make_tree(tmp_path, n_train=1, n_test=1)
    assert dl.ensure_cifar10(tmp_path) == tmp_path / "cifar10"
    d = dl.load_cifar10_for_cli(tmp_path, cache_dir=tmp_path / "cache", progress=False)
    assert len(d.train_y) == 10


def test_no_download_when_pickles_exist(tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    make_pickles(tmp_path)
    assert dl.ensure_cifar10(tmp_path) == tmp_path / "cifar-10-batches-py"


def test_offline_is_one_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "network_reachable", lambda *a, **k: False)
    monkeypatch.setattr(dl, "_torchvision_download", lambda root: pytest.fail("downloaded while offline"))
    with pytest.raises(UserError) as e:
        dl.ensure_cifar10(tmp_path / "empty")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "empty") in msg
    assert "cifar-10-batches-py" in msg and "cifar10" in msg and "unreachable" in msg


def test_download_failure_is_one_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "network_reachable", lambda *a, **k: True)

    def fail(root):
        raise RuntimeError("connection reset\nmore lines")
    monkeypatch.setattr(dl, "_torchvision_download", fail)
    with pytest.raises(UserError) as e:
        dl.ensure_cifar10(tmp_path / "root")
    assert "\n" not in str(e.value) and "connection reset" in str(e.value)


def test_download_writes_pickles(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "network_reachable", lambda *a, **k: True)
    calls = []

    def fake(root):  # stands in for torchvision: unpacks cifar-10-batches-py/ under root
        calls.append(root)
        make_pickles(root)
    monkeypatch.setattr(dl, "_torchvision_download", fake)
    assert dl.ensure_cifar10(tmp_path / "new") == tmp_path / "new" / "cifar-10-batches-py"
    assert calls == [tmp_path / "new"]


def test_bad_dataset_becomes_user_error(tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    make_tree(tmp_path, n_train=1, n_test=1, classes=("a", "b"))
    with pytest.raises(UserError, match="expected 10 class folders"):
        dl.load_cifar10_for_cli(tmp_path, cache_dir=tmp_path / "cache", progress=False)


# ------------------------------------------------------------------------------------------- torch nets

@pytest.mark.parametrize("name", ["small", "small_bn"])
def test_architecture_and_init(name):
    torch.manual_seed(0)
    m = tr.build_model(name)
    out = m(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert tuple(m.conv1.weight.shape) == (64, 3, 11, 11) and m.conv1.padding == (0, 0)
    assert tuple(m.conv2.weight.shape) == (128, 64, 3, 3) and m.conv2.padding == (1, 1)
    assert tuple(m.conv3.weight.shape) == (128, 128, 3, 3) and tuple(m.fc.weight.shape) == (10, 128)
    for conv, fan_in in ((m.conv1, 3 * 121), (m.conv2, 64 * 9), (m.conv3, 128 * 9)):
        assert abs(conv.weight.std().item() / math.sqrt(2 / fan_in) - 1) < 0.1
        assert (conv.bias is None) == (name == "small_bn")
        if conv.bias is not None:
            assert conv.bias.abs().max() == 0
    assert abs(m.fc.weight.std().item() / math.sqrt(2 / 128) - 1) < 0.2 and m.fc.bias.abs().max() == 0
    if name == "small_bn":
        assert m.bn1.momentum == 0.1 and m.bn1.eps == 1e-5 and torch.all(m.bn2.weight == 1)
    n_params = sum(p.numel() for p in m.parameters())
    expected = 3 * 121 * 64 + 64 * 9 * 128 + 128 * 9 * 128 + 128 * 10 + 10
    expected += 2 * (64 + 128 + 128) if name == "small_bn" else 64 + 128 + 128
    assert n_params == expected


def _conv_hwio_reference(x_nhwc, w_hwio, b, padding):
    """Plain cross-correlation in NHWC with HWIO weights (what scratchnet's conv computes)."""
    x = np.pad(x_nhwc, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    kh, kw = w_hwio.shape[:2]
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], ho, wo, w_hwio.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,co->nhwo", x[:, i:i + ho, j:j + wo], w_hwio[i, j])
    return out + b


def test_weight_conversion_matches_scratchnet_layout_semantics():
    torch.manual_seed(0)
    m = tr.build_model("small")
    with torch.no_grad():
        m.conv2.bias.normal_()
    layers = tr.export_layers(m)
    assert [d["kind"] for d in layers] == ["conv", "conv", "conv", "linear"]
    assert layers[0]["weight"].shape == (11, 11, 3, 64) and layers[3]["weight"].shape == (128, 10)
    x = np.random.default_rng(0).normal(size=(2, 11, 11, 64)).astype(np.float32)
    ref = _conv_hwio_reference(x, layers[1]["weight"], layers[1]["bias"], padding=1)
    got = m.conv2(tr.nhwc_to_nchw(x)).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    h = np.random.default_rng(1).normal(size=(3, 128)).astype(np.float32)
    np.testing.assert_allclose(m.fc(torch.from_numpy(h)).detach().numpy(),
                               h @ layers[3]["weight"] + layers[3]["bias"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["small", "small_bn"])
def test_flat_dict_round_trip(name):
    torch.manual_seed(1)
    a = tr.build_model(name)
    if name == "small_bn":
        with torch.no_grad():
            a.bn2.running_mean.normal_()
            a.bn2.weight.normal_()
    flat = tr.to_flat_dict(a)
    assert flat["conv1.weight"].shape == (11, 11, 3, 64) and flat["fc.weight"].shape == (128, 10)
    assert ("conv1.bias" in flat) == (name == "small")
    assert ("bn2.running_mean" in flat) == (name == "small_bn")
    torch.manual_seed(2)
    b = tr.build_model(name)
    tr.from_flat_dict(b, flat)
    x = torch.randn(4, 3, 32, 32)
    a.eval()
    b.eval()
    torch.testing.assert_close(a(x), b(x))
    bad = dict(flat)
    del bad["conv3.weight"]
    with pytest.raises(KeyError, match="conv3.weight"):
        tr.from_flat_dict(b, bad)


def test_train_step_lowers_loss_and_evaluate():
    torch.manual_seed(0)
    m = tr.build_model("small_bn")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=16)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    losses = [tr.train_step(m, opt, x, y)[0] for _ in range(6)]
    assert losses[-1] < losses[0]
    loss, acc = tr.evaluate(m, x, y, batch_size=6)
    assert 0 <= acc <= 1 and loss > 0


def _scratchnet_twin(name):
    """The same net built from scratchnet.nn modules, named as `scratchnet_names` expects."""
    from scratchnet import nn as snn
    bn = name == "small_bn"
    layers = []
    for i, (cin, cout, k, pad) in enumerate([(3, 64, 11, 0), (64, 128, 3, 1), (128, 128, 3, 1)], start=1):
        layers.append((f"conv{i}", snn.Conv2d(cin, cout, k, padding=pad, bias=not bn)))
        if bn:
            layers.append((f"bn{i}", snn.BatchNorm2d(cout)))
        layers.append((f"relu{i}", snn.ReLU()))
        if i == 1:
            layers.append(("pool1", snn.MaxPool2d(2, 2)))
    layers += [("gap", snn.GlobalAvgPool2d()), ("fc", snn.Linear(128, 10))]
    return snn.Sequential(*layers)


@pytest.mark.parametrize("name", ["small", "small_bn"])
def test_torch_and_scratchnet_agree(name):
    """Converted weights give the same logits (train and eval mode) and the same weight gradients."""
    sn = pytest.importorskip("scratchnet.nn")  # noqa: F841 - the core must exist
    from scratchnet import functional as F
    from scratchnet.autograd import Tensor
    torch.manual_seed(3)
    tm = tr.build_model(name)
    snet = _scratchnet_twin(name)
    snet.load_state_dict(tr.to_flat_dict(tm), strict=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=4)
    # training mode: BN uses batch statistics and updates running stats
    logits_t = tm.train()(tr.nhwc_to_nchw(x))
    loss_t = torch.nn.functional.cross_entropy(logits_t, torch.as_tensor(y))
    loss_t.backward()
    snet.train()
    logits_s = snet(Tensor(x))
    loss_s = F.cross_entropy(logits_s, y)
    loss_s.backward()
    np.testing.assert_allclose(logits_s.data, logits_t.detach().numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(float(loss_s.data), loss_t.item(), rtol=1e-4)
    grads = dict(snet.named_parameters())
    np.testing.assert_allclose(grads["conv1.weight"].grad, tr.conv_weight_to_hwio(tm.conv1.weight.grad.numpy()),
                               rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(grads["fc.weight"].grad, tm.fc.weight.grad.numpy().T, rtol=1e-3, atol=1e-5)
    # eval mode after one training forward: running statistics must match too
    flat_after = tr.to_flat_dict(tm)
    for k, v in snet.state_dict().items():
        np.testing.assert_allclose(v, flat_after[k], rtol=1e-4, atol=1e-5, err_msg=k)
    tm.eval()
    snet.eval()
    with torch.no_grad():
        ref = tm(tr.nhwc_to_nchw(x)).numpy()
    np.testing.assert_allclose(snet(Tensor(x)).data, ref, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------------- the better net's PyTorch twin

def _better_net(dtype=np.float64, widths=(64, 256, 256), perturb=True, seed=0):
    """Part 3's net in `dtype`, with whitening filters from random images; perturb: random head, biases and
    running statistics, so every parameter gets a gradient (the zero head would zero the body's) and eval
    mode uses non-trivial statistics."""
    import scratchnet as sn
    from problems.p3 import models
    from scratchnet.init import patch_whitening_filters
    rng = np.random.default_rng(seed)
    with sn.backend.default_dtype_as(dtype):
        net = models.better_net(patch_whitening_filters(rng.standard_normal((20, 32, 32, 3))), widths=widths)
    if perturb:
        net.fc.weight.data = rng.standard_normal(net.fc.weight.shape).astype(dtype)
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.data = 0.1 * rng.standard_normal(p.shape).astype(dtype)
        for m in net.layers:
            if hasattr(m, "running_mean"):
                m.running_mean = 0.2 * rng.standard_normal(m.num_features).astype(dtype)
                m.running_var = rng.uniform(0.5, 2.0, m.num_features).astype(dtype)
    return net


def _hwio(grad):
    return tr._to_scratchnet_layout(grad.detach().numpy())


def test_better_twin_mirrors_structure_frozen_weights_and_initial_weights():
    """The twin of a fresh better net: same trained parameters (names, count), frozen filters and BN scale
    as buffers, momentum 0.4 on both sides (same convention), tanh GELU, and identical initial weights."""
    from scratchnet import nn as snn
    net = _better_net(np.float32, perturb=False)
    twin = tr.torch_twin(net)
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in net.named_parameters()]
    assert sum(p.numel() for p in twin.parameters()) == net.num_parameters() == 1_971_352
    assert not twin.whiten.weight.requires_grad and "whiten.weight" in dict(twin.named_buffers())
    assert "block1_bn1.weight" not in twin.state_dict() and torch.all(twin.block1_bn1.weight == 1)
    for name, m in twin.named_children():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.momentum == getattr(net, name).momentum == 0.4 and m.eps == getattr(net, name).eps
    assert twin.act0.approximate == "tanh" and isinstance(net.act0, snn.GELU)
    state, ref = tr.twin_state(twin), net.state_dict()
    assert sorted(state) == sorted(ref)
    for k in ref:
        np.testing.assert_array_equal(state[k], ref[k], err_msg=k)
    assert np.all(state["fc.weight"] == 0) and state["block2_conv2.weight"][1, 1, 0, 0] == 1.0
    twin2 = tr.torch_twin(_better_net(np.float32, perturb=True, seed=1))
    tr.load_twin_state(twin2, ref)
    for k, v in tr.twin_state(twin2).items():
        np.testing.assert_array_equal(v, ref[k], err_msg=k)
    with pytest.raises(ValueError, match="missing keys.*whiten.weight"):
        tr.load_twin_state(twin2, {k: v for k, v in ref.items() if k != "whiten.weight"})


@pytest.mark.parametrize("batch,h,w", [(2, 32, 32), (3, 33, 35)])
def test_better_twin_matches_logits_gradients_and_batch_norm_statistics(batch, h, w):
    """float64: train-mode logits, the smoothed loss, every parameter's gradient and the running statistics
    after the step's forward equal scratchnet's; then eval-mode logits too. 33x35 checks the floor pooling
    (32x34 -> 16x17 -> 8x8 -> 4x4 -> 1x1)."""
    from scratchnet import functional as F
    from scratchnet.autograd import Tensor
    net = _better_net()
    twin = tr.torch_twin(net)
    rng = np.random.default_rng(batch)
    x, y = rng.standard_normal((batch, h, w, 3)), rng.integers(0, 10, batch)
    net.train(), twin.train()
    logits_s = net(Tensor(x))
    loss_s = F.cross_entropy(logits_s, y, label_smoothing=0.2)
    loss_s.backward()
    logits_t = twin(tr.nhwc_to_nchw(x, dtype=torch.float64))
    loss_t = torch.nn.functional.cross_entropy(logits_t, torch.as_tensor(y), label_smoothing=0.2)
    loss_t.backward()
    assert np.abs(logits_s.data).max() > 0.1  # the perturbed head gives real logits
    np.testing.assert_allclose(logits_s.data, logits_t.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(loss_s.data), loss_t.item(), rtol=1e-11)
    tparams = dict(twin.named_parameters())
    for name, p in net.named_parameters():
        g = _hwio(tparams[name].grad)
        assert np.abs(g).max() > 0, name  # every parameter gets a gradient
        np.testing.assert_allclose(p.grad, g, rtol=1e-8, atol=1e-10 * np.abs(g).max(), err_msg=name)
    state, ref = tr.twin_state(twin), net.state_dict()  # the running statistics moved by momentum 0.4
    for k in ref:
        np.testing.assert_allclose(state[k], ref[k], rtol=1e-10, atol=1e-13, err_msg=k)
    net.eval(), twin.eval()
    with torch.no_grad():
        ref_eval = twin(tr.nhwc_to_nchw(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(net(Tensor(x)).data, ref_eval, rtol=1e-9, atol=1e-12)
    assert not np.allclose(ref_eval, logits_t.detach().numpy())  # eval mode used the running statistics


def test_better_learners_match_over_sgd_steps_with_ema_and_test_time_views():
    """The recipe's optimizer (Nesterov SGD, coupled weight decay, label smoothing) and EMA (decay 0.98,
    warm-up EMA_WARMUP) on both learners, float64: after three steps at different learning rates the live
    weights, the running statistics, the averaged weights and the 6-view TTA logits are equal; a
    checkpoint of the twin resumes to the same next step."""
    from problems.p3.recipe import EMA_WARMUP, TTA_VIEWS, recipe_for
    from scratchnet.train import ScratchnetLearner
    cfg = recipe_for("better").train
    assert cfg.label_smoothing == 0.2 and cfg.ema_decay == 0.98 and cfg.nesterov and cfg.weight_decay == 5e-4
    net = _better_net(widths=(16, 32, 32))
    fc0 = net.fc.weight.data.copy()
    tl = tr.TorchLearner("better", cfg, "cpu", net=net, ema_warmup=EMA_WARMUP)  # copies the weights now
    sl = ScratchnetLearner(net, cfg, "numpy", ema_warmup=EMA_WARMUP)
    assert tl.dtype == torch.float64 and tl.num_parameters() == sl.num_parameters()
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((4, 32, 32, 3)), rng.integers(0, 10, 4)) for _ in range(4)]
    for (x, y), lr in zip(batches[:3], (0.08, 0.4, 0.8)):
        sl.set_lr(lr), tl.set_lr(lr)
        (ls, cs), (lt, ct) = sl.train_step(x, y), tl.train_step(x, y)
        np.testing.assert_allclose(ls, lt, rtol=1e-9)
        assert cs == ct
        if sl.optimizer.steps == 1:  # the warm-up decay after step 1: min(0.98, 2 / 11)
            d = min(0.98, 2 / (EMA_WARMUP + 1))
            np.testing.assert_allclose(tl.weights()["fc.weight"],
                                       d * fc0 + (1 - d) * tr.twin_state(tl.model)["fc.weight"], rtol=1e-12)
    live_s, live_t = sl.model.state_dict(), tr.twin_state(tl.model)
    ema_s, ema_t = sl.weights(), tl.weights()
    assert not np.allclose(ema_s["fc.weight"], live_s["fc.weight"])  # the average is not the live weights
    for k in live_s:
        np.testing.assert_allclose(live_t[k], live_s[k], rtol=1e-7, atol=1e-10, err_msg=k)
        np.testing.assert_allclose(ema_t[k], ema_s[k], rtol=1e-7, atol=1e-10, err_msg=k)
    x = batches[3][0]
    np.testing.assert_allclose(tl.predict_logits(x, TTA_VIEWS[2]), sl.predict_logits(x, TTA_VIEWS[2]),
                               rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(tr.twin_state(tl.model)["fc.weight"], live_s["fc.weight"], rtol=1e-7)  # swapped back
    resumed = tr.TorchLearner("better", cfg, "cpu", net=_better_net(widths=(16, 32, 32), seed=5),
                              ema_warmup=EMA_WARMUP)
    resumed.load_state(tl.state())
    x, y = batches[3]
    for learner in (tl, resumed, sl):
        learner.set_lr(0.5)
        learner.train_step(x, y)
    for k, v in sl.weights().items():
        np.testing.assert_array_equal(resumed.weights()[k], tl.weights()[k], err_msg=k)
        np.testing.assert_allclose(tl.weights()[k], v, rtol=1e-7, atol=1e-10, err_msg=k)


def test_fit_with_the_better_recipe_is_the_same_run_on_both_backends(monkeypatch):
    """The whole recipe through scratchnet.train.fit, float64, on a tiny random dataset: make_learner builds
    both sides (whitening filters from the data, same seed), fit feeds them the same batches, reflect crops
    and alternating flips (2 epochs, so each image's flip changes), the EMA weights evaluate, the last epoch
    adds the 6 test-time views. The histories and the kept weights agree."""
    import scratchnet as sn
    from problems.p3.recipe import recipe_for
    from problems.p3.run import make_learner
    from scratchnet import train
    from scratchnet.data import augment
    from scratchnet.data.cifar import CifarData
    monkeypatch.setattr(train, "normalize", lambda x, mean, std: augment.normalize(x, mean, std, np.float64))
    rng = np.random.default_rng(0)
    data = CifarData(rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 48),
                     rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 20),
                     tuple("abcdefghij"), "random", None)
    recipe = recipe_for("better", epochs=2, batch_size=16)
    assert recipe.flip_mode == "alternating" and recipe.tta == 2
    runs = {}
    for backend in ("numpy", "torch"):
        with sn.backend.default_dtype_as(np.float64):
            learner = make_learner("better", backend, recipe, data, widths=(8, 16, 16))
        history = recipe.fit(learner, data, progress=False, log=lambda *a: None)
        runs[backend] = (history, learner.weights())
    (hs, ws), (ht, wt) = runs["numpy"], runs["torch"]
    np.testing.assert_allclose(ht.train_loss, hs.train_loss, rtol=1e-8)
    np.testing.assert_allclose(ht.test_loss, hs.test_loss, rtol=1e-8)
    assert ht.train_accuracy == hs.train_accuracy and ht.test_accuracy == hs.test_accuracy
    assert hs.final_test_accuracy_without_tta is not None
    assert ht.final_test_accuracy_without_tta == hs.final_test_accuracy_without_tta
    assert sorted(wt) == sorted(ws)
    for k in ws:
        np.testing.assert_allclose(wt[k], ws[k], rtol=1e-7, atol=1e-10, err_msg=k)


def _tiny_data(n_train=48, n_test=20, seed=0):
    from scratchnet.data.cifar import CifarData
    rng = np.random.default_rng(seed)
    return CifarData(rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n_train),
                     rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n_test),
                     tuple("abcdefghij"), "random", None)


def test_airbench_learners_match_over_steps_with_groups_decay_lookahead_and_freeze():
    """The airbench recipe's learner plan on both learners, float64: summed loss, SGD groups (batch-norm
    biases at 64x the lr), decoupled decay, the triangle schedule, Lookahead every 5 steps over weights and
    batch-norm statistics, the whitening bias frozen from epoch 2 (whiten_bias_epochs=1 here). Seven steps
    (a sync at 5), then finish(): losses, live weights, running statistics, the slow weights and the TTA
    logits are equal; the frozen bias moves only at the sync; a twin checkpoint resumes to the same step."""
    from problems.p3.recipe import EMA_WARMUP, TTA_VIEWS, AirbenchRecipe, recipe_for
    from scratchnet.train import ScratchnetLearner
    recipe = recipe_for("better", recipe="airbench", batch_size=4, whiten_bias_epochs=1)
    assert isinstance(recipe, AirbenchRecipe) and recipe.train.ema_decay == 0
    cfg = recipe.train
    net = _better_net(widths=(16, 32, 32))
    plan = recipe.learner_plan(net, n_train=8)  # 2 steps per epoch: T = ceil(9.9 * 2) = 20
    assert plan["lr_scales"] == {f"block{i}_bn{j}.bias": 64.0 for i in (1, 2, 3) for j in (1, 2)}
    assert plan["lookahead_decay"](20) == pytest.approx(0.95 ** 5) and plan["lookahead_decay"](10) < 0.1
    tl = tr.TorchLearner("better", cfg, "cpu", net=net, ema_warmup=EMA_WARMUP, **plan)  # copies the weights now
    sl = ScratchnetLearner(net, cfg, "numpy", ema_warmup=EMA_WARMUP, **recipe.scratchnet_options(plan))
    assert tl.dtype == torch.float64 and [len(g["params"]) for g in sl.optimizer.param_groups] == \
        [len(g["params"]) for g in tl.optimizer.param_groups]
    schedule = cfg.schedule_for(2)
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((4, 32, 32, 3)), rng.integers(0, 10, 4)) for _ in range(8)]
    bias = []
    for step, (x, y) in enumerate(batches[:7]):
        if step in (0, 3):
            sl.start_epoch(step // 3), tl.start_epoch(step // 3)
        lr = cfg.lr * schedule.factor(step)
        sl.set_lr(lr), tl.set_lr(lr)
        (ls, cs), (lt, ct) = sl.train_step(x, y), tl.train_step(x, y)
        np.testing.assert_allclose(ls, lt, rtol=1e-9)
        assert cs == ct
        bias.append(sl.model.whiten.bias.data.copy())
    assert not np.array_equal(bias[0], bias[1]) and not np.array_equal(bias[1], bias[2])  # trained in epoch 1
    np.testing.assert_array_equal(bias[3], bias[2])       # frozen: no gradient, no decay
    assert not np.array_equal(bias[4], bias[3])           # the Lookahead's sync after step 5 still moves it
    np.testing.assert_array_equal(bias[6], bias[4])       # ... and then it stays
    live_s, live_t = sl.model.state_dict(), tr.twin_state(tl.model)
    for k in live_s:
        np.testing.assert_allclose(live_t[k], live_s[k], rtol=1e-7, atol=1e-10, err_msg=k)
    checkpoint = tl.state()
    sl.finish(), tl.finish()
    slow_s, slow_t = sl.weights(), tl.weights()
    assert not np.allclose(slow_s["block2_conv2.weight"], live_s["block2_conv2.weight"])  # 2 fast steps undone
    assert not np.allclose(slow_s["block1_bn1.running_mean"], live_s["block1_bn1.running_mean"])  # stats too
    for k in slow_s:
        np.testing.assert_allclose(slow_t[k], slow_s[k], rtol=1e-7, atol=1e-10, err_msg=k)
    x = batches[7][0]
    np.testing.assert_allclose(tl.predict_logits(x, TTA_VIEWS[2]), sl.predict_logits(x, TTA_VIEWS[2]),
                               rtol=1e-7, atol=1e-10)
    a = tr.TorchLearner("better", cfg, "cpu", net=_better_net(widths=(16, 32, 32), seed=5), **plan)
    b = tr.TorchLearner("better", cfg, "cpu", net=_better_net(widths=(16, 32, 32), seed=6), **plan)
    a.load_state(checkpoint), b.load_state(checkpoint)
    for learner in (a, b):
        learner.start_epoch(3)
        learner.set_lr(cfg.lr * schedule.factor(7))
        learner.train_step(*batches[7])
        learner.train_step(*batches[6])  # step 9 of T: no sync; step 10 syncs
        learner.train_step(*batches[5])
    for k, v in a.weights().items():
        np.testing.assert_array_equal(b.weights()[k], v, err_msg=k)
    assert a.lookahead["t"] == 10


def test_fit_with_the_airbench_recipe_is_the_same_run_on_both_backends(monkeypatch):
    """The airbench recipe through fit, float64, 48 generated images, batch 8 (6 steps per epoch) over 1.75
    epochs (11 steps: the second epoch cut to 5), the whitening bias trained in the first epoch only:
    make_learner builds both sides (uncentered whitening from every patch, batch-norm eps 1e-12, the plan);
    histories (the last epoch on the Lookahead's slow weights, with the 6 test-time views) and the final
    weights agree."""
    import scratchnet as sn
    from problems.p3.recipe import recipe_for
    from problems.p3.run import make_learner
    from scratchnet import train
    from scratchnet.data import augment
    monkeypatch.setattr(train, "normalize", lambda x, mean, std: augment.normalize(x, mean, std, np.float64))
    data = _tiny_data()
    recipe = recipe_for("better", recipe="airbench", epochs=1.75, batch_size=8, whiten_bias_epochs=1)
    assert recipe.train.total_steps(6) == 11 and recipe.train.epoch_count == 2
    runs = {}
    for backend in ("numpy", "torch"):
        with sn.backend.default_dtype_as(np.float64):
            learner = make_learner("better", backend, recipe, data, widths=(8, 16, 16))
        w0 = learner.weights()["whiten.weight"]
        history = recipe.fit(learner, data, progress=False, log=lambda *a: None)
        runs[backend] = (history, learner.weights(), w0)
    (hs, ws, w0s), (ht, wt, w0t) = runs["numpy"], runs["torch"]
    np.testing.assert_array_equal(w0t, w0s)
    assert len(hs.train_loss) == 2 and hs.final_test_accuracy_without_tta is not None
    np.testing.assert_allclose(ht.train_loss, hs.train_loss, rtol=1e-8)
    np.testing.assert_allclose(ht.test_loss, hs.test_loss, rtol=1e-8)
    assert ht.train_accuracy == hs.train_accuracy and ht.test_accuracy == hs.test_accuracy
    assert ht.final_test_accuracy_without_tta == hs.final_test_accuracy_without_tta
    assert sorted(wt) == sorted(ws)
    for k in ws:
        np.testing.assert_allclose(wt[k], ws[k], rtol=1e-7, atol=1e-10, err_msg=k)


def test_script_trains_the_airbench_twin_and_records_the_recipe(repo_root, tmp_path):
    """`--model better --recipe airbench --backend torch` on a tiny generated CIFAR-10 (80 images, batch 16,
    1.5 epochs: 5 + 3 steps) records the airbench settings, the steps and the Lookahead."""
    import json
    import subprocess
    import sys
    make_pickles(tmp_path / "data", n_per_batch=16, n_test=20)
    r = subprocess.run([sys.executable, "problems/p3_small_cnn.py", "--model", "better", "--recipe", "airbench",
                        "--backend", "torch", "--epochs", "1.5", "--batch-size", "16", "--data-dir",
                        str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--no-progress"],
                       capture_output=True, text=True, cwd=repo_root, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["backend"] == "torch" and res["epochs"] == 1.5 and len(res["test_accuracy"]) == 2
    assert (res["steps_per_epoch"], res["total_steps"]) == (5, 8) and "stopped_after" not in res
    hp = res["hyperparameters"]
    assert hp["recipe"] == "airbench" and hp["lr_per_1024"] == 11.5 and hp["weight_decay_per_1024"] == 0.0153
    assert hp["batch_size"] == 16 and hp["schedule"] == "triangle" and hp["ema_decay"] == 0.0
    assert "Lookahead" in res["weight_averaging"] and "64x" in res["optimizer"]
    assert res["parameters"] == 1_971_352


def test_script_trains_the_better_twin_and_writes_results(repo_root, tmp_path):
    """`--model better --backend torch` runs one epoch on a tiny generated CIFAR-10 and records the run as
    the twin's, with the recipe's settings and weights that load into scratchnet's better net."""
    import json
    import subprocess
    import sys

    from problems.p3 import models
    from scratchnet.io import load_npz
    make_pickles(tmp_path / "data", n_per_batch=16, n_test=20)
    r = subprocess.run([sys.executable, "problems/p3_small_cnn.py", "--model", "better", "--backend", "torch",
                        "--epochs", "1", "--batch-size", "16", "--data-dir", str(tmp_path / "data"),
                        "--out", str(tmp_path / "out"), "--no-progress"],
                       capture_output=True, text=True, cwd=repo_root, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["backend"] == "torch" and res["model"] == "better" and res["device"] in ("cpu", "cuda")
    assert len(res["test_accuracy"]) == 1 and res["final_test_accuracy_without_tta"] is not None
    hp = res["hyperparameters"]
    assert (hp["flip_mode"], hp["tta"], hp["ema_decay"], hp["label_smoothing"]) == ("alternating", 2, 0.98, 0.2)
    assert res["parameters"] == 1_971_352
    weights = load_npz(tmp_path / "out" / "weights.npz")
    net = models.better_net()
    net.load_state_dict(weights, strict=True)
    assert np.abs(weights["whiten.weight"]).max() > 0  # the whitening filters computed from the data
