"""P1: top-k output format, feature-map normalisation and hooked layer shapes."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
from PIL import Image  # noqa: E402

from problems.common.pretrained import load_pretrained  # noqa: E402
from problems.p1 import cli as P1  # noqa: E402
from problems.p1 import feature_maps as FM  # noqa: E402


@pytest.fixture(scope="module")
def lite0():
    return load_pretrained()


def test_normalise_map_range():
    rng = np.random.default_rng(0)
    for a in [rng.normal(size=(7, 7)) * 50 - 3, np.full((4, 4), 2.5), rng.random((112, 112))]:
        m = FM.normalise_map(a)
        assert m.shape == a.shape and m.min() >= 0 and m.max() <= 1
    assert FM.normalise_map(np.array([[1.0, 3.0]])).tolist() == [[0.0, 1.0]]


def test_hooks_layer_shapes(lite0):
    model, pre, names = lite0
    x = torch.zeros(1, 3, 224, 224)
    layers = FM.pick_layers(model, x)
    assert layers == {"early": "bn1", "middle": "blocks.3.2.bn1", "late": "bn2"}
    acts = FM.record_activations(model, x, list(layers.values()))
    assert tuple(acts["bn1"].shape) == (1, 32, 112, 112)
    assert tuple(acts["blocks.3.2.bn1"].shape) == (1, 480, 14, 14)
    assert tuple(acts["bn2"].shape) == (1, 1280, 7, 7)
    assert torch.allclose(acts["__logits__"], model(x))  # hooks see the real full forward pass
    assert float(acts["bn2"].min()) >= 0 and float(acts["bn2"].max()) <= 6  # ReLU6 activations
    ch = FM.select_channels(acts["bn2"][0], 5)
    means = acts["bn2"][0].mean(dim=(1, 2))
    assert len(ch) == 5 and float(means[ch[0]]) == float(means.max())


def test_cli_topk_format(tmp_path, capsys):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80), dtype=np.uint8))  # grayscale
    path = tmp_path / "g.png"
    img.save(path)
    out = tmp_path / "out"
    assert P1.main(["--image", str(path), "--out", str(out), "--topk", "3", "--maps", "2"]) is None
    lines = capsys.readouterr().out.splitlines()
    import re
    pat = re.compile(r"^(\d)\. (.+) \((\d+)\): (\d\.\d{3})$")
    assert [int(pat.match(s).group(1)) for s in lines[:3]] == [1, 2, 3]
    r = json.loads((out / "results.json").read_text())
    for key in ["model", "preprocessing", "image", "top", "feature_maps", "figures", "discussion"]:
        assert key in r
    for key in ["image_sha256", "image_colours", "correlation_cap", "skipped", "layer_channels"]:
        assert key in r
    for m in r["feature_maps"]:       # every shown map is measured, and passes the cap unless it fills a place
        assert set(m["cues"]) == set(FM.CUES) and 0 <= m["high_fraction"] <= 1
        assert m["filled"] or m["max_r"] is None or m["max_r"] <= r["correlation_cap"]
    assert [t["rank"] for t in r["top"]] == [1, 2, 3]
    assert set(r["top"][0]) == {"rank", "class_id", "name", "prob"}
    assert all((out / f).exists() for f in ["feature_maps_early.png", "feature_maps_all.png", "results.md"])
    assert {m["depth"] for m in r["feature_maps"]} == {"early", "middle", "late"}
    assert all(not f.startswith("/") and (out / f).is_file() for f in r["figures"].values())  # relative paths
    with Image.open(out / "feature_maps_early.png") as im:    # input + 2 maps per row, 2 rows, report width
        assert abs(im.width - FM.FIG_WIDTH * 170) <= 2 and im.height < im.width


def test_cli_bad_input(tmp_path, capsys):
    from problems.common.cli import run_main
    assert run_main(P1.main, ["--image", str(tmp_path / "missing.png"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0]


def test_choose_channels_passes_over_near_duplicates_and_constant_maps():
    rng = np.random.default_rng(0)
    base = rng.random((3, 8, 8))
    act = np.stack([base[0] + 5, base[0] * 1.01 + 4.9, np.full((8, 8), 4.8), base[1] + 1, base[2]])
    choice = FM.choose_channels(act, 3, cap=0.6)
    assert choice.channels == [0, 3, 4] and choice.ranks == [1, 4, 5] and choice.filled == [False] * 3
    assert choice.skipped == [(1, 2, 0, 1.0), (2, 3, None, None)]          # a copy of 0; a constant map
    assert choice.max_r[0] is None and all(r <= 0.6 for r in choice.max_r[1:])
    assert FM.select_channels(act, 3, cap=1.0) == [0, 1, 3]                # cap 1: the plain top by mean
    assert FM.select_channels(torch.from_numpy(act), 3) == [0, 3, 4]        # tensors too
    few = FM.choose_channels(act[:3], 3)                                     # too few distinct maps: filled
    assert few.channels == [0, 1, 2] and few.filled == [False, True, True] and few.skipped == []


def test_describe_map_says_where_and_what():
    seen = np.zeros((224, 224, 3), dtype=np.uint8)
    seen[:, :112] = (200, 20, 20)                   # red left half
    seen[:, 112:] = (20, 160, 20)                   # green right half
    m = np.zeros((14, 14))
    m[7:, :7] = 3.0                                 # high on the lower left quarter
    d = FM.describe_map(m, seen)
    assert d["location"] == "mostly in the lower left" and abs(d["high_fraction"] - 0.25) < 0.03
    assert d["colours"] == {"red": 1.0} and d["max_activation"] == 3.0 and d["plateau"] == 0.25
    assert d["cues"]["red-green"] > 0.5 and abs(d["cues"]["x-edges"]) < 0.5
    assert FM.describe_map(np.ones((7, 7)), seen)["high_fraction"] == 0      # a constant map is high nowhere
    step = np.zeros((224, 224, 3), dtype=np.uint8)
    step[:, 120:] = 255                             # one vertical edge, darker on the left
    edge = FM.describe_map(np.maximum(FM.image_cues(step, 14, 14)["x-edges"], 0), step)
    assert edge["cues"]["x-edges"] > 0.99 and edge["cues"]["edges"] > 0.99 and edge["location"] == "in a strip down the centre"


def test_default_run_matches_the_hand_notes():
    """The channels the hand-written notes describe are the ones the rule shows on the default image, and
    the notes' checkable claims hold on the measured maps."""
    from problems.common.assets import ASSETS
    from problems.p1.result import DEFAULT_MODEL, NOTES, PEPPERS_SHA256
    from problems.p1.run import run
    r = run(ASSETS / "peppers.png").result
    assert r.image_sha256 == PEPPERS_SHA256 and r.model.name == DEFAULT_MODEL
    shown = {(m.layer, m.channel): m for m in r.feature_maps}
    assert set(NOTES[(DEFAULT_MODEL, PEPPERS_SHA256)]) <= set(shown)
    assert [m.channel for m in r.channels("early")] == [6, 22, 4, 24, 21]
    assert [s.channel for s in r.skipped if s.depth == "early" and s.copies == 6][:3] == [1, 9, 13]
    dark, warm, pile, band = shown[("bn1", 6)], shown[("bn1", 4)], shown[("blocks.3.2.bn1", 108)], shown[("bn2", 1003)]
    assert dark.max_activation == 6.0 and dark.plateau > 0.4 and dark.cues["brightness"] < -0.8   # ReLU6 ceiling, dark
    assert warm.cues["red-green"] > 0.9 and set(list(warm.colours)[:2]) <= {"red", "orange", "yellow"}
    assert pile.max_activation == 6.0 and pile.high_fraction > 0.75 and list(pile.low_colours)[0] == "purple"
    assert band.location == "in a band across the middle"
    assert abs(r.top[0].prob - 0.6756) < 0.002 and all(n["note"] for n in r.facts()["per_depth"][0]["channels"])
