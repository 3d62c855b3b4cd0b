"""P1's work: classify one image with a pretrained CNN, then read feature maps at three depths.

`run` returns a P1Run: the typed result plus the chosen maps themselves, which the command line draws.
`log` receives the progress lines (the top-k classes as soon as they are known).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from problems.common.cli import UserError, portable_path
from problems.common.pretrained import ModelInfo, Preprocessing
from problems.p1.feature_maps import normalise_map, pick_layers, record_activations, select_channels
from problems.p1.result import (Discussion, FeatureMap, Layers, P1Result, SUMMARY,
                                TopClass, depth_discussion)

RULE = ("strongest mean activation: the 5 channels whose feature map has the largest spatial mean "
        "(the channels this image drives hardest)")
MAX_TOPK = 1000  # ImageNet-1k has 1000 classes


@dataclass
class DepthMaps:
    """The maps shown at one depth: each (H, W) min-max normalised to [0, 1]; shape: the layer's (C, H, W)."""
    depth: str
    layer: str
    shape: tuple[int, int, int]
    channels: list[int]
    maps: list[np.ndarray]
    titles: list[str]


@dataclass
class P1Run:
    """A run's result, its maps per depth, the image as the network sees it (PIL, resized and cropped),
    and its start (time.time()), from which the command line times the whole run, figures included."""
    result: P1Result
    depths: list[DepthMaps]
    seen: Any
    started: float


def _quiet(*args, **kwargs) -> None:
    pass


def run(image, model_name: str = "tf_efficientnet_lite0", topk: int = 3, n_maps: int = 5, seed: int = 0,
        data_dir: str | None = None, command: str = "", log=_quiet) -> P1Run:
    """Top-`topk` classes of the image file `image`, then `n_maps` feature maps at an early, a middle and a
    late layer, read by forward hooks during one ordinary forward pass of the whole network."""
    import torch
    from problems.common.pretrained import load_image_rgb, load_pretrained, predict_topk, preprocessing_info
    torch.manual_seed(seed)

    img = load_image_rgb(image)
    if topk > MAX_TOPK:
        raise UserError(f"--topk must be at most {MAX_TOPK}, got {topk}")
    started = time.time()
    model, pre, names = load_pretrained(model_name)
    info = preprocessing_info(model)
    x = pre(img).unsqueeze(0)

    # Part 1: top-k
    top = predict_topk(model, x[0], names, topk)
    for t in top:
        log(f"{t['rank']}. {t['name']} ({t['class_id']}): {t['prob']:.3f}")

    # Part 2: feature maps from hooks on the full network's forward pass
    layers = pick_layers(model, x)
    acts = record_activations(model, x, list(layers.values()))
    assert torch.allclose(acts["__logits__"], model(x)), "hooked forward pass must be the ordinary one"
    depths, shown, discussion = [], [], {}
    for depth, layer in layers.items():
        a = acts[layer][0]
        chans = select_channels(a, n_maps)
        depths.append(DepthMaps(depth, layer, tuple(a.shape), chans,
                                [normalise_map(a[c].cpu().numpy()) for c in chans],
                                [f"{layer} ch {c}" for c in chans]))
        shown += [FeatureMap(depth=depth, layer=layer, channel=c, shape=tuple(a.shape[1:]),
                             mean_activation=float(a[c].mean()), rule=RULE) for c in chans]
        discussion[depth] = depth_discussion(depth, layer, *a.shape)

    result = P1Result(
        command=command, seed=seed, model=ModelInfo(**{k: info[k] for k in ("name", "library", "weights")}),
        preprocessing=Preprocessing(**info["preprocessing"]), image=portable_path(image, data_dir),
        image_size=tuple(img.size), top=[TopClass(**t) for t in top], feature_maps=shown,
        feature_map_rule=RULE, layers=Layers(**layers), figures={},
        discussion=Discussion(**discussion, summary=SUMMARY), seconds=round(time.time() - started, 2))
    return P1Run(result, depths, pre.geometric(img), started)
