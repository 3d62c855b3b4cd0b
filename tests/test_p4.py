"""P4: the attack reaches its target inside the integer eps ball; transforms' geometry; bad input."""
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
from PIL import Image  # noqa: E402

from problems.p4 import attack as A  # noqa: E402
from problems.p4 import cli as P4  # noqa: E402
from problems.common.cli import run_main  # noqa: E402
from problems.common.pretrained import load_pretrained, with_normalization  # noqa: E402


@pytest.fixture(scope="module")
def net():
    model, pre, names = load_pretrained()
    return with_normalization(model, pre), pre, names


def smooth_image(h=64, w=64, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random((h // 8, w // 8, 3))
    im = Image.fromarray((a * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return im


@pytest.mark.parametrize("method", ["ifgsm", "prob"])
def test_attack_small_image_within_eps(net, method):
    net, pre, names = net
    x = A.to_uint8_tensor(smooth_image())
    target, eps = 1, 4.0
    r = A.attack(net, x, target, eps, method=method, max_steps=60, confidence=0.5)
    adv = r["x_u8"]
    assert adv.dtype == torch.uint8 and adv.shape == x.shape
    assert int((adv.int() - x.int()).abs().max()) <= eps          # L-inf after 8-bit rounding
    p = A.classify_u8(net, adv)[0]
    assert r["success"] and int(p.argmax()) == target and float(p[target]) >= 0.5
    assert r["steps"] < 60 and abs(r["prob"] - float(p[target])) < 1e-4


def test_attack_eps1_integer_ball(net):
    net, pre, names = net
    x = A.to_uint8_tensor(smooth_image(seed=3))
    r = A.attack(net, x, 812, 1.0, max_steps=3, confidence=0.99)
    d = (r["x_u8"].int() - x.int()).abs()
    assert int(d.max()) <= 1 and r["steps"] == 3 and not r["success"]


def test_transform_geometry():
    a = np.zeros((224, 224, 3), np.uint8)
    a[10, 20] = 255                                   # a single bright pixel at (x=20, y=10)
    im = Image.fromarray(a)
    f = np.asarray(A.t_flip(im))
    assert f[10, 223 - 20].tolist() == [255, 255, 255] and f.sum() == a.sum()
    assert A.crop_side(224) == 200 and abs(200 ** 2 / 224 ** 2 - 0.8) < 0.01
    b = np.zeros((224, 224, 3), np.uint8)
    b[112 - 50:112 + 50, 112 - 50:112 + 50] = 200     # centred square: 100 px -> 112 px after crop+resize
    c = np.asarray(A.t_crop(Image.fromarray(b)))
    assert c.shape == (224, 224, 3)
    row = c[112, :, 0] > 100
    assert abs(int(row.sum()) - 112) <= 2
    # rotation: a pixel right of centre moves 30 degrees counter-clockwise (up on screen)
    r = np.zeros((224, 224, 3), np.uint8)
    r[110:114, 170:174] = 255
    ro = np.asarray(A.t_rotate(Image.fromarray(r))).astype(float)[..., 0]
    ys, xs = np.nonzero(ro > 60)
    cx, cy = xs.mean() - 111.5, 111.5 - ys.mean()
    assert abs(math.degrees(math.atan2(cy, cx)) - 30) < 3
    assert abs(math.hypot(cx, cy) - 60) < 3
    assert ro.shape == (224, 224)
    g = np.asarray(A.t_gray(Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8))))
    assert g.shape == (8, 8, 3) and (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()


def test_eot_views_shapes():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    v = A.random_transforms(x, 6, gen)
    assert v.shape == (6, 3, 32, 32)
    v.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_cli_end_to_end(tmp_path, capsys):
    im = smooth_image(300, 260)
    path = tmp_path / "pic.png"
    im.convert("RGBA").save(path)                      # RGBA input is converted, not a crash
    out = tmp_path / "out"
    rc = run_main(P4.main, ["--image", str(path), "--target", "goldfish", "--eps", "2", "--out", str(out),
                            "--confidence", "0.6", "--max-steps", "40"])
    assert rc == 0
    r = json.loads((out / "results.json").read_text())
    assert all(not f.startswith("/") and (out / f).is_file() for f in r["figures"].values())  # relative paths
    e = r["images"][0]
    for k in ["image", "target", "eps", "linf", "clean_top1", "clean_prob", "adv_top1", "adv_prob", "steps",
              "robustness"]:
        assert k in e
    saved = np.asarray(Image.open(out / "pic_adv.png"))
    assert saved.shape == (224, 224, 3) and saved.dtype == np.uint8
    assert e["linf"] <= 2 and e["target"]["class_id"] == 1
    assert e["success"] and e["adv_top1"]["class_id"] == 1
    assert [t["transform"] for t in e["robustness"]] == ["none", "hflip", "crop80", "rotate30", "grayscale"]
    assert (out / "attack.png").exists() and (out / "robustness.png").exists()


@pytest.mark.parametrize("args,msg", [
    (["--image", "missing.png", "--target", "1"], "not found"),
    (["--image", "PIC", "--target", "1000"], "outside 0-999"),
    (["--image", "PIC", "--target", "no such class"], "unknown ImageNet class"),
    (["--image", "PIC", "--target", "1", "--eps", "0"], "--eps must be > 0"),
    (["--image", "PIC", "--target", "1", "--eps", "-3"], "--eps must be > 0"),
    (["--image", "PIC"], "one --target per --image"),
    (["--image", "BAD", "--target", "1"], "cannot read"),
])
def test_cli_bad_input(tmp_path, capsys, args, msg):
    pic = tmp_path / "p.png"
    smooth_image().save(pic)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00garbage")
    args = [str(pic) if a == "PIC" else str(bad) if a == "BAD" else
            str(tmp_path / a) if a == "missing.png" else a for a in args]
    assert run_main(P4.main, args + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err


def test_study_tiny_run_then_recorded_parts(tmp_path, monkeypatch, capsys):
    """The study on one image with a few steps: every part computed and typed; then --from-recorded with the
    plain sweep recomputed gives the same numbers (same seed), the other parts copied and marked."""
    from problems.p4.study_cli import main
    from problems.p4.study_result import P4Study
    tiny = ["--n-images", "1", "--eps", "2", "--max-steps", "3", "--plain-eps", "2,4", "--eot-eps", "4",
            "--eot-steps", "1", "--eot-samples", "1", "--threads", "1"]
    first = tmp_path / "first"
    monkeypatch.setattr("sys.argv", ["problems/p4_study.py", *tiny, "--out", str(first)])
    assert main() == 0
    obj = json.loads((first / "study.json").read_text())
    d = P4Study.from_json(obj)
    assert d.to_json() == obj and d.recorded_from is None and d.recorded_parts() == []
    assert [(r.method, r.steps) for r in d.methods.rows] == [("ifgsm", 3), ("prob", 3)]   # 3 steps, not reached
    assert d.methods.eps == 2.0 and d.methods.step_px == 0.5 and not any(r.success for r in d.methods.rows)
    assert [p.eps for p in d.plain.points] == [2.0, 4.0] and [p.eps for p in d.eot.points] == [4.0]
    p = d.plain.points[1]
    assert set(p.transform_probs) == {"hflip", "crop80", "rotate30", "grayscale"} and 0 <= p.target_prob <= 1
    assert d.images[0].target.class_id == 812 and d.images[0].image.endswith("peppers.png")
    assert (first / "study.png").is_file() and d.figures == {"sweep": "study.png"}

    again = tmp_path / "again"
    monkeypatch.setattr("sys.argv", ["problems/p4_study.py", *tiny, "--from-recorded", str(first / "study.json"),
                                     "--parts", "plain", "--out", str(again)])
    assert main() == 0
    e = P4Study.read(again / "study.json")
    assert e.recorded_parts() == ["methods", "eot"] and not e.plain.source.recorded
    assert e.methods.rows == d.methods.rows and e.eot.points == d.eot.points           # copied
    strip = [dict(vars(q), seconds=0) for q in e.plain.points]
    assert strip == [dict(vars(q), seconds=0) for q in d.plain.points]                # recomputed: same numbers
