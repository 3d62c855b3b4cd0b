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
