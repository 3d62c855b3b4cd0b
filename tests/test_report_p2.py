"""P2's results contract: what the script writes reads back through P2Result unchanged, and a results file
whose fields do not match costs the report's P2 section (naming the field), not a wrong PDF."""
import html
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from pets_helpers import make_mini_pets

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "report")]
import build_report  # noqa: E402
from report_fixtures import p2 as p2_fixture  # noqa: E402

from problems.common.cli import UserError  # noqa: E402
from problems.common.result import ResultError  # noqa: E402
from problems.p2 import run as p2_run  # noqa: E402
from problems.p2.penultimate import FeatureSet  # noqa: E402
from problems.p2.pets import ImageReadLog  # noqa: E402
from problems.p2.result import P2Result  # noqa: E402

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def fake_features(model_name, splits, opts):
    """Stands in for the torch backbone: 8 non-negative features per image, clustered by breed; any model but
    'fake' is unavailable, as a backbone without its package is."""
    if model_name != "fake":
        raise UserError(f"model {model_name} needs a package that is not installed")
    rng = np.random.default_rng(0)
    centers = rng.uniform(0, 6, (8, 8))
    out = {}
    for name, sp in splits.items():
        x = np.abs(centers[sp.labels] + 0.3 * rng.normal(size=(len(sp), 8))).astype(np.float32)
        out[name] = FeatureSet(x, np.ones(len(sp), bool), list(sp.names), ImageReadLog().summary(), 0.5,
                               2.0 * len(sp), False, opts.cache_dir / f"fake_{name}.npz")
    info = {"name": "fake", "library": "none", "weights": "random", "feature_dim": 8,
            "preprocessing": {"resize_short_side": 8, "interpolation": "bilinear", "center_crop": 8,
                              "scale": "pixels / 255 -> [0, 1]", "mean": [0.5] * 3, "std": [0.5] * 3, "text": "t"}}
    return out, info, 0.01


def test_script_output_round_trips_through_the_result_type(tmp_path, monkeypatch):
    from problems.p2.cli import main
    make_mini_pets(tmp_path)
    monkeypatch.setattr(p2_run, "features_for", fake_features)
    out = tmp_path / "out"
    assert main(["--data-dir", str(tmp_path), "--model", "fake", "--backbones", "fake,lite9", "--folds", "2",
                 "--compare", "svm,scratchnet", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress"]) == 0
    written = json.loads((out / "results.json").read_text())
    r = P2Result.read(out / "results.json")
    assert r.to_json() == written                       # every field typed, none dropped or added
    assert r.class_names == ["Abyssinian", "Bengal", "basset_hound"] and r.n_classes == 3
    assert [c.classifier for c in r.classifiers] == ["logreg", "svm", "scratchnet"]
    assert [b.available for b in r.backbones] == [True, False] and "lite9" in r.backbones[1].reason
    assert r.discussion == r.discussion_text() and "machine" not in r.discussion and "lite9" not in r.discussion
    for rel in r.figures.values():
        assert (out / rel).is_file()
    facts = p2_fixture.result()
    assert P2Result.from_json(json.loads(json.dumps(facts.to_json()))) == facts


def test_fixture_facts_and_headline():
    from problems.p2.result import headline, report_facts
    r = p2_fixture.result()
    f = report_facts(r)
    assert f["sentence"].startswith("logreg at C = 10 (chosen by 5-fold cross-validation on the 40 trainval")
    assert "1,280-dimensional penultimate features" in f["sentence"]
    assert "89.13%" in f["sentence"] and "by 1.12 percentage points" in f["compare"]
    assert [b.name for b in f["weakest"]] == ["boxer", "pug"] and f["from_cache"] is True
    assert headline(r).startswith("logreg on tf_efficientnet_lite0 features: mean-per-class accuracy 89.13% on 40")


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.__setitem__("mean_class_accuracy", d.pop("mean_per_class_accuracy")),
     "unknown field(s) mean_class_accuracy"),
    (lambda d: d.pop("coverage"), "missing field 'coverage'"),
    (lambda d: d["classifiers"][0].__setitem__("c_source", d["classifiers"][0].pop("C_source")),
     "P2Result.classifiers[0]: unknown field(s) c_source"),
    (lambda d: d.__setitem__("n_test", "40"), "P2Result.n_test: expected int"),
])
def test_mismatched_field_makes_the_p2_section_unreadable_naming_it(tmp_path, edit, words):
    root = tmp_path / "results"
    p2_fixture.write(root)
    path = root / "p2" / "results.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ResultError, match=re.escape(words)):
        P2Result.read(path)
    text = html.unescape(build_report.build(root, tmp_path / "out", no_code=True, pdf=False)["html"].read_text())
    section = re.search(r'<section class="problem" id="p2">.*?</section>', text, flags=re.S).group(0)
    assert "unreadable results file" in section and words in section and "Not yet produced" in section
    assert "89.13%" not in text                          # nothing of the unreadable result is shown


def test_well_formed_fixture_fills_the_p2_section(tmp_path):
    root = tmp_path / "results"
    p2_fixture.write(root)
    text = html.unescape(build_report.build(root, tmp_path / "out", no_code=True, pdf=False)["html"].read_text())
    section = re.search(r'<section class="problem" id="p2">.*?</section>', text, flags=re.S).group(0)
    assert "Not yet produced" not in section and "Figure not found" not in section
    assert "89.13%" in section and "not scored: its pretrained weights were not available" in section
    assert "(timm)" in section and "The test set is the reduced one described under About the data" in section
    assert "2 breeds, weakest first" in section and "1 breed is missing test images and keeps 17" in section
    assert "feature cache" not in section and "package" not in section and "machine" not in section


# ------------------------------------------------------------------------------------------- text from data
def p2_section(tmp_path, result) -> str:
    """The report's P2 section (tags stripped, spaces collapsed) built from `result`."""
    root = tmp_path / "results"
    p2_fixture.write(root)
    path = root / "p2" / "results.json"
    result.figures = P2Result.read(path).figures
    result.write(path)
    text = html.unescape(build_report.build(root, tmp_path / "out", no_code=True, pdf=False)["html"].read_text())
    section = re.search(r'<section class="problem" id="p2">.*?</section>', text, flags=re.S).group(0)
    return " ".join(re.sub(r"<[^>]+>", " ", section).split())


def test_wilson_interval_and_the_mean_per_class_interval():
    from problems.p2.result import breed_counts, mean_per_class_interval, wilson_interval
    lo, hi = wilson_interval(10, 20)
    assert round(lo, 4) == 0.2993 and round(hi, 4) == 0.7007          # the textbook value for 10 of 20
    assert wilson_interval(0, 10)[0] == 0.0 and round(wilson_interval(0, 10)[1], 4) == 0.2775
    assert wilson_interval(0, 0) == (0.0, 1.0)
    r = p2_fixture.result()
    counts = {b.name: (b.correct, b.n) for b in breed_counts(r)}
    assert counts == {"pug": (17, 17), "boxer": (18, 23)}               # from the confusion matrix
    ci = mean_per_class_interval(r)
    assert abs(ci.mean - r.mean_per_class_accuracy) < 1e-12 and ci.n_breeds == 2
    assert ci.low < ci.mean < ci.high <= 1 and ci.half > 0.05           # a breed with 17 of 17 still adds spread


@pytest.mark.parametrize("scores, says, never", [
    ((0.90761, 0.90759, 0.9059), "logreg and svm tie for highest (90.76% each) and scratchnet scores lowest",
     "logreg scores highest"),
    ((0.9076, 0.90761, 0.90759), "logreg, svm and scratchnet tie: all score 90.76%", "highest"),
    ((0.9068, 0.9076, 0.9059), "svm scores highest (90.76%), logreg 90.68% and scratchnet lowest (90.59%)", "tie"),
])
def test_classifiers_that_score_the_same_as_printed_are_called_a_tie(tmp_path, scores, says, never):
    from problems.p2.result import ClassifierScore, report_facts
    r = p2_fixture.result()
    r.classifiers = [ClassifierScore(k, 1.0, "cv", s, 0.9, 1.0)
                     for k, s in zip(("logreg", "svm", "scratchnet"), scores)]
    r.discussion = r.discussion_text()
    compare = report_facts(r)["compare"]
    assert says in compare and never not in compare
    assert says in r.discussion and says in p2_section(tmp_path, r)


def test_backbones_ranked_with_ties_and_feature_size_from_the_result(tmp_path):
    from problems.p2.result import BackboneScore, report_facts
    r = p2_fixture.result()
    r.backbones = [BackboneScore("tf_efficientnet_lite0", 1280, "logreg", 10.0, 0.8913, 0.875, 40),
                   BackboneScore("tf_efficientnet_lite1", 1280, "logreg", 10.0, 0.89131, 0.875, 40),
                   BackboneScore("tf_efficientnet_lite2", 1280, "logreg", 10.0, 0.95, 0.95, 40)]
    text = report_facts(r)["text"]
    assert ("tf_efficientnet_lite2 scores highest (95.00%) and tf_efficientnet_lite0 and tf_efficientnet_lite1 "
            "tie for lowest (89.13% each)") in text["backbones"]
    assert "below the assignment" in text["features"] and "2 \u00d7 (1,280 + 1) = 2,562 weights" in text["features"]
    assert "Every backbone compared below has 1,280-dimensional features" in text["features"]
    r.feature_dim = 4096                                               # the dimension is read, not assumed
    text = report_facts(r)["text"]
    assert "4,096-dimensional" in text["features"] and "within the assignment" in text["features"]
    assert "ResNet-50" not in text["features"]
    section = p2_section(tmp_path, r)
    assert "4,096-dimensional" in section and "tie for lowest" in section


def test_per_breed_intervals_and_citations_in_the_section(tmp_path):
    section = p2_section(tmp_path, p2_fixture.result())
    assert "boxer 18 / 23 78.26% 58.10% \u2013 90.34%" in section          # the per-breed table, Wilson interval
    assert "Wilson 95% interval [" in section and "95% interval 78.79%\u201399.48%" in section
    assert "Oxford-IIIT Pet [" in section and "(timm) [" in section and "L-BFGS) [" in section
    assert "Agresti" in section and "normal approximation over the test images" in section
    assert not re.search(r"\d\.\d%", section)                          # percentages carry 2 decimals
