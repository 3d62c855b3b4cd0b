"""P4's typed results: what the script writes (results.json, results_eot.json) reads back through P4Result /
P4EotResult unchanged, and a renamed field makes the report show that part as unreadable, naming the field."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from problems.common.result import ResultError
from problems.p4.result import P4EotResult, P4Result, p4_eot_facts, p4_table, results_markdown

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "report")]
import build_report  # noqa: E402
from report_fixtures import p4 as fixture  # noqa: E402
from report_fixtures.common import built_html  # noqa: E402


def test_script_output_round_trips(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    from PIL import Image

    from problems.p4.cli import main
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((64, 64)).save(tmp_path / "pic.png")
    out = tmp_path / "out"
    # few steps: the shape of the files is the point, not whether the attack succeeds
    assert main(["--image", str(tmp_path / "pic.png"), "--target", "goldfish", "--eps", "2", "--out", str(out),
                 "--method", "prob", "--max-steps", "3", "--eot", "--eot-steps", "1", "--eot-samples", "1"]) == 0
    obj = json.loads((out / "results.json").read_text())
    plain = P4Result.from_json(obj)
    assert plain.to_json() == obj and list(plain.to_json()["method"]) == list(obj["method"])   # "lambda" kept
    assert plain.method.lam == "auto" and plain.method.momentum is None and plain.images[0].target.class_id == 1
    obj = json.loads((out / "results_eot.json").read_text())
    eot = P4EotResult.from_json(obj)
    assert eot.to_json() == obj and eot.eot.step_px == "eps/8"
    assert [t.eps for t in eot.images[0].eps_tried] == [2, 4, 8, 16][:len(eot.images[0].eps_tried)]
    assert (out / "results.md").read_text() == results_markdown(plain, eot)    # the text follows from the result


def test_fixture_round_trips_and_reads_out():
    r, e = fixture.result(), fixture.eot_result()
    assert P4Result.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert P4EotResult.from_json(json.loads(json.dumps(e.to_json()))) == e
    assert "lambda" in r.to_json()["method"] and "lam" not in r.to_json()["method"]
    assert r.headline() == ("2 of 2 targeted attacks succeeded at eps 1/255; "
                            "broken by hflip, rotate30, grayscale on every image")
    assert p4_eot_facts(e).sentence.endswith("for 1 of 1 images, at eps 4/255 (goldfish).")
    assert r.discussion_observed["crop80"] == "observed: target kept in 1/2 images, mean P(target) 0.451"


def test_transform_verdicts_follow_the_table():
    rows = [fixture._p4_image("a", 1.0, [True, False, True, True, False]),
            fixture._p4_image("b", 1.0, [True, False, False, True, False])]
    t = build_report.p4_table(rows)
    verdict = {s.transform: s.verdict for s in t.summary}
    assert verdict["hflip"].startswith("broke the attack on all 2")
    assert verdict["crop80"].startswith("broke the attack on 1 of 2")
    assert verdict["rotate30"].startswith("did not break the attack")
    assert t.overall == ("Hflip, grayscale broke the attack on every image; crop80 broke it on some images only; "
                         "the target survived rotate30 on every image.")
    assert p4_table([]).names == [] and p4_table([]).overall is None


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["method"].__setitem__("lam", 0.5), "P4Result.method: unknown field(s) lam"),
    (lambda d: d["method"].__setitem__("lambda", [1]), "P4Result.method.lambda: expected"),
    (lambda d: d["method"].pop("lambda"), "P4Result.method: missing field 'lambda'"),
    (lambda d: d["images"][1]["robustness"][2].__setitem__("target_kept", "yes"),
     "P4Result.images[1].robustness[2].target_kept: expected bool"),
])
def test_mismatches_name_the_json_key(edit, words):
    obj = fixture.result().to_json()
    edit(obj)
    with pytest.raises(ResultError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        P4Result.from_json(obj)


def test_results_without_discussion_observed_still_load():
    obj = fixture.result().to_json()
    del obj["discussion_observed"]                  # results written before it was added
    assert P4Result.from_json(obj).discussion_observed == {}


@pytest.mark.parametrize("name, rename, where", [
    ("results.json", lambda d: d.__setitem__("epsilon", d.pop("eps")), "epsilon"),
    ("results_eot.json", lambda d: d["images"][0].__setitem__("eps_trials", d["images"][0].pop("eps_tried")),
     "eps_trials"),
])
def test_renamed_field_makes_the_p4_part_unreadable(tmp_path, name, rename, where):
    fixture.write(tmp_path / "results")
    path = tmp_path / "results" / "p4" / name
    obj = json.loads(path.read_text())
    rename(obj)
    path.write_text(json.dumps(obj))
    text = built_html(tmp_path / "results", tmp_path / "out")
    p4 = text.split('id="p4"')[1].split('id="p5"')[0]
    assert "Not yet produced" in p4 and "unreadable results file" in p4
    assert where in p4 and "problems/p4_adversarial.py" in p4
    if name == "results.json":
        assert "targeted attacks succeeded" not in p4 and "survives all transforms for 1 of 1" in p4
    else:
        assert "survives all transforms" not in p4 and "targeted attacks succeeded" in p4


def test_a_template_error_costs_only_the_p4_section(tmp_path, monkeypatch):
    def broken(entries):
        raise KeyError("transform")
    monkeypatch.setattr(build_report, "p4_table", broken)
    fixture.write(tmp_path / "results")
    text = built_html(tmp_path / "results", tmp_path / "out")
    p4 = text.split('id="p4"')[1].split('id="p5"')[0]
    assert "could not be read" in p4 and "KeyError" in p4
    assert "P4. Adversarial examples" in text and "2 of 2 targeted attacks succeeded" in text   # the cover still has it


# ------------------------------------------------------------------------------------------- the study
from problems.p4.study_result import P4Study, method_facts, sweep_facts  # noqa: E402


def _p4_section(root, out) -> str:
    text = built_html(root, out)
    return text.split('id="p4"')[1].split('id="p5"')[0]


def test_study_round_trips_and_its_text_follows_the_fixture():
    d = fixture.study()
    obj = json.loads(json.dumps(d.to_json()))
    assert P4Study.from_json(obj) == d and P4Study.from_json(obj).to_json() == obj
    assert d.recorded_parts() == ["methods", "eot"]
    f = method_facts(d)
    assert f.winner == "ifgsm" and f.both == [1]
    assert f.totals["ifgsm"].reached == 2 and f.totals["prob"].steps == 350
    assert ("I-FGSM with momentum (the default) reached the target on 2 of 2 images in 29 steps and 2.9 s in all; "
            "the assignment's rule reached the target on 1 of 2 images in 350 steps and 35.0 s in all.") in f.sentence
    assert "The assignment's rule stopped at P(target) 50.70% on coffee after 200 steps." in f.sentence
    assert f.sentence.endswith("This is why I-FGSM with momentum is the default: at the same eps it reached the "
                               "target on more images (2 against 1 of 2), took fewer steps on the 1 image both "
                               "reached (13 against 150) and less time in all (2.9 s against 35.0 s).")
    s = sweep_facts(d)
    assert s.eps == [1.0, 2.0, 4.0] and s.rows["eot"][2.0].all_kept == 1 and s.rows["plain"][4.0].all_kept == 1
    assert s.sentences[0] == ("Plain attack: target reached (untransformed) on 2 of 2 images at every eps (1 to 4); "
                              "kept under all 4 transforms on 0 of 2 images at eps 1 and 2, 1 of 2 at eps 4.")
    assert s.sentences[1].endswith("0 of 2 images at eps 1, 1 of 2 at eps 2, 2 of 2 at eps 4.")
    assert s.sentences[2] == ("The smallest eps at which every image's target survived every transform: 4/255 for "
                              "the EOT attack, none up to 4/255 for the plain attack.")


@pytest.mark.parametrize("rows, winner, words, absent", [
    # the assignment's rule reaches both targets in fewer steps: the text says so and drops the default's claim
    ([(0, "ifgsm", 40, True, 0.91, 4.0), (0, "prob", 12, True, 0.93, 1.2),
      (1, "ifgsm", 30, True, 0.92, 3.0), (1, "prob", 10, True, 0.95, 1.0)], "prob",
     ["Here the assignment's rule did better: at the same eps it took fewer steps on the 2 images both reached "
      "(22 against 70) and less time in all (2.2 s against 7.0 s); this table does not support I-FGSM with "
      "momentum as the default."], ["This is why", "stopped at"]),
    # the assignment's rule fails on both: more images decides, and both misses are named with their P(target)
    ([(0, "ifgsm", 16, True, 0.903, 1.6), (0, "prob", 200, False, 0.0123, 20.0),
      (1, "ifgsm", 13, True, 0.919, 1.3), (1, "prob", 200, False, 0.3456, 20.0)], "ifgsm",
     ["reached the target on 0 of 2 images in 400 steps",
      "The assignment's rule stopped at P(target) 1.23% on coffee after 200 steps; the assignment's rule stopped at "
      "P(target) 34.56% on rocket after 200 steps.",
      "This is why I-FGSM with momentum is the default: at the same eps it reached the target on more images "
      "(2 against 0 of 2) and took less time in all"], ["fewer steps", "though"]),
    # the default reaches more images but is slower where both do: the sentence keeps both facts
    ([(0, "ifgsm", 100, True, 0.91, 10.0), (0, "prob", 200, False, 0.5, 20.0),
      (1, "ifgsm", 60, True, 0.92, 6.0), (1, "prob", 20, True, 0.95, 2.0)], "ifgsm",
     ["reached the target on more images (2 against 1 of 2) and took less time in all (16.0 s against 22.0 s).",
      "It took more steps on the 1 image both reached (60 against 20), though."], ["does not support"]),
    # same successes, same steps: no winner, and no claim either way
    ([(0, "ifgsm", 10, True, 0.91, 1.0), (0, "prob", 10, True, 0.91, 1.0)], None,
     ["The table does not separate the two rules"], ["This is why", "did better"]),
])
def test_method_sentence_follows_the_data(rows, winner, words, absent):
    f = method_facts(fixture.study(method_rows=rows))
    assert f.winner == winner
    for w in words:
        assert w in f.sentence, f.sentence
    for w in absent:
        assert w not in f.sentence, f.sentence


def test_report_shows_the_study_with_its_sources(tmp_path):
    fixture.write(tmp_path / "results")
    p4 = _p4_section(tmp_path / "results", tmp_path / "out")
    assert "The assignment's update rule beside I-FGSM" in p4 and "Not yet produced" not in p4
    assert "50.70%" in p4 and "prob (assignment)" in p4 and "2 / 2" in p4                 # pct(2), the counts
    assert "This is why I-FGSM with momentum is the default" in p4
    assert "none up to 4/255 for the plain attack" in p4 and 'alt="sweep"' in p4
    # methods and EOT come from the recording and say so; the plain sweep was computed by this run
    assert p4.count("recorded when the study was run, not recomputed") == 2
    assert "The EOT sweep's numbers were recorded" in p4 and "The plain sweep's numbers" not in p4


def test_report_without_the_study_or_a_part_shows_boxes(tmp_path):
    root = tmp_path / "results"
    fixture.write(root)
    fixture.study(parts=("plain",), recorded=()).write(root / "p4" / "study.json")     # no recording yet
    p4 = _p4_section(root, tmp_path / "out")
    boxes = [b for b in p4.split('<div class="missing">')[1:]]
    assert len(boxes) == 2 and all("problems/p4_study.py" in b for b in boxes)
    assert "update-rule comparison" in boxes[0] and "EOT eps sweep" in boxes[1]
    assert "--parts" not in boxes[0] and "--from-recorded" not in boxes[0]      # the command that computes them
    assert "kept under all 4 transforms on 0 of 2 images at eps 1 and 2" in p4 and "EOT attack:" not in p4
    (root / "p4" / "study.json").unlink()
    p4 = _p4_section(root, tmp_path / "out2")
    assert "Not yet produced:</strong> the update-rule comparison and the eps sweep" in p4
    assert "targeted attacks succeeded" in p4                      # the rest of P4 is still there


def test_from_recorded_redraws_and_marks(tmp_path, capsys, monkeypatch):
    from problems.p4.study_cli import main
    rec = tmp_path / "recorded" / "p4_study.json"
    fixture.study(recorded=(), figures={"sweep": "gone.png"}).write(rec)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["problems/p4_study.py", "--from-recorded", str(rec), "--out", str(out)])
    assert main() == 0
    d = P4Study.read(out / "study.json")
    assert d.recorded_parts() == ["methods", "plain", "eot"] and d.recorded_from == "p4_study.json"
    assert d.methods.source.command == "problems/p4_study.py"          # the command that computed the numbers
    assert "--from-recorded" in d.command                               # the one that wrote this file
    assert d.figures == {"sweep": "study.png"} and (out / "study.png").stat().st_size > 10_000
    from PIL import Image
    with Image.open(out / "study.png") as im:     # drawn at 150 dpi for the 6.6 in text-wide slot
        assert im.size == (990, 435)
    assert method_facts(d).sentence == method_facts(fixture.study()).sentence     # the same numbers
    assert "recorded parts (methods, plain, eot)" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    (["--from-recorded", "MISSING"], "does not exist"),
    (["--from-recorded", "NOTJSON"], "not a readable JSON file"),
    (["--from-recorded", "RENAMED"], "P4Study: unknown field(s) method_table"),
    (["--parts", "none"], "--parts none computes nothing"),
    (["--parts", "plain,fgsm"], "--parts must be a comma list"),
    (["--plain-eps", "1,x"], "--plain-eps must be a number"),
    (["--eot-eps", "2,0.5"], "--eot-eps must be at least 1"),
    (["--eot-eps", ""], "--eot-eps must be a comma list"),
    (["--plain-eps", "1,2,1"], "--plain-eps lists an eps twice"),
    (["--eps", "300"], "--eps must be below 255"),
    (["--n-images", "5"], "--n-images must be 1 to 4"),
    (["--from-recorded", "GOOD", "--parts", "plain", "--n-images", "1"], "the recording attacked 2 images"),
])
def test_study_bad_input_is_one_line(tmp_path, capsys, args, words):
    from problems.common.cli import run_main
    from problems.p4.study_cli import main
    fixture.study().write(tmp_path / "good.json")
    (tmp_path / "notjson.json").write_text("{oops")
    obj = fixture.study().to_json()
    obj["method_table"] = obj.pop("methods")
    (tmp_path / "renamed.json").write_text(json.dumps(obj))
    names = {"MISSING": tmp_path / "nope.json", "NOTJSON": tmp_path / "notjson.json",
             "RENAMED": tmp_path / "renamed.json", "GOOD": tmp_path / "good.json"}
    args = [str(names.get(a, a)) for a in args]
    assert run_main(main, args + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "o").exists()                 # refused before any work


def test_plan_reads_the_recording_unless_retrain(tmp_path):
    from jobs import P4_STUDY, hint_commands, plan
    def study_job(**kw):
        return next(j for j in plan(tmp_path / "res", **kw) if j.name == "p4_study")
    (tmp_path / "recorded").mkdir()
    none_yet = study_job(repo=tmp_path)                         # no recording: the plain sweep only
    assert none_yet.argv[-2:] == ["--parts", "plain"] and "--from-recorded" not in none_yet.argv
    (tmp_path / P4_STUDY).write_text("{}")
    default = study_job(repo=tmp_path)
    assert default.argv[-4:] == ["--parts", "plain", "--from-recorded", P4_STUDY] and default.produces == ["p4_study"]
    assert study_job(repo=tmp_path, quick=True, retrain=True).argv == default.argv      # quick: no long runs
    assert study_job(repo=tmp_path, seed=3).argv == default.argv       # the plain sweep draws no random numbers
    full = study_job(repo=tmp_path, retrain=True, data_dir="D", seed=3)
    assert full.argv[0] == "problems/p4_study.py" and "--from-recorded" not in full.argv and "--parts" not in full.argv
    assert full.argv[-4:] == ["--data-dir", "D", "--seed", "3"]
    hint = hint_commands(tmp_path / "res")["p4_study_full"]         # what a missing part's box says to run
    assert hint.startswith("python problems/p4_study.py --out ") and hint.endswith("res/p4")
