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
