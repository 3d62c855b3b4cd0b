"""P1's typed result: the script's results.json reads back through P1Result.from_json unchanged, and a
renamed field makes the report show P1 as unreadable, naming the field (not a silently wrong section)."""
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from problems.common.result import ResultError
from problems.p1.result import P1Result, discuss

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "report")]
from report_fixtures import p1 as fixture  # noqa: E402
from report_fixtures.common import built_html, rename_field  # noqa: E402


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
    assert back.headline() == "tf_efficientnet_lite0: top-1 bell pepper (p = 67.56%)"
    facts = back.facts()
    assert facts["depths"][1] == {"depth": "middle", "layer": "blocks.3.2.bn1", "shape": "14x14", "channels": "3, 5"}
    assert facts["discussion"] == discuss(back).items() and facts["discussion"][3][0] == "summary"
    assert "the top 3 classes together hold 73.65% of the probability mass" in facts["sentence"]
    with pytest.raises(ResultError, match=r"P1Result.top\[0\].prob: expected float"):
        P1Result.from_json({**obj, "top": [{**obj["top"][0], "prob": "high"}]})
    with pytest.raises(ResultError, match="missing field 'summary'"):
        P1Result.from_json({**obj, "discussion": {k: v for k, v in obj["discussion"].items() if k != "summary"}})


def test_renamed_field_makes_the_p1_section_unreadable(tmp_path):
    fixture.write(tmp_path / "results")
    path = tmp_path / "results" / "p1" / "results.json"
    rename_field(path, "top", "classes")
    text = built_html(tmp_path / "results", tmp_path / "out")
    p1 = text.split('id="p1"')[1].split('id="p2"')[0]
    assert "Not yet produced" in p1 and "unreadable results file" in p1
    assert "classes" in p1 and "problems/p1_pretrained.py" in p1
    assert "bell pepper" not in text


# ------------------------------------------------------------------------------ text follows the data
def _contradicting_maps():
    """The opposite of the peppers run: early channels follow no single cue, the late ones follow one
    closely; nothing is flat-topped."""
    maps = []
    for d, layer, shape in fixture.DEPTHS:
        r = {"early": 0.2, "middle": 0.6, "late": 0.9}[d]
        maps += [fixture.feature_map(d, layer, shape, 7, 1, "saturation", r, high=0.9 if d == "late" else 0.2,
                                     max_activation=3.0),
                 fixture.feature_map(d, layer, shape, 8, 2, "edges", -r, high=0.1, location="mostly in the lower right",
                                     max_activation=2.5)]
    return maps


def test_text_follows_the_data_that_contradicts_the_peppers_wording():
    facts = fixture.result(maps=_contradicting_maps(), skipped=[]).facts()
    summary = facts["summary"]
    assert "0.20 early, 0.60 middle and 0.90 late: it rises with depth" in summary
    assert "some deeper channel follows a single cue as closely as the early ones" in summary
    assert "Simple cues describe the early channels best" not in summary
    assert "early channels are colour, brightness and edge detectors" not in summary
    early, _, late = facts["per_depth"]
    assert "passed over none" in early["intro"] and "near-duplicates" not in early["intro"]
    assert all("no single simple cue explains it" in c["text"] for c in early["channels"])
    assert "over 10% of the image, mostly in the lower right" in early["channels"][1]["text"]
    assert "closely tracks colour saturation (r = +0.90 with saturation)" in late["channels"][0]["text"]
    assert "high (at least half its range) over most of the image (90%)" in late["channels"][0]["text"]
    assert "closely tracks flat, edge-free areas (r = \u22120.90 with edges)" in late["channels"][1]["text"]
    challenges = dict(facts["challenges"])
    assert "Saturation" not in challenges                                   # no map sits at its maximum
    assert challenges["Channels mix features"].startswith("0 of the 4 channels shown past the early layer")
    assert "near-copies" not in challenges["Channels mix features"]
    assert "maxima range from 2.50 to 3.00" in challenges["Normalisation"]


def test_text_of_the_peppers_like_fixture():
    facts = fixture.result().facts()
    assert "The early channels are colour, brightness and edge detectors" in facts["summary"]
    early = facts["per_depth"][0]
    assert "passed over 1 higher-ranked channel as near-duplicates of kept ones (1 copies channel 3, |r| = 0.87)" \
        in early["intro"]
    assert "one cell covers 2x2 pixels of the 224x224 input" in early["intro"]
    assert "closely tracks darkness (r = \u22120.90 with brightness)" in early["channels"][0]["text"]
    challenges = dict(facts["challenges"])
    assert "the ceiling of 6 of the network's ReLU6 activations" in challenges["Saturation"]
    assert challenges["Channels mix features"].startswith("4 of the 4 channels shown past the early layer")
    assert "late maps have 7x7 = 49 cells, each spanning 32x32 input pixels" in challenges["Resolution"]


def test_filled_places_are_said():
    maps = [fixture.feature_map(d, layer, s, c, c, high=0.2) for d, layer, s in fixture.DEPTHS for c in (1, 2)]
    maps[1].filled, maps[1].max_r = True, 0.97
    intro = fixture.result(maps=maps, skipped=[]).facts()["per_depth"][0]["intro"]
    assert "Only 1 of the layer's maps pass the cap; channel 2 fills the remaining places" in intro
    assert "passed over none" not in intro


def test_hand_notes_only_for_the_default_image_and_model():
    import dataclasses

    from problems.common.pretrained import ModelInfo
    from problems.p1.result import DEFAULT_MODEL, NOTES, PEPPERS_SHA256
    note = NOTES[(DEFAULT_MODEL, PEPPERS_SHA256)][("bn1", 6)]
    maps = [fixture.feature_map("early", "bn1", (112, 112), 6, 1, "brightness", -0.88, high=0.7),
            fixture.feature_map("early", "bn1", (112, 112), 999, 2, "edges", 0.3)]
    default = fixture.result(maps=maps, image_sha256=PEPPERS_SHA256).facts()["per_depth"][0]["channels"]
    assert default[0]["note"] and default[0]["text"] == (
        f"{note} Measured: high over 70% of the image; strongest cue brightness, r = \u22120.88.")
    assert not default[1]["note"] and default[1]["text"].startswith("high (at least half its range)")
    other_image = fixture.result(maps=maps, image_sha256="f" * 64)
    other_model = dataclasses.replace(fixture.result(maps=maps, image_sha256=PEPPERS_SHA256),
                                      model=ModelInfo(name="resnet50", library="torchvision", weights="IMAGENET1K_V2"))
    for r in (other_image, other_model):
        text = r.facts()["per_depth"][0]["channels"][0]["text"]
        assert note not in text and "dark-region" not in text
        assert text.startswith("high (at least half its range) over more than half of the image (70%)")
        assert "closely tracks darkness (r = \u22120.88 with brightness)" in text


def test_notes_key_is_the_shipped_peppers_image():
    from problems.common.assets import ASSETS
    from problems.common.pretrained import load_image_rgb
    from problems.p1.result import PEPPERS_SHA256
    from problems.p1.run import pixels_sha256
    assert pixels_sha256(load_image_rgb(ASSETS / "peppers.png")) == PEPPERS_SHA256


def test_p1_section_in_the_report(tmp_path):
    fixture.write(tmp_path / "results")
    text = built_html(tmp_path / "results", tmp_path / "out")
    p1 = text.split('id="p1"')[1].split('id="p2"')[0]
    for pct in ("67.56%", "5.36%", "0.73%", "73.65%"):                     # probabilities: percent, 2 decimals
        assert pct in p1
    assert "0.676" not in p1 and "0.054" not in p1
    cites = re.findall(r"\[(\d+)\]", p1.split("Top-3 classes")[0])          # efficientnet, timm, imagenet
    assert len(set(cites)) == 3
    refs = text.split("References")[-1]
    for work in ("EfficientNet: Rethinking model scaling", "PyTorch Image Models", "ImageNet Large Scale"):
        assert work in refs
    assert "PyPI" not in p1 and "lite0.pth" in p1                          # the weights, not how they were installed
    assert "greedy by mean activation with a correlation cap" in p1 and "at most 0.6" in p1
    assert p1.count("the same maps over the input (bottom)") == 3 and p1.count("<img") == 3
    assert "What changes with depth." in p1 and "Challenges of interpreting the maps." in p1
    assert "Channel 3 (1st by mean activation, mean 2.00):" in p1
