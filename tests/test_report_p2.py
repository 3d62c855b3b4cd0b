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


FAKE_SIZES = {"fake": 8, "fake2": 10}       # the fake backbones and their input sizes


def fake_features(model_name, splits, opts):
    """Stands in for the torch backbone: 8 non-negative features per image, clustered by breed ('fake2': noisier,
    other input size); any other model is unavailable, as a backbone without its package is."""
    if model_name not in FAKE_SIZES:
        raise UserError(f"model {model_name} needs a package that is not installed")
    size = FAKE_SIZES[model_name]
    rng = np.random.default_rng(size)
    centers = rng.uniform(0, 6, (8, 8))
    out = {}
    for name, sp in splits.items():
        x = np.abs(centers[sp.labels] + 0.3 * (size - 7) * rng.normal(size=(len(sp), 8))).astype(np.float32)
        out[name] = FeatureSet(x, np.ones(len(sp), bool), list(sp.names), ImageReadLog().summary(), 0.5,
                               2.0 * len(sp), False, opts.cache_dir / f"{model_name}_{name}.npz")
    info = {"name": model_name, "library": "none", "weights": "random", "feature_dim": 8,
            "preprocessing": {"resize_short_side": size, "interpolation": "bilinear", "center_crop": size,
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
    assert "89.13%" in section and "Lite2 (260 px)" in section and "tie within the uncertainty" in section
    assert '<td class="nowrap">Lite0 (224 px)</td>' in section          # short names that do not wrap
    assert "(timm)" in section and "The test set is the reduced one described under About the data" in section
    assert "2 breeds, weakest first" in section and "1 breed is missing test images and keeps 17" in section
    for word in ("feature cache", "package", "machine", "pip", "install", "unavailable"):
        assert word not in section, word


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
    text = report_facts(r)["text"]                      # rows without per-breed counts: ties as printed
    assert "Lite2 scores highest (95.00%) and Lite0 and Lite1 tie for lowest (89.13% each)" in text["backbones"]
    assert "below the assignment" in text["features"] and "2 \u00d7 (1,280 + 1) = 2,562 weights" in text["features"]
    assert "Every backbone of the backbone table has 1,280-dimensional features" in text["features"]
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


# ------------------------------------------------------------------------------------------- backbone table
def _rows(spec):
    """Backbone rows from {lite index: (pug [right, n], boxer [right, n])}, Lite0 first (the main model)."""
    return [p2_fixture.backbone(f"tf_efficientnet_lite{i}", {"pug": pug, "boxer": boxer}, recorded=i > 0)
            for i, (pug, boxer) in sorted(spec.items())]


@pytest.mark.parametrize("spec, says, never", [
    # Lite2's interval lies above both others' (500 test images per breed: narrow intervals)
    ({0: ([400, 500], [400, 500]), 1: ([405, 500], [405, 500]), 2: ([475, 500], [475, 500])},
     "Lite2 scores highest, 95.00% mean-per-class accuracy (95% interval 93.61%\u201396.39%); each interval of "
     "Lite1 81.00% (78.57%\u201383.43%) and Lite0 80.00% (77.52%\u201382.48%) lies below it.", "tie"),
    # the same scores on 20 test images per breed: every interval overlaps Lite2's
    ({0: ([16, 20], [16, 20]), 1: ([16, 20], [17, 20]), 2: ([19, 20], [19, 20])},
     "Lite2, Lite1 and Lite0 tie within the uncertainty: their mean-per-class accuracies with their 95% "
     "intervals, Lite2 95.00%", "highest"),
    # Lite1 within Lite2's interval, Lite0 below it
    ({0: ([400, 500], [400, 500]), 1: ([470, 500], [470, 500]), 2: ([475, 500], [475, 500])},
     "Lite2 and Lite1 tie for highest within the uncertainty (Lite2 95.00% (93.61%\u201396.39%) and Lite1 94.00% "
     "(92.50%\u201395.50%): overlapping 95% intervals); the interval of Lite0 80.00% (77.52%\u201382.48%) lies "
     "below Lite2's.", "Lite2 scores highest"),
])
def test_backbone_text_follows_the_scores_and_calls_ties(tmp_path, spec, says, never):
    from problems.p2.result import backbone_rows, report_facts
    r = p2_fixture.result()
    r.backbones = _rows(spec)
    r.discussion = r.discussion_text()
    text = report_facts(r)["text"]["backbones"]
    assert says in text and never not in text, text
    assert says in r.discussion and says in p2_section(tmp_path, r)
    rows = backbone_rows(r)
    assert [b.label for b in rows] == ["Lite0 (224 px)", "Lite1 (240 px)", "Lite2 (260 px)"]
    assert [b.note for b in rows] == ["main model", "recorded", "recorded"]


def test_backbone_data_differences():
    a = p2_fixture.data()
    assert a.differences(p2_fixture.data()) == []
    assert a.differences(p2_fixture.data(test_sha256="c" * 64)) == ["as many images as this run, but not the same ones"]
    assert p2_fixture.data(n_test=3669).differences(a) == ["3,669 test images recorded, 40 in this run"]
    assert p2_fixture.data(flip_averaged=False).differences(a) == ["flip-averaged features in this run, plain ones "
                                                                   "recorded"]


def test_rows_recorded_on_other_images_are_listed_but_not_ranked(tmp_path):
    from problems.p2.result import backbone_rows, report_facts
    r = p2_fixture.result()
    r.backbones = _rows({0: ([400, 500], [400, 500]), 1: ([405, 500], [405, 500]), 2: ([475, 500], [475, 500])})
    r.recorded_backbones = p2_fixture.source(n_test=3669, n_train=3680, n_classes=37, max_breeds=None)
    r.discussion = r.discussion_text()
    text = report_facts(r)["text"]
    assert text["backbones"] is None and "highest" not in r.discussion     # Lite0 alone is comparable here
    assert ("The recorded Lite1 and Lite2 rows were not computed on this run's images with its settings (3,669 test "
            "images recorded, 40 in this run; 3,680 trainval images recorded, 40 in this run; 37 breeds recorded, "
            "2 in this run), so they are listed for reference only and not ranked against Lite0.") == text["recorded"]
    assert [b.note for b in backbone_rows(r)] == ["main model"] + ["recorded on other images: not compared"] * 2
    section = p2_section(tmp_path, r)
    assert text["recorded"] in section and "recorded on other images: not compared" in section


def _p2(tmp_path, monkeypatch, *extra, features=fake_features):
    """problems/p2_transfer.py on the mini Pets copy with the fake backbones; (exit status, results folder)."""
    from problems.common.cli import run_main
    from problems.p2.cli import main
    if not (tmp_path / "pets").is_dir():
        make_mini_pets(tmp_path)
    monkeypatch.setattr(p2_run, "features_for", features)
    out = tmp_path / "out"
    return run_main(main, ["--data-dir", str(tmp_path), "--model", "fake", "--backbones", "fake,fake2", "--folds", "2",
                           "--compare", "", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                           "--no-progress", *extra]), out


def only_fake(model_name, splits, opts):
    """fake_features that fails for any backbone but the main one: proves the others are not recomputed."""
    assert model_name == "fake", f"{model_name} was extracted although it is recorded"
    return fake_features(model_name, splits, opts)


def test_recorded_backbone_rows_are_read_not_recomputed(tmp_path, monkeypatch):
    from problems.p2.result import RecordedBackbones, report_facts
    rec = tmp_path / "recorded" / "p2_backbones.json"
    rc, out = _p2(tmp_path, monkeypatch, "--write-backbones", str(rec))
    assert rc == 0
    fresh = P2Result.read(out / "results.json")
    table = RecordedBackbones.read(rec)
    assert [(b.model, b.input_size) for b in table.backbones] == [("fake", 8), ("fake2", 10)]
    assert [t.model for t in table.timings] == ["fake", "fake2"] and table.command == fresh.command
    assert (table.data.n_train, table.data.n_test, table.data.n_classes) == (fresh.n_train, fresh.n_test, 3)
    assert table.backbones == fresh.backbones and fresh.recorded_backbones is None
    assert sum(n for _, n in fresh.backbones[1].breed_counts.values()) == fresh.n_test

    rc, out = _p2(tmp_path, monkeypatch, "--recorded-backbones", str(rec), features=only_fake)
    assert rc == 0
    again = P2Result.read(out / "results.json")
    assert [b.recorded for b in again.backbones] == [False, True]
    assert vars(again.backbones[1]) == {**vars(fresh.backbones[1]), "recorded": True}
    assert again.recorded_backbones.comparable and again.recorded_backbones.command == table.command
    text, before = report_facts(again)["text"], report_facts(fresh)["text"]
    assert text["backbones"] == before["backbones"] and "Across backbones" in text["backbones"]
    assert text["recorded"].startswith("The fake2 row was computed once by the same procedure on the same")

    # recorded with other settings: listed, not ranked
    rc, out = _p2(tmp_path, monkeypatch, "--recorded-backbones", str(rec), "--folds", "3", features=only_fake)
    other = P2Result.read(out / "results.json")
    assert rc == 0 and not other.recorded_backbones.comparable
    assert report_facts(other)["text"]["backbones"] is None
    assert "2-fold cross-validation recorded, 3-fold in this run" in report_facts(other)["text"]["recorded"]


@pytest.mark.parametrize("content, words", [
    (None, "no such file; write one with --write-backbones"),
    ("{not json", "not a recorded backbone table (" ),
    ("FIXTURE", "not a recorded backbone table (RecordedBackbones: unknown field(s)"),
    ('{"problem": "p2_backbones", "command": "x", "data": {}, "backbones": [], "timings": []}',
     "RecordedBackbones.data: missing field"),
])
def test_bad_recorded_backbones_file_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, content, words):
    path = tmp_path / "rec.json"
    if content == "FIXTURE":
        p2_fixture.result().write(path)             # a P2 results file, not a backbone table
    elif content is not None:
        path.write_text(content)
    rc, out = _p2(tmp_path, monkeypatch, "--recorded-backbones", str(path), features=None)   # never extracts
    err = capsys.readouterr().err
    assert rc == 2 and words in err and err.startswith(f"error: --recorded-backbones {path}"), err
    assert len(err.strip().splitlines()) == 1 and not (out / "results.json").exists()


def test_recorded_and_write_backbones_exclude_each_other(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        _p2(tmp_path, monkeypatch, "--recorded-backbones", "a.json", "--write-backbones", str(tmp_path / "b.json"))
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_report_driver_reads_the_recorded_table_unless_retraining(tmp_path):
    import jobs

    def p2(**kw):
        return next(j for j in jobs.plan(tmp_path / "results", repo=tmp_path, **kw) if j.name == "p2").argv
    assert "--recorded-backbones" not in p2()                             # nothing recorded: compute every row
    (tmp_path / jobs.P2_BACKBONES).parent.mkdir()
    (tmp_path / jobs.P2_BACKBONES).write_text("{}")
    argv = p2()
    assert argv[argv.index("--recorded-backbones") + 1] == jobs.P2_BACKBONES == "recorded/p2_backbones.json"
    assert "--recorded-backbones" not in p2(retrain=True)
