"""P5's typed result: the script's results.json reads back through P5Result.from_json unchanged, and a
renamed field makes the report show P5 as unreadable, naming the field (not a silently wrong section)."""
import json
import re
import sys
from pathlib import Path

import pytest

from problems.common.result import ResultError
from problems.p5 import cli
from problems.p5.result import LEARN_FIELDS, P5Result

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "report")]
from report_fixtures import p5 as fixture  # noqa: E402
from report_fixtures.common import built_html, rename_field  # noqa: E402


@pytest.mark.parametrize("learn", [[], ["--learn", "--seeds", "1", "--steps", "10"]])
def test_script_output_round_trips(tmp_path, capsys, learn):
    out = tmp_path / "out"
    assert cli.main(["1011", "111", "--binary", "--verify", "3", "--random-pairs", "2", "--out", str(out),
                     *learn]) == 0
    obj = json.loads((out / "results.json").read_text())
    result = P5Result.from_json(obj)
    assert result.to_json() == obj and list(result.to_json()) == list(obj)     # same keys, same order
    assert result.additions[0].sum == 18 and result.example.steps[0].t == 0
    assert all((k in obj) == bool(learn) for k in LEARN_FIELDS)          # learning keys only with --learn
    assert obj["discussion"] == result.summary()


def test_fixture_round_trips_with_perfect_and_failed_runs():
    obj = fixture.result().to_json()
    assert "n_states" in obj["learn_runs"][1] and "n_states" not in obj["learn_runs"][0]
    back = P5Result.from_json(json.loads(json.dumps(obj)))
    assert back == fixture.result() and back.to_json() == obj
    assert back.headline() == ("hand-set adder: 0 errors on 1,048,576 pairs below 2^10, all-lengths proof holds; "
                               "learned: 1 of 2 seeds perfect")
    with pytest.raises(ResultError, match=r"P5Result.learn_runs\[1\].final_loss: expected float"):
        P5Result.from_json({**obj, "learn_runs": [obj["learn_runs"][0], {**obj["learn_runs"][1], "final_loss": "x"}]})


def test_renamed_field_makes_the_p5_section_unreadable(tmp_path):
    fixture.write(tmp_path / "results")
    path = tmp_path / "results" / "p5" / "results.json"
    rename_field(path, "pairs_checked", "pairs_tested")
    text = built_html(tmp_path / "results", tmp_path / "out")
    p5 = text.split('id="p5"')[1]
    assert "Not yet produced" in p5 and "unreadable results file" in p5
    assert "pairs_tested" in p5 and "problems/p5_rnn_adder.py" in p5
    assert "The hand-set network adds every one" not in text


# ------------------------------------------------------------------------------------------- text from data
def _run(seed, loss, errors, perfect=False, steps=2000, weights=None, reason="state (0, 0, 1) wrong"):
    from problems.p5.result import LearnRun
    return LearnRun(seed=seed, steps_run=steps, final_loss=loss, errors_exhaustive=errors, pairs_checked=1048576,
                    proof_all_lengths=perfect, perfect=perfect, proof_reason="" if perfect else reason,
                    weights=weights, n_states=4 if perfect else None, min_margin=0.6 if perfect else None)


def _section(tmp_path, result) -> str:
    result.write(tmp_path / "results" / "p5" / "results.json")
    text = built_html(tmp_path / "results", tmp_path / "out")
    section = text.split('id="p5"')[1]
    return " ".join(re.sub(r"<[^>]+>", " ", section).split())


def test_exact_counts_say_what_they_contain(tmp_path):
    r = fixture.result()
    verdict = r.facts()["verdict"]
    assert verdict.startswith("The hand-set network adds all 1,048,576 pairs of 10-bit numbers plus 200 random "
                              "64-bit and 200 random 200-bit pairs correctly")
    section = _section(tmp_path, r)
    assert "1,048,976" not in section and "all 1,048,576 pairs of 10-bit numbers plus 200 random" in section
    r.random_checks[1].errors = 3                                       # errors are counted where they happen
    assert ("makes 0 errors on all 1,048,576 pairs of 10-bit numbers, 0 errors on the 200 random 64-bit pairs "
            "and 3 errors on the 200 random 200-bit pairs") in r.facts()["verdict"]


def test_learning_summary_failure_kinds_and_loss_vs_errors_follow_the_runs(tmp_path):
    from problems.p5.result import Weights
    # weights a sigmoid run ended with at loss 0.0000: right on every 6-bit sum relaxed, not with the step
    near = Weights(U=[[4.566988753931922, 8.067237085343274], [-5.820570021855987, -5.182201830271244],
                      [-8.257203405531778, 7.72066558044107]],
                   W=[[-0.01505623359939514, 0.18685513432959833, 0.020886377928302766],
                      [-4.0012835607392105, 4.253082373765547, 0.1165222325214485],
                      [-6.209451133501698, 7.183832037505848, -0.13139510880099897]],
                   b_h=[-4.684022485215982, 5.970612876421561, 1.036884651396527],
                   v=[7.224056148728776, 8.263536465728519, -6.948434951703428], b_y=-4.762390672340685,
                   h_0=[0.0, 0.0, 0.0])
    r = fixture.result()
    r.learn_runs = [_run(0, 0.22, 598576), _run(1, 0.007, 0, perfect=True, steps=450), _run(2, 0.21, 598576),
                    _run(3, 0.23, 598576), _run(5, 0.03, 0, perfect=True, steps=300), _run(6, 0.00002, 598576,
                    weights=near), _run(9, 0.55, 1000000), _run(15, 0.48, 960000), _run(16, 0.3, 12345)]
    f = r.facts()["learn"]
    assert ("for 2 of 9 seeds (22.22%): seeds 1 and 5, after 450 and 300 training steps respectively"
            in f["sentence"])
    assert f["failures"].startswith("The 7 failed runs trained for 2,000 steps each: ")
    assert "3 (seeds 0, 2, 3) end with the same number of errors, 598,576 of 1,048,576 (57.08%), at final loss " \
        "0.2100\u20130.2300" in f["failures"]
    assert ("seed 6 ends with a near-zero training loss (0.0000) and still 598,576 errors (the same count as the 3 "
            "above)") in f["failures"]
    assert "2 (seeds 9, 15) stay far off, with 91.55%\u201395.37% of the sums wrong" in f["failures"]
    assert "seed 16 ends with 12,345 errors (final loss 0.3000)" in f["failures"]
    lve = f["loss_vs_errors"]
    assert "seed 6 ends with loss 0.0000 and still 598,576 errors (57.08% of the sums)" in lve
    assert ("with the sigmoid at its final steepness (\u03b2 = 10) its weights add 100.00% of all 4,096 pairs of "
            "6-bit numbers (the width it trained on) correctly, with the step 64.09%") in lve
    hand = fixture.result().weights                       # a relaxed network no better than the hard one
    r.learn_runs[5] = _run(6, 0.00002, 598576, weights=hand)
    assert "says little about the thresholded network" in r.facts()["learn"]["loss_vs_errors"]
    r.learn_runs[5] = _run(6, 0.00002, 598576, weights=near)
    section = _section(tmp_path, r)
    assert f["sentence"] in section and f["failures"] in section and lve in section
    assert '<th class="num">seed</th>' not in section and "seed 16 " in section    # a summary, not a seed table

    # no near-zero-loss failure: the sentence says whether the final loss separates the perfect runs
    r.learn_runs = [_run(0, 0.22, 598576), _run(1, 0.007, 0, perfect=True, steps=450)]
    lve = r.facts()["learn"]["loss_vs_errors"]
    assert "every perfect run ends with a lower loss (0.0070) than every failed one (0.2200)" in lve
    assert "near-zero" not in r.facts()["learn"]["failures"] and "seed 0 ends with 598,576 errors" in \
        r.facts()["learn"]["failures"]
    r.learn_runs = [_run(0, 0.02, 598576), _run(1, 0.07, 0, perfect=True, steps=450)]
    assert "the final loss does not separate perfect runs (0.0700) from failed ones (0.0200)" in \
        r.facts()["learn"]["loss_vs_errors"]
    r.learn_runs = [_run(4, 0.3, 0, reason="state (1, 1, 1) is reached with carry 0 and with carry 1")]
    assert "seed 4 is exact on all 1,048,576 pairs but fails the all-lengths proof" in \
        r.facts()["learn"]["failures"]
    assert "for 0 of 1 seeds (0.00%)." in r.facts()["learn"]["sentence"]


def test_derivation_in_the_report_names_no_code_files():
    from problems.p5.result import derivation_markdown
    doc, text = derivation_markdown(for_report=False), derivation_markdown()
    if doc is None:
        pytest.skip("docs/p5_rnn_adder.md is missing")
    assert "tests/" in doc                                   # the doc keeps its pointers for developers
    for word in ("tests/", "problems/", ".py", "weights/", "::"):
        assert word not in text, word
    assert "checked over all 8 binary states" in text and "a test checks all 8" in text
