"""Pieces of P3 part 3's recipe: whitening init, Dirac init, EMA, test-time augmentation, alternating flips."""
from pathlib import Path

import numpy as np
import pytest

import scratchnet as sn
from problems.p3 import models
from problems.p3.recipe import EMA_WARMUP, TTA_VIEWS
from scratchnet import nn, optim
from scratchnet.data.augment import alternating_flip
from scratchnet.init import dirac_init, patch_whitening_filters
from scratchnet.kernels.conv import windows
from scratchnet.nn import layer_table
from scratchnet.train import tta_logits


def test_whitening_filters_decorrelate_training_patches():
    rng = np.random.default_rng(0)
    # correlated "images": smooth random fields, so neighbouring pixels and channels are correlated
    base = rng.standard_normal((200, 17, 17, 3))
    imgs = base[:, :16, :16] + 0.6 * base[:, 1:, :16] + 0.3 * base[:, :16, 1:]
    imgs = imgs @ rng.standard_normal((3, 3)) + 0.2
    w = patch_whitening_filters(imgs, kernel=2, eps=1e-8)
    assert w.shape == (2, 2, 3, 24)
    patches = windows(imgs, 2, 2, 1).reshape(-1, 12)
    patches = patches - patches.mean(axis=0)
    out = patches @ w.reshape(12, 24)[:, :12]     # the 12 positive filters
    cov = out.T @ out / len(out)
    np.testing.assert_allclose(cov, np.eye(12), atol=1e-3)
    np.testing.assert_allclose(w[..., 12:], -w[..., :12])


def test_dirac_init_makes_the_conv_an_identity_on_its_first_channels():
    conv = dirac_init(nn.Conv2d(4, 6, 3, padding=1, bias=False, rng=0))
    x = np.random.default_rng(1).standard_normal((2, 5, 5, 4)).astype(np.float32)
    y = conv(sn.Tensor(x)).data
    np.testing.assert_allclose(y[..., :4], x, atol=1e-6)
    assert np.abs(y[..., 4:]).max() > 0.1  # the extra channels keep their random filters


def test_better_net_shapes_frozen_whitening_and_state():
    w = patch_whitening_filters(np.random.default_rng(0).standard_normal((20, 32, 32, 3)))
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

    np.testing.assert_allclose(tta_logits(predict, x, TTA_VIEWS[0]), predict(x))
    np.testing.assert_allclose(tta_logits(predict, x, TTA_VIEWS[1]), (predict(x) + predict(x[:, :, ::-1])) / 2)
    assert tta_logits(predict, x, TTA_VIEWS[2]).shape == (3, 2)
    # level 2 adds the image and its mirror moved one pixel down-right and up-left, edges reflected
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    views = [x, x[:, :, ::-1]] + [v for d in (0, 2) for s in [padded[:, d:d + 6, d:d + 6]] for v in (s, s[:, :, ::-1])]
    np.testing.assert_array_equal(tta_logits(predict, x, TTA_VIEWS[2]), sum(predict(v) for v in views) / 6)


def test_checkpoints_of_scratchnet_0_1_still_resume(tmp_path):
    """0.1 recorded P3's flip_mode and tta among the TrainConfig's fields: the flat dict that a recipe's
    settings give now, so its checkpoints resume under the same recipe; at their plain values (random
    flips, no test-time views) they resume without one."""
    from scratchnet import train
    cfg = train.TrainConfig(epochs=1)
    learner = train.ScratchnetLearner(models.small_cnn(seed=0), cfg)
    rng, history = np.random.default_rng(0), train.History()
    (tmp_path / "p3").mkdir()
    (tmp_path / "plain").mkdir()
    p3 = {"flip_mode": "alternating", "tta": 2}
    train.save_checkpoint(tmp_path / "p3", learner, 1, rng, history, cfg, settings=p3)
    assert train.load_checkpoint(tmp_path / "p3", learner, cfg, settings=p3)[0] == 1
    with pytest.raises(ValueError, match="flip_mode"):
        train.load_checkpoint(tmp_path / "p3", learner, cfg)
    train.save_checkpoint(tmp_path / "plain", learner, 1, rng, history, cfg, settings={"flip_mode": "random", "tta": 0})
    assert train.load_checkpoint(tmp_path / "plain", learner, cfg)[0] == 1
    with pytest.raises(ValueError, match="TrainConfig fields"):
        train.recorded_settings(cfg, {"lr": 1.0})


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
    cfg = TrainConfig(ema_decay=0.9, lr=0.05)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    a = ScratchnetLearner(models.small_cnn(batch_norm=True, seed=0), cfg, ema_warmup=EMA_WARMUP)
    for _ in range(3):
        a.train_step(x, y)
    b = ScratchnetLearner(models.small_cnn(batch_norm=True, seed=1), cfg, ema_warmup=EMA_WARMUP)
    b.load_weights(a.weights())
    views = TTA_VIEWS[1]
    np.testing.assert_allclose(b.predict_logits(x, views), a.predict_logits(x, views), rtol=1e-5, atol=1e-5)


def test_layer_table_counts_parameters_shapes_and_flops():
    small = models.small_cnn(seed=0)
    rows = {r["layer"]: r for r in layer_table(small)}
    assert rows["conv1"]["output_shape"] == [22, 22, 64]
    assert rows["conv1"]["flops"] == 2 * 22 * 22 * 11 * 11 * 3 * 64
    assert rows["fc"]["flops"] == 2 * 128 * 10 and rows["fc"]["output_shape"] == [10]
    assert sum(r["parameters"] for r in rows.values()) == small.num_parameters()
    better = models.better_net(seed=0)
    rows = {r["layer"]: r for r in layer_table(better)}
    assert rows["whiten"]["fixed_weights"] == 2 * 2 * 3 * 24 and rows["whiten"]["parameters"] == 24
    assert rows["block3_pool"]["output_shape"] == [3, 3, 256]
    assert sum(r["parameters"] for r in rows.values()) == better.num_parameters()
    assert better.training  # the table's eval-mode forward pass leaves the mode as it was


def test_better_net_ablation_switches():
    base = models.better_net(seed=0)
    no_dirac = models.better_net(seed=0, dirac=False)
    w = base.block2_conv2.weight.data
    assert w[1, 1, 0, 0] == 1.0 and w[0, 0, 0, 0] == 0.0  # Dirac: the centre tap passes channel 0 through
    assert not np.allclose(no_dirac.block2_conv2.weight.data[:, :, :, :256], w[:, :, :, :256])
    trained = models.better_net(seed=0, train_whitening=True)
    assert trained.num_parameters() == base.num_parameters() + 2 * 2 * 3 * 24
    x = sn.Tensor(np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32))
    base.fc.weight.data[...] = 1.0
    unscaled = models.better_net(seed=0, logit_scale=1.0)
    unscaled.fc.weight.data[...] = 1.0
    base.eval(), unscaled.eval()
    np.testing.assert_allclose(base(x).data * 9, unscaled(x).data, rtol=1e-5, atol=1e-5)


def test_ablation_script_runs_variants_and_writes_results(repo_root, data_root, tmp_path):
    import json
    import subprocess
    import sys
    if not ((data_root / "cifar10").is_dir() or (data_root / "cifar-10-batches-py").is_dir()):
        pytest.skip("no CIFAR-10 under the data root")
    out = tmp_path / "ablation"
    r = subprocess.run([sys.executable, "problems/p3_better_ablation.py", "--variants", "full", "no_ema",
                        "--epochs", "1", "--limit-per-class", "8", "--val-per-class", "4", "--seeds", "1",
                        "--batch-size", "32", "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, cwd=repo_root, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "ablation.json").read_text())
    assert [v["variant"] for v in res["variants"]] == ["full", "no_ema"]
    assert res["evaluated_on"].startswith("validation split") and res["n_validation"] == 40 and "n_test" not in res
    for v in res["variants"]:   # scored on the held-out training images, never on the test set
        assert 0.0 <= v["final_val_accuracy"] <= 1.0 and len(v["val_accuracy"]) == 1 and "final_test_accuracy" not in v
    assert res["variants"][0]["final_val_accuracy_without_tta"] is not None  # the recipe's TTA is on
    assert "validation accuracy" in res["discussion"] and "test accuracy" not in res["discussion"]
    assert (out / res["figures"]["ablation"]).is_file() and "Without weight averaging" in res["discussion"]
    assert not list((out / "runs").glob("*/checkpoint.npz"))  # finished runs keep run.json only
    bad = subprocess.run([sys.executable, "problems/p3_better_ablation.py", "--limit-per-class", "2",
                          "--out", str(tmp_path / "bad")], capture_output=True, text=True, cwd=repo_root, timeout=600)
    assert bad.returncode == 2 and "fewer than one batch" in bad.stderr and "Traceback" not in bad.stderr


def test_p3_script_better_writes_rationale_ablation_and_time_plot(repo_root, data_root, tmp_path):
    import json
    import subprocess
    import sys
    if not ((data_root / "cifar10").is_dir() or (data_root / "cifar-10-batches-py").is_dir()):
        pytest.skip("no CIFAR-10 under the data root")
    ablation = tmp_path / "ablation.json"
    ablation.write_text(json.dumps({"seed": 0, "budget": "tiny", "discussion": "d", "variants": [
        {"variant": "full", "seed": 0, "removed": "nothing", "final_test_accuracy": 0.5, "diverged": False},
        {"variant": "no_ema", "seed": 0, "removed": "EMA", "final_test_accuracy": None, "diverged": True}]}))
    out = tmp_path / "better"
    r = subprocess.run([sys.executable, "problems/p3_small_cnn.py", "--model", "better", "--epochs", "1",
                        "--limit-per-class", "8", "--batch-size", "32", "--ablation", str(ablation),
                        "--out", str(out), "--no-progress"], capture_output=True, text=True, cwd=repo_root,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["rationale"] and res["layers"][0]["layer"] == "whiten"
    assert [a["variant"] for a in res["ablation"]] == ["full", "no_ema"] and "diverged" in res["ablation"][1]["note"]
    assert (out / res["figures"]["accuracy_vs_time"]).is_file()
    assert "Dirac" in res["initialisation"] and res["final_test_accuracy_without_tta"] is not None


def test_ablation_resume_continues_an_interrupted_run_exactly(repo_root, data_root, tmp_path, monkeypatch, capsys):
    """Kill a 2-epoch run right after its epoch-1 checkpoint; --resume must finish it with the numbers of an
    uninterrupted run, reuse the finished one, and refuse a run folder made with other data."""
    import json

    import problems.p3.ablation_cli as A
    from scratchnet import train
    if not ((data_root / "cifar10").is_dir() or (data_root / "cifar-10-batches-py").is_dir()):
        pytest.skip("no CIFAR-10 under the data root")
    flags = ["--variants", "full", "no_ema", "--epochs", "2", "--limit-per-class", "8", "--val-per-class", "4",
             "--seeds", "1", "--batch-size", "32", "--no-progress", "--data-dir", str(data_root)]
    assert A.main(flags + ["--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "ablation.json").read_text())["variants"]

    save = train.save_checkpoint
    def save_then_die(folder, learner, epoch, *rest, **kw):
        save(folder, learner, epoch, *rest, **kw)
        if "no_ema" in str(folder) and epoch == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(train, "save_checkpoint", save_then_die)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        A.main(flags + ["--out", str(cut)])
    monkeypatch.setattr(train, "save_checkpoint", save)
    capsys.readouterr()
    assert A.main(flags + ["--out", str(cut), "--resume"]) == 0
    said = capsys.readouterr().out
    assert "[full, seed 0] finished earlier" in said and "[no_ema, seed 0] resumed from" in said
    resumed = json.loads((cut / "ablation.json").read_text())["variants"]
    for a, b in zip(whole, resumed):
        assert a["train_loss"] == b["train_loss"] and a["val_accuracy"] == b["val_accuracy"], (a, b)
    with pytest.raises(A.UserError, match="other settings"):   # same recipe, other data: not resumable
        A.main([f if f != "8" else "9" for f in flags] + ["--out", str(cut), "--resume"])


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_ablation_validation_split_is_balanced_and_disjoint(order):
    """The JPEG copy loads sorted by class (the last images would all be trucks), the pickles mixed: either
    way the split takes the last V of every class and the training subset the first K, never the same image."""
    from problems.common.cli import UserError
    from problems.p3.ablation import held_out, validation_split
    from scratchnet.data.cifar import CifarData
    labels = np.repeat(np.arange(10), 20)
    if order == "shuffled":
        labels = np.random.default_rng(0).permutation(labels)
    train, val = validation_split(labels, 5, 4)
    assert not set(train) & set(val)
    assert np.bincount(labels[train], minlength=10).tolist() == [5] * 10
    assert np.bincount(labels[val], minlength=10).tolist() == [4] * 10
    for c in range(10):      # the last 4 of each class validate, the first 5 train
        idx = np.flatnonzero(labels == c)
        assert set(val) >= set(idx[-4:]) and set(train) >= set(idx[:5])
    with pytest.raises(UserError, match="fewer than 17 to train on plus 4"):
        validation_split(labels, 17, 4)
    x = np.arange(200, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    data = CifarData(x, labels, x[:7], labels[:7], tuple("abcdefghij"), "test data", Path("."))
    split = held_out(data, 5, 4)
    assert len(split.train_y) == 50 and len(split.test_y) == 40          # the test images are not used
    assert not set(split.train_x[:, 0, 0, 0]) & set(split.test_x[:, 0, 0, 0])
