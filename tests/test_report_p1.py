"""P1's typed result: the script's results.json reads back through P1Result.from_json unchanged, and a
renamed field makes the report show P1 as unreadable, naming the field (not a silently wrong section)."""
import html
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from problems.common.result import ResultError
from problems.p1.result import P1Result

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "report")]
import build_report  # noqa: E402
from report_fixtures import p1 as fixture  # noqa: E402


def test_script_output_round_trips(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    from PIL import Image

    from problems.p1 import cli
    path = tmp_path / "g.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path)
    out = tmp_path / "out"
    cli.main(["--image", str(path), "--out", str(out), "--topk", "2", "--maps", "1"])
    obj = json.loads((out / "results.json").read_text())
    result = P1Result.from_json(obj)
    assert result.to_json() == obj and list(result.to_json()) == list(obj)     # same keys, same order
    assert [t.rank for t in result.top] == [1, 2] and result.image_size == (60, 40)
    assert (out / "results.md").read_text() == result.markdown()
    assert set(result.figures) == {"early", "middle", "late", "combined"}


def test_fixture_round_trips_and_makes_the_report_text():
    obj = fixture.result().to_json()
    back = P1Result.from_json(json.loads(json.dumps(obj)))
    assert back == fixture.result() and back.to_json() == obj
    assert back.headline() == "tf_efficientnet_lite0: top-1 bell pepper (p = 0.676)"
    facts = back.facts()
    assert facts["depths"][1] == {"depth": "middle", "layer": "blocks.3.2.bn1", "shape": "14x14", "channels": "3, 5"}
    assert facts["discussion"][-1] == ("summary", "Deeper is coarser.")
    assert "the top 3 classes together hold 0.736 of the probability mass" in facts["sentence"]
    with pytest.raises(ResultError, match=r"P1Result.top\[0\].prob: expected float"):
        P1Result.from_json({**obj, "top": [{**obj["top"][0], "prob": "high"}]})
    with pytest.raises(ResultError, match="missing field 'summary'"):
        P1Result.from_json({**obj, "discussion": {k: v for k, v in obj["discussion"].items() if k != "summary"}})


def test_renamed_field_makes_the_p1_section_unreadable(tmp_path):
    fixture.write(tmp_path / "results")
    path = tmp_path / "results" / "p1" / "results.json"
    obj = json.loads(path.read_text())
    obj["classes"] = obj.pop("top")
    path.write_text(json.dumps(obj))
    text = html.unescape(build_report.build(tmp_path / "results", tmp_path / "out", no_code=True, pdf=False)["html"]
                         .read_text())
    p1 = text.split('id="p1"')[1].split('id="p2"')[0]
    assert "Not yet produced" in p1 and "unreadable results file" in p1
    assert "classes" in p1 and "problems/p1_pretrained.py" in p1
    assert "bell pepper" not in text
