"""P3 parts 1-2: the networks, the training loop (loss falls on real images, exact resume) and the script."""
import json
import subprocess
import sys

import numpy as np
import pytest

import scratchnet as sn
from problems.p3 import models
from scratchnet.data import load_cifar10
from scratchnet.train import ScratchnetLearner, TrainConfig, fit
from train_helpers import assert_resume_is_exact

SCRIPT = "problems/p3_small_cnn.py"


@pytest.fixture(scope="module")
def cifar_small(data_root):
    if not ((data_root / "cifar10").is_dir() or (data_root / "cifar-10-batches-py").is_dir()):
        pytest.skip("no CIFAR-10 under the data root")
    return load_cifar10(data_root, limit_per_class=26, progress=False, use_cache=False)  # 260 + 260 images


@pytest.mark.parametrize("bn", [False, True])
def test_network_shapes_and_parameter_count(bn):
    net = models.small_cnn(batch_norm=bn)
    out = net(sn.Tensor(np.zeros((2, 32, 32, 3), np.float32)))
    assert out.shape == (2, 10)
    convs = 11 * 11 * 3 * 64 + 3 * 3 * 64 * 128 + 3 * 3 * 128 * 128
    extra = (64 + 128 + 128) * 2 if bn else 64 + 128 + 128  # BN gamma+beta, or conv biases
    assert net.num_parameters() == convs + extra + 128 * 10 + 10
    assert net.conv1.weight.shape == (11, 11, 3, 64)


@pytest.mark.parametrize("bn", [False, True])
def test_few_steps_on_real_images_lower_the_loss(cifar_small, bn):
    data = cifar_small
    net = models.small_cnn(batch_norm=bn, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05 if bn else 0.02, seed=0, schedule="constant",
                      crop_padding=0, flip=False)
    learner = ScratchnetLearner(net, cfg)
    from scratchnet.data.augment import channel_stats, normalize
    mean, std = channel_stats(data.train_x)
    x = normalize(data.train_x[:64], mean, std)
    y = data.train_y[:64]
    losses = [learner.train_step(x, y)[0] for _ in range(12)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(cifar_small, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=3)

    assert_resume_is_exact(lambda: ScratchnetLearner(models.small_cnn(batch_norm=True, seed=3), cfg),
                           cifar_small, cfg, tmp_path)


def test_resume_refuses_other_settings(cifar_small, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=128, seed=0)
    fit(ScratchnetLearner(models.small_cnn(), cfg), cifar_small, cfg, out_dir=tmp_path, progress=False,
        log=lambda s: None)
    other = TrainConfig(epochs=1, batch_size=128, seed=0, lr=0.3)
    with pytest.raises(ValueError, match="other settings"):
        fit(ScratchnetLearner(models.small_cnn(), other), cifar_small, other, out_dir=tmp_path, resume=True,
            progress=False, log=lambda s: None)


def run_script(*args, cwd):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_script_trains_writes_results_and_evaluates_weights(repo_root, tmp_path, cifar_small):
    out = tmp_path / "run"
    r = run_script("--model", "small", "--epochs", "1", "--limit-per-class", "12", "--batch-size", "32",
                   "--out", str(out), "--no-progress", cwd=repo_root)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    for key in ("model", "backend", "epochs", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                "epoch_seconds", "images_per_second", "final_test_accuracy", "seconds", "command",
                "hyperparameters", "initialisation", "figures", "discussion"):
        assert key in res, key
    assert 0.0 <= res["final_test_accuracy"] <= 1.0 and res["n_test"] == 120
    assert (out / "filters.png").is_file() and (out / "loss.png").is_file() and (out / "weights.npz").is_file()
    ev = tmp_path / "eval"
    r = run_script("--model", "small", "--eval-only", "--weights", str(out / "weights.npz"), "--limit-per-class",
                   "12", "--out", str(ev), cwd=repo_root)
    assert r.returncode == 0, r.stderr
    again = json.loads((ev / "results.json").read_text())
    assert abs(again["final_test_accuracy"] - res["final_test_accuracy"]) < 1e-9
    r = run_script("--compare", str(out / "results.json"), str(out / "results.json"), "--out", str(ev),
                   cwd=repo_root)
    assert r.returncode == 0 and (ev / "loss_bn_comparison.png").is_file()


def test_script_scores_on_the_validation_split_and_the_report_refuses_it(repo_root, tmp_path, cifar_small):
    """--val-per-class: trains on all but the last V images of each class, scores on those, never on the test
    set; results.json says so, and the report will not show the run as a test accuracy."""
    from problems.p3.result import P3Result
    out = tmp_path / "val"
    r = run_script("--model", "small", "--epochs", "1", "--limit-per-class", "12", "--val-per-class", "4",
                   "--batch-size", "32", "--out", str(out), "--no-progress", cwd=repo_root)
    assert r.returncode == 0, r.stderr
    assert "final validation accuracy" in r.stdout and "on 40 validation images" in r.stdout
    res = P3Result.read(out / "results.json")
    assert res.n_train == 80 and res.n_test == 40 and res.evaluated_on.startswith("validation split")
    assert "validation accuracy" in res.discussion
    assert "not the test set" in res.unfit_for_report()
    split, res.evaluated_on = res.evaluated_on, None
    assert res.unfit_for_report() is None
    # the saved weights scored again on the same held-out images, with another number of test-time views
    w = tmp_path / "w"
    w.mkdir()
    (w / "v.npz").write_bytes((out / "weights.npz").read_bytes())
    (w / "v.json").write_text((out / "results.json").read_text())
    for tta in ("0", "3"):
        ev = tmp_path / f"ev{tta}"
        r = run_script("--model", "small", "--eval-only", "--weights", str(w / "v.npz"), "--limit-per-class", "12",
                       "--val-per-class", "4", "--tta", tta, "--out", str(ev), "--no-progress", cwd=repo_root)
        assert r.returncode == 0, r.stderr
        assert "validation accuracy" in r.stdout and "on 40 validation images" in r.stdout
        again = P3Result.read(ev / "results.json")
        assert again.evaluated_on == split and again.hyperparameters.tta == int(tta)
        assert "not the test set" in again.unfit_for_report()
        if tta == "0":   # no views: the same single-view score as the training run's last epoch
            assert again.final_test_accuracy == res.final_test_accuracy
        else:
            assert again.final_test_accuracy_without_tta == res.final_test_accuracy


@pytest.mark.parametrize("args,needle", [
    (["--val-per-class", "3", "--compare", "a.json", "b.json"], "--val-per-class belongs to training"),
    (["--model", "small", "--eval-only", "--weights", "w.npz", "--val-per-class", "3", "--recorded-if-no-data"],
     "not with --val-per-class"),
    (["--tta", "4"], "--tta"),
    (["--tta", "3", "--compare", "a.json", "b.json"], "--tta belongs to training or --eval-only"),
    (["--model", "small", "--eval-only", "--weights", "weights/p3_small.npz", "--tta", "1"],
     "scores the validation split only"),
    (["--model", "small", "--eval-only", "--weights", "weights/p3_small.npz", "--val-per-class", "4"],
     "was not trained with it"),
    (["--model", "small", "--cutout", "8"], "--cutout belongs to --model better"),
    (["--model", "better", "--crop-padding", "16"], "at most 15 pixels"),
    (["--model", "better", "--crop-padding", "-1"], "--crop-padding"),
    (["--model", "better", "--cutout", "33"], "at most 32 pixels"),
    (["--model", "better", "--eval-only", "--weights", "w.npz", "--cutout", "8"], "belongs to training"),
    (["--val-per-class", "0"], "--val-per-class"),
    (["--limit-per-class", "4", "--val-per-class", "4", "--epochs", "1"], "fewer than 1 to train on plus 4"),
    (["--epochs", "0"], "--epochs"),
    (["--backend", "tpu"], "--backend"),
    (["--label-smoothing", "1.5"], "--label-smoothing"),
    (["--data-dir", "/nonexistent/root"], "no CIFAR-10 under data root /nonexistent/root"),
    (["--model", "small", "--eval-only", "--weights", "/nonexistent.npz"], "does not exist"),
    (["--compare", "/nope/a.json", "/nope/b.json"], "does not exist"),
    (["--limit-per-class", "2", "--epochs", "1"], "fewer than one batch"),
    (["--model", "small", "--eval-only", "--weights", "README.md", "--limit-per-class", "2"], "not a readable .npz"),
    (["--model", "better", "--eval-only", "--weights", "weights/p3_better.npz", "--ablation", "/nope/ab.json",
      "--limit-per-class", "2"], "ablation file /nope/ab.json does not exist"),
    (["--model", "better", "--eval-only", "--weights", "weights/p3_better.npz", "--ablation", "README.md",
      "--limit-per-class", "2"], "is not the ablation.json"),
])
def test_bad_input_is_one_line_and_exit_2(repo_root, data_root, tmp_path, args, needle):
    has_cifar = (data_root / "cifar10").is_dir() or (data_root / "cifar-10-batches-py").is_dir()
    if needle.startswith("fewer than") and not has_cifar:
        pytest.skip("this check needs CIFAR-10 under the data root")  # every other case fails before loading data
    r = run_script(*args, "--out", str(tmp_path / "out"), cwd=repo_root)  # never write into the repo
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_cupy_backend_without_gpu_is_one_clear_line(repo_root):
    if sn.backend.cupy_available():
        pytest.skip("CuPy and a GPU are present")
    r = run_script("--backend", "cupy", cwd=repo_root)
    assert r.returncode == 2 and "cupy" in r.stderr.lower() and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_torch_reference_backend_runs_through_the_script(repo_root, tmp_path):
    """--backend torch trains through the same loop (its learner takes the loop's tta argument) and
    records where it ran; a tiny generated dataset, so no real data is needed."""
    from cifar_helpers import make_pickles
    make_pickles(tmp_path / "data", n_per_batch=16, n_test=20)
    r = run_script("--backend", "torch", "--model", "small", "--epochs", "1", "--batch-size", "16",
                   "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--no-progress",
                   cwd=repo_root)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["backend"] == "torch" and res["device"] in ("cpu", "cuda") and len(res["test_accuracy"]) == 1
    assert (tmp_path / "out" / "filters.png").is_file()


def test_stop_after_keeps_the_full_schedule_and_the_twin_check_compares_those_epochs(repo_root, tmp_path):
    """--stop-after K: the first K epochs equal those of a run over the whole schedule (same learning rates,
    batches), the results say it stopped; the twin check pairs a scratchnet run with a PyTorch one."""
    from cifar_helpers import make_pickles
    make_pickles(tmp_path / "data", n_per_batch=16, n_test=20)
    common = ["--model", "small", "--epochs", "3", "--batch-size", "16", "--data-dir", str(tmp_path / "data"),
              "--no-progress"]
    assert run_script(*common, "--out", str(tmp_path / "whole"), cwd=repo_root).returncode == 0
    r = run_script(*common, "--stop-after", "2", "--out", str(tmp_path / "part"), cwd=repo_root)
    assert r.returncode == 0, r.stderr
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    part = json.loads((tmp_path / "part" / "results.json").read_text())
    assert part["stopped_after"] == 2 and part["epochs"] == 3 and part["hyperparameters"]["epochs"] == 3
    assert "stopped_after" not in whole
    assert part["train_loss"] == whole["train_loss"][:2] and part["test_accuracy"] == whole["test_accuracy"][:2]
    r = run_script(*common, "--backend", "torch", "--stop-after", "2", "--out", str(tmp_path / "torch"), cwd=repo_root)
    assert r.returncode == 0, r.stderr
    check = subprocess.run([sys.executable, "problems/p3_twin_check.py", "--pair",
                            str(tmp_path / "whole" / "results.json"), str(tmp_path / "torch" / "results.json"),
                            "--out", str(tmp_path / "check")],
                           capture_output=True, text=True, cwd=repo_root, timeout=600)
    assert check.returncode == 0, check.stderr
    res = json.loads((tmp_path / "check" / "results.json").read_text())
    (m,) = res["models"]
    assert m["model"] == "small" and m["schedule_epochs"] == 3 and [e["epoch"] for e in m["epochs"]] == [1, 2]
    assert m["epochs"][1]["scratchnet_test_accuracy"] == whole["test_accuracy"][1]
    assert "first 2 epochs of the 3-epoch schedule" in res["discussion"][1]
    # a committed check re-read: same numbers, marked as recorded
    again = subprocess.run([sys.executable, "problems/p3_twin_check.py", "--from-recorded",
                            str(tmp_path / "check" / "results.json"), "--out", str(tmp_path / "again")],
                           capture_output=True, text=True, cwd=repo_root, timeout=600)
    assert again.returncode == 0, again.stderr
    redrawn = json.loads((tmp_path / "again" / "results.json").read_text())
    assert redrawn["models"] == res["models"] and redrawn["recorded_from"]
    # runs that are not twins are refused in one line: another recipe, or two scratchnet runs
    other = run_script(*common, "--lr", "0.05", "--backend", "torch", "--stop-after", "1",
                       "--out", str(tmp_path / "other"), cwd=repo_root)
    assert other.returncode == 0, other.stderr
    for pair, needle in (([tmp_path / "whole", tmp_path / "other"], "the recipes differ in lr (0.02 vs 0.05)"),
                         ([tmp_path / "whole", tmp_path / "part"], "is the PyTorch twin's")):
        bad = subprocess.run([sys.executable, "problems/p3_twin_check.py", "--pair",
                              *[str(p / "results.json") for p in pair], "--out", str(tmp_path / "bad")],
                             capture_output=True, text=True, cwd=repo_root, timeout=600)
        assert bad.returncode == 2 and needle in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


@pytest.mark.parametrize("args,needle", [
    (["--epochs", "2", "--stop-after", "3"], "more than the schedule's 2 epochs"),
    (["--model", "small", "--eval-only", "--weights", "weights/p3_small.npz", "--stop-after", "1"],
     "--stop-after belongs to training"),
])
def test_stop_after_bad_input(repo_root, tmp_path, args, needle):
    r = run_script(*args, "--out", str(tmp_path / "out"), cwd=repo_root)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_twin_check_needs_pairs_or_a_recording(repo_root, tmp_path):
    for args, needle in (([], "give --pair"), (["--from-recorded", str(tmp_path / "nope.json")], "does not exist")):
        r = subprocess.run([sys.executable, "problems/p3_twin_check.py", *args, "--out", str(tmp_path / "o")],
                           capture_output=True, text=True, cwd=repo_root, timeout=600)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
