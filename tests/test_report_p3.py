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
    _script("problems/p3_better_ablation.py", "--variants", "full", "--limit-per-class", "2", "--val-per-class",
            "1", "--seeds", "1", *flags, "--out", str(root / "ablation"))
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
    committed = json.loads((REPO / "weights" / "p3_better.json").read_text())
    assert r.final_test_accuracy == committed["final_test_accuracy"] and r.ablation and r.final_test_loss is None
    assert r.hyperparameters.recipe == "airbench"       # the recipe recorded beside the weights
    from problems.p3.recipe import AirbenchRecipe
    own = AirbenchRecipe.from_flat(**committed["hyperparameters"]).rationale()
    assert r.rationale == own == committed["rationale"]   # its rationale, not the one-cycle one's
    assert any(line.endswith(f"; {committed['epochs']:g} epochs") for line in own)   # the run's, not 9.9


@pytest.mark.parametrize("name", ["p3_small.json", "p3_small_bn.json", "p3_better.json"])
def test_committed_companions_load(name):
    obj = json.loads((REPO / "weights" / name).read_text())
    r = P3Result.from_json(obj)
    assert r.final_test_accuracy == obj["final_test_accuracy"] and len(r.train_loss) == r.epochs
    assert {k: v for k, v in r.to_json().items() if k in obj} == obj     # older files: defaults fill the rest


def test_committed_ablation_loads_and_was_scored_on_the_validation_split():
    obj = json.loads((REPO / "weights" / "p3_better_ablation.json").read_text())
    ab = _same(AblationResult, obj)
    assert "validation" in ab.evaluated_on and ab.variants[0].final_val_accuracy == obj["variants"][0]["final_val_accuracy"]
    assert sorted({v.seed for v in ab.variants if v.variant == "full"}) == [0, 1]      # the headline row: 2 seeds


def test_a_validation_split_run_is_not_shown_as_the_test_accuracy(tmp_path):
    """A results file scored on the validation split (--val-per-class) in the better net's place: the report
    names why and shows no number from it."""
    import build_report
    obj = fixture.better().to_json()
    obj["evaluated_on"] = "validation split (last 500 training images per class)"
    (tmp_path / "p3" / "better").mkdir(parents=True)
    (tmp_path / "p3" / "better" / "results.json").write_text(json.dumps(obj))
    sec = build_report.load_section(tmp_path, "p3_better", {}, {})
    assert not sec["ok"] and "not the test set" in sec["missing"]["error"]
    del obj["evaluated_on"]
    (tmp_path / "p3" / "better" / "results.json").write_text(json.dumps(obj))
    assert build_report.load_section(tmp_path, "p3_better", {}, {})["ok"]


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
    assert "1.200, higher than the plain network's 1.000" in s and "+10.00 percentage points" in s
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


# ------------------------------------------------------------------------------------------- generated text
def _p3_text(tmp_path, change=None) -> str:
    """The P3 section's text (tags stripped) built from the fixture results, after change(results root)."""
    fixture.write(tmp_path / "results")
    if change:
        change(tmp_path / "results")
    text = built_html(tmp_path / "results", tmp_path / "out")
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text.split('id="p3"')[1].split('id="p4"')[0]))


def test_curve_text_follows_the_last_epochs():
    from problems.p3.result import curve_sentences
    rising = fixture.result("small", [2.0, 1.8, 1.6, 1.4, 1.2], [0.40, 0.50, 0.55, 0.60, 0.66])
    s = curve_sentences(rising)
    assert "flattened" not in s and "+16.00 points" in s and "before the curve flattens" in s
    flat = fixture.result("small", [2.0, 1.8, 1.6, 1.4, 1.2], [0.40, 0.655, 0.658, 0.66, 0.662])
    assert "had flattened" in curve_sentences(flat) and "+0.70 points" in curve_sentences(flat)
    # part 3's last epoch is read single-view, like the earlier epochs: the TTA jump is not a rise
    tta = fixture.result("better", [1.2, 1.1, 1.0, 0.9, 0.8], [0.80, 0.85, 0.851, 0.852, 0.90],
                         final_test_accuracy_without_tta=0.855)
    assert "had flattened" in curve_sentences(tta) and "single-view" in curve_sentences(tta)
    stopped = fixture.result("small", [2.0, 1.5], [0.40, 0.50], epochs=15, stopped_after=2)
    assert "stopped after 2 epochs of its 15-epoch schedule" in curve_sentences(stopped)


def test_augmentation_text_reads_the_train_test_gap():
    from problems.p3.result import augmentation_sentence
    close = fixture.result("small", [1.0], [0.70], train_accuracy=[0.71])
    assert "1.00 points apart, no sign of overfitting" in augmentation_sentence(close)
    assert "does not even fit its training images" in augmentation_sentence(close)
    wide = fixture.result("small", [1.0], [0.70], train_accuracy=[0.95])
    s = augmentation_sentence(wide)
    assert "a gap of 25.00 points" in s and "no sign of overfitting" not in s and "does not even fit" not in s
    assert "Cutout" not in s
    wide.hyperparameters.cutout = 12
    s = augmentation_sentence(wide)
    assert "a 12x12 square of the mean colour blanked at a random place (Cutout)" in s
    assert "partly hidden view" in s


def test_hyper_argument_compares_the_two_learning_rates():
    from problems.p3.result import hyper_argument
    small = fixture.result("small", [1.0], [0.7])
    bn = fixture.result("small_bn", [1.0], [0.7])
    bn.hyperparameters.lr = 0.2
    text = " ".join(hyper_argument(small, bn))
    assert "10 times smaller than the batch-norm network's 0.2" in text and "the smaller rate" in text
    assert "3 of 15 epochs" not in text and "(0.2 of 1 epochs)" in text        # warm-up read from the recipe
    same = " ".join(hyper_argument(small, fixture.result("small_bn", [1.0], [0.7])))
    assert "the same as the batch-norm network's" in same and "the smaller rate" not in same
    assert hyper_argument(fixture.better(), None) == []                        # part 3 has its rationale list


def test_loss_floor_is_the_smoothed_targets_entropy():
    import math

    from problems.p3.result import loss_floor, smoothing_floor
    q = 1 - 0.2 + 0.02
    assert smoothing_floor(0.2) == pytest.approx(-(q * math.log(q) + 9 * 0.02 * math.log(0.02)))
    assert smoothing_floor(0.0) == 0.0
    better = fixture.better()
    better.hyperparameters.label_smoothing, better.hyperparameters.ema_decay, better.hyperparameters.tta = 0.2, 0.98, 2
    s = loss_floor(better)
    assert "0.867 nats" in s and "0.82 on the true class" in s and "6 test-time views" in s
    assert "moving average of the weights" in s and f"{0.8 - smoothing_floor(0.2):.3f} nats" in s
    assert loss_floor(fixture.result("small", [1.0], [0.7])) is None        # no smoothing: no floor to explain


def test_filter_comparison_follows_the_measured_roughness():
    from problems.p3.result import filters_comparison
    plain = fixture.result("small", [1.0], [0.7], filter_stats=fixture.filter_stats(0.7, 4, 0.76))
    bn = fixture.result("small_bn", [1.0], [0.7], filter_stats=fixture.filter_stats(0.25, 36, 0.16))
    bn.hyperparameters.lr = 0.2
    s = filters_comparison(plain, bn)
    assert s.startswith("The batch-norm network's filters are smoother") and "0.25 against 0.70" in s
    assert "peak learning rate (0.02 against 0.2)" in s and "does not say which" in s
    flipped = filters_comparison(bn, plain)          # the rougher filters now belong to the batch-norm run
    assert flipped.startswith("The plain network's filters are smoother")
    even = fixture.result("small_bn", [1.0], [0.7], filter_stats=fixture.filter_stats(0.65, 4))
    s = filters_comparison(plain, even)
    assert "about equally smooth" in s and "otherwise identical, so the difference is batch normalisation's" in s
    assert filters_comparison(plain, fixture.result("small_bn", [1.0], [0.7])) is None   # not measured


def test_filter_stats_measure_colour_smoothness_and_distance_from_init():
    import numpy as np

    from problems.p3.result import filter_stats
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((11, 11, 3, 64))
    st = filter_stats(noise, init_hwio=noise)
    assert st.roughness_median == pytest.approx(1.0, abs=0.15)
    assert st.colour_share_median == pytest.approx(2 / 3, abs=0.1)
    assert st.init_cosine_median == pytest.approx(1.0) and st.smooth_filters < 5
    yy, xx = np.mgrid[-5:6, -5:6]
    blob = np.exp(-(xx ** 2 + yy ** 2) / 8.0)[:, :, None, None] * np.ones((1, 1, 3, 64))   # grey and smooth
    st = filter_stats(blob * rng.uniform(0.5, 2, 64), init_hwio=noise)
    assert st.grey_filters == 64 and st.colour_filters == 0 and st.smooth_filters == 64
    assert st.roughness_median < 0.1 and abs(st.init_cosine_median) < 0.2
    # the committed whitening filters: 12 eigenvectors (the negated half left out), brightness first
    from scratchnet.io import load_npz
    st = filter_stats(load_npz(REPO / "weights" / "p3_better.npz")["whiten.weight"], fixed=True)
    assert st.n_filters == 12 and st.first_one_sign and st.grey_filters + st.colour_filters == 12
    assert st.norm_max > 10 * st.norm_min


def test_report_shows_the_filter_measurements_and_the_whitening_caption(tmp_path):
    import numpy as np

    from problems.p3.result import filter_stats
    def whitening(root):
        r = P3Result.read(root / "p3" / "better" / "results.json")
        w = np.random.default_rng(0).standard_normal((2, 2, 3, 12))
        r.filter_stats = filter_stats(np.concatenate([w, -w], axis=3), fixed=True)
        r.write(root / "p3" / "better" / "results.json")
    p3 = _p3_text(tmp_path, whitening)
    assert "Part 1 (small CNN): all 64 first-layer 11x11 filters as trained" in p3 and "Median roughness 0.70" in p3
    assert "The batch-norm network's filters are smoother than the plain network's" in p3
    assert "which are fixed, not learned" in p3 and "their negations (bottom row)" in p3
    assert "typically show oriented edges" not in p3 and "trained 11x11" not in p3.split("Part 3: a better")[1]


def test_twin_check_table_and_text(tmp_path):
    p3 = _p3_text(tmp_path)
    assert "part 1 (plain) 1 40.00% 41.00% +1.00" in p3 and "part 2 (batch norm) 2 55.00% 54.50% -0.50" in p3
    assert "first 3 epochs of the 15-epoch schedule" in p3 and "Within 2 points at every epoch compared" in p3
    from problems.p3.twin_check import discussion
    far = fixture.twin_check((0.01, 0.03, -0.025))
    text = " ".join(discussion(far.models))
    assert "More than 2 points apart after epochs 2, 3" in text and "train this network alike" not in text
    assert "at most 3.00 points (epoch 2)" in text and "PyTorch is ahead after 2 of 3 epochs" in text


def test_twin_check_missing_is_the_standard_box(tmp_path):
    import shutil
    p3 = _p3_text(tmp_path, lambda root: shutil.rmtree(root / "p3" / "twin_check"))
    assert "Not yet produced: the PyTorch twin's cross-check of parts 1 and 2" in p3
    assert "p3_twin_check.py" in p3 and "Broken" not in p3 and "Controlled comparison" in p3


def test_ablation_shown_only_when_scored_on_the_validation_split(tmp_path):
    p3 = _p3_text(tmp_path)
    assert "validation accuracy (mean of seeds)" in p3 and "no EMA 60.50% 2 1.00 60.00%, 61.00%" in p3
    assert "more than the seed-to-seed range" in p3 and "Dirac init matters most" not in p3

    def old(root):         # an ablation from before the validation split: scored on test images
        r = P3Result.read(root / "p3" / "better" / "results.json")
        r.ablation_evaluated_on = None
        r.write(root / "p3" / "better" / "results.json")
    p3 = _p3_text(tmp_path / "old", old)
    assert "scored on test images, so it is not shown" in p3 and "validation accuracy (mean" not in p3
    assert "60.50%" not in p3


def test_ablation_of_the_one_cycle_recipe_says_so_beside_an_airbench_network():
    """The ablation runs the one-cycle recipe: beside a network trained with the airbench recipe the report
    says which recipe the ablation trained, and not when the network's recipe is the one-cycle one."""
    from problems.p3.result import ablation_facts
    r = fixture.better()
    assert r.hyperparameters is not None and r.hyperparameters.recipe is None
    assert not any("one-cycle" in line for line in ablation_facts(r)["text"])
    r.hyperparameters.recipe = "airbench"
    note = [line for line in ablation_facts(r)["text"] if "one-cycle" in line]
    assert len(note) == 1 and "not the airbench recipe" in note[0] and "Lookahead" in note[0]


def test_an_airbench_net_shows_its_rate_per_1024_examples():
    """The airbench recipe's hyper-parameter rows: the published per-1,024-example rate and decay, not the
    derived per-step SGD values."""
    committed = P3Result.read(REPO / "weights" / "p3_better.json")
    rows = dict(p3_facts(committed)["hyper"])
    assert rows["peak lr per 1,024 images"] == "11.5" and rows["BN shift lr x"] == "64"
    assert rows["weight decay per 1,024"] == "0.0153" and rows["epochs"] == "22"
    assert "peak learning rate" not in rows
    assert dict(p3_facts(fixture.better())["hyper"])["peak learning rate"]      # the one-cycle recipe's rows


def test_ablation_sentences_judge_differences_against_the_seed_range():
    from problems.p3.result import ablation_sentences
    rows = fixture.validation_ablation(variant_accs=(0.702, 0.712))
    text = " ".join(ablation_sentences(rows, "tiny", "validation"))
    assert "mean of 2 seeds (range 1.00 points)" in text and "not told apart from noise" in text
    one = [r for r in fixture.validation_ablation()]
    one[0].seeds, one[0].spread, one[0].per_seed = 1, None, [0.70]
    text = " ".join(ablation_sentences(one, "tiny", "validation"))
    assert "with one seed, so no seed-to-seed range" in text and "noise" not in text.split("range is measured")[1]


def test_old_test_set_ablation_file_reads_back_as_test(tmp_path):
    """An ablation file from before the validation split (scored on test images, no evaluated_on) is read as
    a test-set one, never as validation."""
    from problems.p3.result import ablation_rows
    obj = json.loads((REPO / "weights" / "p3_better_ablation.json").read_text())
    old = {k: v for k, v in obj.items() if k not in ("evaluated_on", "n_validation")}
    old["n_test"] = obj["n_validation"]
    for v in old["variants"]:
        for a, b in (("final_val_accuracy", "final_test_accuracy"),
                     ("final_val_accuracy_without_tta", "final_test_accuracy_without_tta"), ("val_accuracy", "test_accuracy")):
            if a in v:
                v[b] = v.pop(a)
    (tmp_path / "old.json").write_text(json.dumps(old))
    rows = ablation_rows(tmp_path / "old.json")
    assert rows["ablation_evaluated_on"] is None and rows["ablation"][0]["seeds"] == 2
    assert "test_accuracy" in rows["ablation"][0] and "validation_accuracy" not in rows["ablation"][0]


def test_plan_redraws_the_recorded_twin_check_and_retrain_recomputes_it(tmp_path):
    from jobs import P3_TWIN_CHECK, P3_TWIN_EPOCHS, plan
    default = {j.name: j for j in plan(tmp_path / "res", repo=tmp_path)}          # nothing committed there
    twin = default["p3_twin_check"]
    assert twin.argv[:3] == ["problems/p3_twin_check.py", "--from-recorded", P3_TWIN_CHECK]
    assert "is not committed yet" in twin.skip and "p3_twin" not in default
    retrain = {j.name: j for j in plan(tmp_path / "res", retrain=True, repo=tmp_path)}
    assert retrain["p3_twin"].argv[retrain["p3_twin"].argv.index("--stop-after") + 1] == str(P3_TWIN_EPOCHS)
    assert "torch" in retrain["p3_twin"].argv and retrain["p3_twin_check"].argv.count("--pair") == 2
    assert len(retrain["p3_twin_check"].needs) == 4 and retrain["p3_twin_check"].produces == ["p3_twin_check"]
    names = list(retrain)
    assert names.index("p3_both") < names.index("p3_twin") < names.index("p3_twin_check")
