"""P5's typed result: the script's results.json reads back through P5Result.from_json unchanged, and a
renamed field makes the report show P5 as unreadable, naming the field (not a silently wrong section)."""
import html
import json
import sys
from pathlib import Path

import pytest

from problems.common.result import ResultError
from problems.p5 import cli
from problems.p5.result import LEARN_FIELDS, P5Result

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "report")]
import build_report  # noqa: E402
from report_fixtures import p5 as fixture  # noqa: E402


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
    obj = json.loads(path.read_text())
    obj["pairs_tested"] = obj.pop("pairs_checked")
    path.write_text(json.dumps(obj))
    text = html.unescape(build_report.build(tmp_path / "results", tmp_path / "out", no_code=True, pdf=False)["html"]
                         .read_text())
    p5 = text.split('id="p5"')[1]
    assert "Not yet produced" in p5 and "unreadable results file" in p5
    assert "pairs_tested" in p5 and "problems/p5_rnn_adder.py" in p5
    assert "The hand-set network adds every one" not in text
