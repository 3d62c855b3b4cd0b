"""Pieces of P3 part 3's recipe: whitening init, Dirac init, EMA, test-time augmentation, alternating flips."""
import numpy as np
import pytest

import scratchnet as sn
from scratchnet import functional as F
from scratchnet import models, nn, optim
from scratchnet.data.augment import alternating_flip
from scratchnet.kernels.conv import windows
from scratchnet.train import tta_logits


def test_whitening_filters_decorrelate_training_patches():
    rng = np.random.default_rng(0)
    # correlated "images": smooth random fields, so neighbouring pixels and channels are correlated
    base = rng.standard_normal((200, 17, 17, 3))
    imgs = base[:, :16, :16] + 0.6 * base[:, 1:, :16] + 0.3 * base[:, :16, 1:]
    imgs = imgs @ rng.standard_normal((3, 3)) + 0.2
    w = models.patch_whitening_filters(imgs, kernel=2, eps=1e-8)
    assert w.shape == (2, 2, 3, 24)
    patches = windows(imgs, 2, 2, 1).reshape(-1, 12)
    patches = patches - patches.mean(axis=0)
    out = patches @ w.reshape(12, 24)[:, :12]     # the 12 positive filters
    cov = out.T @ out / len(out)
    np.testing.assert_allclose(cov, np.eye(12), atol=1e-3)
    np.testing.assert_allclose(w[..., 12:], -w[..., :12])


def test_dirac_init_makes_the_conv_an_identity_on_its_first_channels():
    conv = models.dirac_init(nn.Conv2d(4, 6, 3, padding=1, bias=False, rng=0))
    x = np.random.default_rng(1).standard_normal((2, 5, 5, 4)).astype(np.float32)
    y = conv(sn.Tensor(x)).data
    np.testing.assert_allclose(y[..., :4], x, atol=1e-6)
    assert np.abs(y[..., 4:]).max() > 0.1  # the extra channels keep their random filters


def test_better_net_shapes_frozen_whitening_and_state():
    w = models.patch_whitening_filters(np.random.default_rng(0).standard_normal((20, 32, 32, 3)))
    net = models.better_net(w, widths=(8, 16, 16))
    out = net(sn.Tensor(np.zeros((2, 32, 32, 3), np.float32)))
    assert out.shape == (2, 10)
    names = [n for n, _ in net.named_parameters()]
    assert "whiten.weight" not in names and "whiten.bias" in names
    assert "whiten.weight" in net.state_dict()
    np.testing.assert_allclose(net.state_dict()["whiten.weight"], w.astype(np.float32))


def test_ema_tracks_and_swaps():
    p = nn.Parameter(np.zeros(3))
    ema = optim.EMA([p], decay=0.5)
    for v in (2.0, 4.0):
        p.data = np.full(3, v)
        ema.update()
    np.testing.assert_allclose(ema.shadow[0], 0.25 * 0 + 0.25 * 2 + 0.5 * 4)
    ema.swap()
    np.testing.assert_allclose(p.data, 2.5)
    ema.swap()
    np.testing.assert_allclose(p.data, 4.0)


def test_tta_averages_mirror_and_shift_views():
    x = np.random.default_rng(0).standard_normal((3, 6, 6, 2))

    def predict(v):
        return v[:, :, :3].sum(axis=(1, 2))  # a deliberately asymmetric "model"

    np.testing.assert_allclose(tta_logits(predict, x, 0), predict(x))
    np.testing.assert_allclose(tta_logits(predict, x, 1), (predict(x) + predict(x[:, :, ::-1])) / 2)
    assert tta_logits(predict, x, 2).shape == (3, 2)


def test_alternating_flip_alternates_per_image():
    x = np.arange(4 * 1 * 3 * 1, dtype=float).reshape(4, 1, 3, 1)
    idx = np.array([0, 1, 2, 3])
    e0 = alternating_flip(x, idx, epoch=0, n_total=10, seed=1)
    e1 = alternating_flip(x, idx, epoch=1, n_total=10, seed=1)
    for i in range(4):
        flipped0 = not np.array_equal(e0[i], x[i])
        flipped1 = not np.array_equal(e1[i], x[i])
        assert flipped0 != flipped1                       # each image flipped in exactly one of two epochs
        assert np.array_equal(e0[i], x[i]) or np.array_equal(e0[i], x[i, :, ::-1])
    # the same image gets the same decision whatever batch it lands in
    alone = alternating_flip(x[2:3], idx[2:3], epoch=0, n_total=10, seed=1)
    np.testing.assert_array_equal(alone[0], e0[2])


def test_ema_learner_weights_reload_to_the_same_predictions():
    from scratchnet.train import ScratchnetLearner, TrainConfig
    cfg = TrainConfig(ema_decay=0.9, tta=1, lr=0.05)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    a = ScratchnetLearner(models.small_cnn(batch_norm=True, seed=0), cfg)
    for _ in range(3):
        a.train_step(x, y)
    b = ScratchnetLearner(models.small_cnn(batch_norm=True, seed=1), cfg)
    b.load_weights(a.weights())
    np.testing.assert_allclose(b.predict_logits(x), a.predict_logits(x), rtol=1e-5, atol=1e-5)
