"""Bad input across the scripts and the library's readers: one clear line, exit status 2, no traceback,
and no work done first. (Each problem's own tests cover its data and flags; these are the cross-cutting
cases: output folders, seeds, non-finite numbers, malformed files.)"""
import argparse
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from problems.common import cli
from problems.common.cli import UserError, run_main

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd=REPO):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


# ------------------------------------------------------------------------------ argument types
def test_output_folder_accepts_new_and_existing_folders_and_refuses_files(tmp_path):
    assert cli.output_folder(str(tmp_path)) == tmp_path
    assert cli.output_folder(str(tmp_path / "a" / "b")) == tmp_path / "a" / "b"   # made later, not now
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    for bad, words in [("", "empty"), ("  ", "empty"), (str(tmp_path / "file"), "is a file"),
                       (str(tmp_path / "file" / "sub"), "is a file")]:
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            cli.output_folder(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder"):
        cli.output_file(str(tmp_path))
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        cli.output_file(str(tmp_path / "file" / "r.json"))
    assert cli.folder_path(str(tmp_path / "new")) == tmp_path / "new"   # may be read-only: only read from
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        cli.folder_path(str(tmp_path / "file"))
    assert cli.output_file(str(tmp_path / "new" / "r.json")) == tmp_path / "new" / "r.json"


def test_numeric_types_refuse_what_would_break_later():
    assert cli.seed_value("0") == 0 and cli.seed_value(str(2 ** 32 - 1)) == 2 ** 32 - 1
    for bad in ("-1", str(2 ** 32), "99999999999999999999", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.seed_value(bad)
    for bad in ("inf", "-inf", "nan", "0", "1e400"):   # 1e400 parses as inf
        with pytest.raises(argparse.ArgumentTypeError):
            cli.positive_float(bad)
    assert cli.unit_interval("0") == 0 and cli.unit_interval("1") == 1
    for bad in ("nan", "-0.1", "1.01", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.unit_interval(bad)


def test_run_main_turns_a_refused_write_into_one_line(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")

    def main(argv):
        (target / "results.json").write_text("{}")   # a file where a folder should be: NotADirectoryError

    assert run_main(main, []) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot read or write") and "results.json" in err[0]


@pytest.mark.parametrize("script", ["problems/p1_pretrained.py", "problems/p2_transfer.py",
                                    "problems/p3_small_cnn.py", "problems/p3_better_ablation.py",
                                    "problems/p3_twin_check.py",
                                    "problems/p4_adversarial.py", "problems/p4_study.py", "problems/p5_rnn_adder.py",
                                    "report/make_report.py", "report/build_report.py"])
def test_every_script_refuses_an_unusable_out_before_any_work(tmp_path, script):
    (tmp_path / "file").write_text("x")
    r = run(script, "--out", tmp_path / "file")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--out" in r.stderr and "is a file" in r.stderr, r.stderr


# A unique prefix of a flag (argparse's default) would silently mean the long flag: --epoch 3 = --epochs 3.
@pytest.mark.parametrize("script, prefix", [
    ("problems/p1_pretrained.py", "--top"), ("problems/p2_transfer.py", "--fold"),
    ("problems/p3_small_cnn.py", "--epoch"), ("problems/p3_better_ablation.py", "--epoch"),
    ("problems/p3_twin_check.py", "--from"),
    ("problems/p4_adversarial.py", "--max-step"), ("problems/p5_rnn_adder.py", "--random-pair"),
    ("report/make_report.py", "--retr"), ("report/build_report.py", "--no-pd"),
    ("bench/train_step.py", "--round"), ("bench/gpu_kernels.py", "--step"), ("bench/p4_torchattacks.py", "--ep")])
def test_abbreviated_flags_are_refused(script, prefix):
    r = run(script, prefix, "3", "--not-a-flag")  # the unknown flag stops parsing even if the prefix passed
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"unrecognized arguments: {prefix}" in r.stderr, r.stderr


@pytest.mark.parametrize("script", ["problems/p1_pretrained.py", "problems/p5_rnn_adder.py",
                                    "problems/p3_small_cnn.py"])
def test_seeds_out_of_range_are_refused(script):
    for seed in ("-1", "99999999999999999999"):
        r = run(script, "--seed", seed)
        assert r.returncode == 2 and "--seed" in r.stderr and "Traceback" not in r.stderr, r.stderr


# ---------------------------------------------------------------------------------- file readers
def test_write_json_writes_strict_json(tmp_path):
    from scratchnet.io import write_json
    write_json(tmp_path / "r.json", {"loss": float("nan"), "v": np.array([1.0, np.inf]), "s": np.float32(-np.inf)})
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": None, "v": [1.0, None], "s": None}


def test_rnn_weights_must_be_finite_numbers_of_the_assignments_shape(tmp_path):
    from problems.p5 import adder
    good = json.loads((REPO / "weights" / "rnn_adder.json").read_text())
    good = {k: good[k] for k in adder.WEIGHT_KEYS}
    cases = {"U": [[True, 1], [1, 1], [1, 1]], "b_y": float("nan"), "v": "abc", "W": [[1, 0], [0, 1]],
             "h_0": ["0", "0", "0"], "b_h": [1, [2], 3]}
    for key, value in cases.items():
        path = tmp_path / f"{key}.json"
        path.write_text(json.dumps({**good, key: value}))
        with pytest.raises(ValueError, match=f"'{key}'"):
            adder.load_weights(path)
    four = tmp_path / "four.json"   # a consistent 4-unit cell is still not the assignment's 3-unit one
    four.write_text(json.dumps({"U": [[1, 1]] * 4, "W": [[0] * 4] * 4, "b_h": [0] * 4, "v": [0] * 4, "b_y": 0,
                                "h_0": [0] * 4}))
    with pytest.raises(ValueError, match="3 hidden units"):
        adder.load_weights(four)
    latin = tmp_path / "latin.json"
    latin.write_bytes("{\"U\": \"\xe9\"}".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        adder.load_weights(latin)


def test_a_checkpoint_without_its_settings_is_unreadable_not_a_crash(tmp_path):
    from scratchnet import train
    from scratchnet.io import save_npz
    save_npz(tmp_path / "checkpoint.npz", {"meta": np.asarray(json.dumps({"epoch": 1}))})
    assert train._checkpoint_path(tmp_path).endswith("checkpoint.npz")
    with pytest.raises(ValueError, match="unreadable"):
        train.load_checkpoint(tmp_path, learner=None, config=train.TrainConfig())
    from dataclasses import asdict
    meta = {"epoch": 1, "rng": np.random.default_rng(0).bit_generator.state, "history": asdict(train.History()),
            "config": asdict(train.TrainConfig()), "identity": "x"}   # all there, but the identity is no mapping
    save_npz(tmp_path / "checkpoint.npz", {"meta": np.asarray(json.dumps(meta))})
    with pytest.raises(ValueError, match="unreadable"):
        train.load_checkpoint(tmp_path, learner=None, config=train.TrainConfig(), identity={"learner": "L"})


def test_cifar_pickle_labels_must_be_whole_numbers(tmp_path):
    from scratchnet.data.cifar import DatasetError, _pickle_batch
    for labels in (["a", "b"], [[1], [2]], [1.7, 2.0]):
        path = tmp_path / "data_batch_1"
        path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels}))
        with pytest.raises(DatasetError, match="labels"):
            _pickle_batch(path, tmp_path)


def test_a_decompression_bomb_is_one_line(tmp_path, monkeypatch):
    from PIL import Image

    from problems.common.pretrained import load_image_rgb
    Image.new("RGB", (40, 40)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)   # 1600 pixels > 2x the limit: PIL refuses
    with pytest.raises(UserError, match="safety limit"):
        load_image_rgb(tmp_path / "big.png")


# ------------------------------------------------------------------------------------ script flags
def test_p3_flag_combinations_that_would_be_ignored_are_refused():
    for args, words in ((["--weights", "weights/p3_small.npz"], "--eval-only"),
                        (["--model", "small", "--ablation", "x.json"], "--model better")):
        r = run("problems/p3_small_cnn.py", *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr and words in r.stderr, r.stderr


def test_p3_weights_with_nan_and_a_garbled_companion_json(tmp_path):
    import problems.p3.run as P3
    from scratchnet.io import save_npz
    save_npz(tmp_path / "w.npz", {"conv1.weight": np.full((2, 2), np.nan, np.float32)})
    with pytest.raises(UserError, match="NaN"):
        P3.read_weights(tmp_path / "w.npz")
    save_npz(tmp_path / "i.npz", {"conv1.weight": np.ones((2, 2), np.int64)})
    with pytest.raises(UserError, match="floating-point"):
        P3.read_weights(tmp_path / "i.npz")
    with pytest.raises(UserError, match="is a folder"):
        P3.read_weights(tmp_path)


def test_p3_compare_needs_lists_of_numbers(tmp_path):
    import problems.p3.cli as P3
    for i, bad in enumerate(({"train_loss": 5}, {"train_loss": ["a", "b"]}, {"train_loss": []}, [1, 2])):
        path = tmp_path / f"{i}.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(UserError, match="train_loss|P3 results"):
            P3.compare([path, path], tmp_path / "out")


@pytest.mark.parametrize("args,words", [
    (["--eps", "0.5"], "at least 1"),
    (["--lam", "nan"], "--lam"),
    (["--lam", "-2"], "--lam"),
    (["--device", "gpu0"], "--device"),
])
def test_p4_numbers_that_cannot_work(tmp_path, capsys, args, words):
    import problems.p4.cli as P4
    assert run_main(P4.main, args + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_p4_argument_types(tmp_path):
    for args in (["--momentum", "2"], ["--step", "nan"], ["--step", "-1"]):
        r = run("problems/p4_adversarial.py", *args, "--out", tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr and args[0] in r.stderr, r.stderr


def test_p4_two_images_with_one_name_would_overwrite_each_other(tmp_path, capsys):
    import problems.p4.cli as P4
    from PIL import Image
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / sub / "pic.png")
    args = ["--image", str(tmp_path / "a" / "pic.png"), "--target", "1",
            "--image", str(tmp_path / "b" / "pic.png"), "--target", "2", "--out", str(tmp_path / "o")]
    assert run_main(P4.main, args) == 2
    assert "share the name 'pic'" in capsys.readouterr().err


def test_make_report_only_must_name_a_run(tmp_path):
    r = run("report/make_report.py", "--only", "", "--results", tmp_path / "res", "--out", tmp_path)
    assert r.returncode == 2 and "names no run" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "res").exists()


# ------------------------------------------------------------------------ second round of review
def test_thread_counts_are_bounded():
    assert cli.thread_count("1") == 1 and cli.thread_count(str(cli.MAX_THREADS)) == cli.MAX_THREADS
    for bad in ("0", str(cli.MAX_THREADS + 1), "100000"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.thread_count(bad)


def test_p3_resume_refuses_a_checkpoint_of_other_data_or_another_backend(tmp_path, data_root):
    if not (data_root / "cifar10").is_dir() and not (data_root / "cifar-10-batches-py").is_dir():
        pytest.skip("no CIFAR-10 under the data root")
    base = ["problems/p3_small_cnn.py", "--model", "small", "--epochs", "1", "--batch-size", "32", "--no-progress",
            "--out", tmp_path, "--data-dir", data_root]
    assert run(*base, "--limit-per-class", "4").returncode == 0
    for extra, words in ((["--limit-per-class", "5"], "other data"), (["--limit-per-class", "4", "--backend", "torch"],
                                                                     "TorchLearner")):
        r = run(*base, *extra, "--resume")
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run(*base, "--limit-per-class", "4", "--resume")
    assert r.returncode == 0 and "resumed from" in r.stdout, r.stderr


def test_p2_labels_are_checked_again_after_decoding(capsys):
    from problems.p2.run import check_labels
    names = ["a", "b", "c"]
    assert check_labels(np.array([0, 0, 1, 1, 2, 2]), 3, names, 5) == 2   # CV falls back to 2 folds
    assert "uses 2 folds" in capsys.readouterr().err
    for labels, n_test, words in (([0, 0, 1, 1], 0, "test split has no images"), ([0, 0, 0], 3, "1 breed"),
                                  ([0, 0, 1], 3, "1 image that could be decoded of b")):
        with pytest.raises(UserError, match=words):
            check_labels(np.array(labels), n_test, names, 5, "that could be decoded")


def _tiny_extractor(tmp_path):
    """A torch 'model' whose penultimate features are 4 pixel values, and 3 tiny images."""
    import torch
    from PIL import Image
    paths = []
    for i in range(3):
        Image.new("RGB", (4, 4), (i * 40, 10, 20)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    preprocess = lambda im: torch.from_numpy(np.asarray(im, np.float32).transpose(2, 0, 1).copy())  # noqa: E731
    penultimate = lambda model, x: x.flatten(1)[:, :4]  # noqa: E731
    return torch.nn.Identity(), preprocess, paths, penultimate


def test_feature_cache_that_cannot_be_written_or_holds_nan_is_not_fatal(tmp_path, monkeypatch, capsys):
    from problems.p2 import penultimate as features
    model, pre, paths, pen = _tiny_extractor(tmp_path)
    names = [p.name for p in paths]
    kw = dict(cache_dir=tmp_path / "cache", tag="t", channels_last=False, progress=False)
    first = features.cached_features(model, pre, paths, names, pen, **kw)
    assert not first.from_cache and first.cache_path.is_file()
    z = dict(np.load(first.cache_path))
    z["features"] = np.full_like(z["features"], np.nan)
    np.savez(first.cache_path, **z)
    again = features.cached_features(model, pre, paths, names, pen, **kw)   # NaN cache: a miss, rebuilt
    assert not again.from_cache and np.isfinite(again.features).all() and "unreadable" in capsys.readouterr().err

    def refuse(*a, **k):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr(features, "save_npz", refuse)
    kw["cache_dir"] = tmp_path / "other"
    third = features.cached_features(model, pre, paths, names, pen, **kw)  # the features survive the failed save
    assert np.array_equal(third.features, first.features) and "could not cache" in capsys.readouterr().err


def test_malformed_run_log_and_cifar_cache_meta_are_ignored(tmp_path):
    sys.path.insert(0, str(REPO / "report"))
    from build_report import read_run_log

    from scratchnet.data.cifar import _read_cache
    for text in ('{"runs": [1, 2]}', '{"runs": {"a": 1}}', '{"runs": [{"produces": 5}]}', "[1]"):
        (tmp_path / "report_runs.json").write_text(text)
        assert read_run_log(tmp_path) is None
    (tmp_path / "report_runs.json").write_bytes(b"\xff\xfe")
    assert read_run_log(tmp_path) is None
    (tmp_path / "report_runs.json").write_text('{"runs": [{"name": "p1", "produces": ["p1"], "rc": 0}]}')
    assert read_run_log(tmp_path)["runs"][0]["name"] == "p1"
    from scratchnet.data.cifar import _CACHE_FILES
    for k in _CACHE_FILES:   # a consistent empty cache, so that only meta.json can be wrong
        np.save(tmp_path / f"{k}.npy", np.zeros((0, 32, 32, 3) if k.endswith("_x") else (0,), np.uint8))
    good = {"n_train": 0, "n_test": 0, "class_names": [str(i) for i in range(10)], "source": "s"}
    (tmp_path / "meta.json").write_text(json.dumps(good))
    assert _read_cache(tmp_path) is not None
    for meta in ({}, [1], {**good, "class_names": 3}, {**good, "class_names": ["a"]}, {**good, "n_train": "x"}):
        (tmp_path / "meta.json").write_text(json.dumps(meta))
        assert _read_cache(tmp_path) is None, meta


def test_p3_companion_json_and_running_var_are_checked(tmp_path):
    import problems.p3.run as P3
    from scratchnet.io import save_npz
    for bad, key in (({"train_loss": 5}, "train_loss"), ({"seconds": "x"}, "seconds"),
                     ({"test_accuracy": [0.5, None]}, "test_accuracy"),
                     ({"epoch_seconds": [1, 2], "test_accuracy": [0.5]}, "differ in length")):
        (tmp_path / "c.json").write_text(json.dumps(bad))
        with pytest.raises(UserError, match=key):
            P3.read_companion(tmp_path / "c.json")
    assert P3.read_companion(tmp_path / "absent.json") == {}
    save_npz(tmp_path / "v.npz", {"bn1.running_var": np.array([1.0, -0.5], np.float32)})
    with pytest.raises(UserError, match="negative"):
        P3.read_weights(tmp_path / "v.npz")


def test_p1_maps_and_p4_inputs_inside_out(tmp_path, capsys):
    import problems.p4.cli as P4
    from PIL import Image
    r = run("problems/p1_pretrained.py", "--maps", "33", "--out", tmp_path)
    assert r.returncode == 2 and "--maps" in r.stderr and "Traceback" not in r.stderr, r.stderr
    for name in ("attack.png", "pic_adv.png"):   # pic_adv.png: what attacking a pic.png beside it would write
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    before = (tmp_path / "attack.png").read_bytes()
    assert run_main(P4.main, ["--image", str(tmp_path / "attack.png"), "--target", "1", "--out", str(tmp_path)]) == 2
    assert "lies in --out" in capsys.readouterr().err and (tmp_path / "attack.png").read_bytes() == before
    Image.new("RGB", (8, 8)).save(tmp_path / "pic.png")
    assert run_main(P4.main, ["--image", str(tmp_path / "pic_adv.png"), "--target", "1", "--image",
                              str(tmp_path / "pic.png"), "--target", "2", "--out", str(tmp_path)]) == 2
    assert "pic_adv.png lies in --out" in capsys.readouterr().err
