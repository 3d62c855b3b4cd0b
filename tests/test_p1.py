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
    assert [t["rank"] for t in r["top"]] == [1, 2, 3]
    assert set(r["top"][0]) == {"rank", "class_id", "name", "prob"}
    assert all((out / f).exists() for f in ["feature_maps_early.png", "feature_maps_all.png", "results.md"])
    assert {m["depth"] for m in r["feature_maps"]} == {"early", "middle", "late"}
    assert all(not f.startswith("/") and (out / f).is_file() for f in r["figures"].values())  # relative paths


def test_cli_bad_input(tmp_path, capsys):
    from problems.common.cli import run_main
    assert run_main(P1.main, ["--image", str(tmp_path / "missing.png"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0]
