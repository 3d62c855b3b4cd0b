"""P3's typed results: what the scripts write reads back through P3Result / P3Comparison / AblationResult
unchanged, the committed companion files load, and a renamed field makes the report show that part as
unreadable, naming the field (not a silently wrong section)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from problems.common.result import ResultError
from problems.p3.result import AblationResult, P3Comparison, P3Result, p3_bn_sentence, p3_facts

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "report")]
from cifar_helpers import make_pickles  # noqa: E402
from report_fixtures import p3 as fixture  # noqa: E402
from report_fixtures.common import built_html, rename_field  # noqa: E402


def _same(cls, obj):
    """obj read through cls writes back the same JSON, keys in the same order; the typed result."""
    result = cls.from_json(obj)
    assert result.to_json() == obj and list(result.to_json()) == list(obj)
    return result


def _script(*args, data=None, cwd=REPO):
    env = dict(os.environ, MPLBACKEND="Agg", **({"SCRATCHNET_DATA": str(data)} if data else {}))
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """The script's outputs on a generated 80 + 15 image CIFAR: small, better, a comparison, the ablation."""
    root = tmp_path_factory.mktemp("p3")
    make_pickles(root / "data", n_per_batch=16, n_test=15)
    flags = ["--epochs", "1", "--batch-size", "16", "--no-progress", "--data-dir", str(root / "data")]
    _script("problems/p3_small_cnn.py", "--model", "small", *flags, "--out", str(root / "small"))
    _script("problems/p3_small_cnn.py", "--model", "better", *flags, "--out", str(root / "better"))
    _script("problems/p3_small_cnn.py", "--compare", str(root / "small" / "results.json"),
            str(root / "small" / "results.json"), "--out", str(root / "cmp"))
    _script("problems/p3_better_ablation.py", "--variants", "full", "--limit-per-class", "8", *flags,
            "--out", str(root / "ablation"))
    return root


def test_trained_results_round_trip(tiny_runs):
    small = _same(P3Result, json.loads((tiny_runs / "small" / "results.json").read_text()))
    assert small.hyperparameters.lr == 0.02 and small.layers[0].layer == "conv1" and small.ablation is None
    assert "rationale" not in small.to_json() and small.final_test_accuracy_without_tta is None
    better = _same(P3Result, json.loads((tiny_runs / "better" / "results.json").read_text()))
    assert better.hyperparameters.tta == 2 and better.rationale and better.ablation[0].variant == "full"
    assert better.final_test_accuracy_without_tta is not None and "accuracy_vs_time" in better.figures
    assert p3_facts(better)["hyper"][2] == ("peak learning rate", "0.8")


def test_comparison_and_ablation_round_trip(tiny_runs):
    c = _same(P3Comparison, json.loads((tiny_runs / "cmp" / "comparison.json").read_text()))
    assert c.figures == {"bn_comparison": "loss_bn_comparison.png"} and list(c.final_train_loss) == ["small"]
    ab = _same(AblationResult, json.loads((tiny_runs / "ablation" / "ablation.json").read_text()))
    assert [v.variant for v in ab.variants] == ["full"] and ab.variants[0].config_overrides == {}
    assert "error" not in ab.to_json()["variants"][0]


def test_eval_only_recorded_results_round_trip(tmp_path):
    _script("problems/p3_small_cnn.py", "--model", "better", "--eval-only", "--weights", "weights/p3_better.npz",
            "--recorded-if-no-data", "--no-download", "--out", str(tmp_path / "out"), data=tmp_path / "none")
    r = _same(P3Result, json.loads((tmp_path / "out" / "results.json").read_text()))
    assert r.eval_only and r.evaluated is False and "not re-evaluated" in r.recorded_note
    assert r.final_test_accuracy == 0.9041 and r.ablation and r.final_test_loss is None


@pytest.mark.parametrize("name", ["p3_small.json", "p3_small_bn.json", "p3_better.json"])
def test_committed_companions_load(name):
    obj = json.loads((REPO / "weights" / name).read_text())
    r = P3Result.from_json(obj)
    assert r.final_test_accuracy == obj["final_test_accuracy"] and len(r.train_loss) == r.epochs
    assert {k: v for k, v in r.to_json().items() if k in obj} == obj     # older files: defaults fill the rest


def test_committed_ablation_loads():
    obj = json.loads((REPO / "weights" / "p3_better_ablation.json").read_text())
    ab = _same(AblationResult, obj)
    assert ab.variants[0].final_test_accuracy == 0.6062


def test_fixture_round_trips_and_mistyped_fields_are_named():
    obj = fixture.better().to_json()
    assert P3Result.from_json(json.loads(json.dumps(obj))) == fixture.better()
    with pytest.raises(ResultError, match=r"P3Result.hyperparameters.lr: expected float"):
        P3Result.from_json({**obj, "hyperparameters": {**obj["hyperparameters"], "lr": "fast"}})
    with pytest.raises(ResultError, match=r"P3Result.ablation\[0\].test_accuracy"):
        P3Result.from_json({**obj, "ablation": [{**obj["ablation"][0], "test_accuracy": "high"}]})


def test_bn_sentence_says_which_loss_is_lower():
    small = fixture.result("small", [2.0, 1.0], [0.4, 0.5])
    bn = fixture.result("small_bn", [1.5, 1.2], [0.5, 0.6])
    s = p3_bn_sentence(small, bn)
    assert "1.200, higher than the plain network's 1.000" in s and "+10.0 percentage points" in s
    assert p3_bn_sentence(None, bn) is None


@pytest.mark.parametrize("where, old, new", [("small/results.json", "final_test_accuracy", "final_accuracy"),
                                             ("comparison.json", "compared", "paths")])
def test_renamed_field_makes_the_p3_part_unreadable(tmp_path, where, old, new):
    fixture.write(tmp_path / "results")
    path = tmp_path / "results" / "p3" / where
    rename_field(path, old, new)
    text = built_html(tmp_path / "results", tmp_path / "out")
    p3 = text.split('id="p3"')[1].split('id="p4"')[0]
    assert "unreadable results file" in p3 and new in p3 and f"p3/{where}" in p3
    assert "93.12%" in p3                                     # the other parts are still there


def test_part3_shows_single_view_beside_tta_and_eval_measures_both(tmp_path, tiny_runs):
    fixture.write(tmp_path / "results")
    text = built_html(tmp_path / "results", tmp_path / "out")
    p3 = re.sub(r"<[^>]+>", "", text.split('id="p3"')[1].split('id="p4"')[0])
    assert "93.12% (error 6.88%) with test-time augmentation, 92.50% single view" in p3  # like with like
    assert p3.count("single view (error") == 1                 # only part 3 used test-time views
    # --eval-only of a recipe with test-time views measures the single view too; without views it does not
    data = ["--data-dir", str(tiny_runs / "data"), "--no-progress"]
    for model, with_views in (("better", True), ("small", False)):
        _script("problems/p3_small_cnn.py", "--model", model, "--eval-only", "--weights",
                str(tiny_runs / model / "weights.npz"), "--out", str(tmp_path / model), *data)
        r = P3Result.read(tmp_path / model / "results.json")
        assert (r.final_test_accuracy_without_tta is not None) == with_views
        assert r.evaluated and 0 <= r.final_test_accuracy <= 1
