"""P1's work: classify one image with a pretrained CNN, then read feature maps at three depths.

`run` returns a P1Run: the typed result plus the chosen maps themselves, which the command line draws.
`log` receives the progress lines (the top-k classes as soon as they are known).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from problems.common.cli import UserError, portable_path
from problems.common.pretrained import ModelInfo, Preprocessing
from problems.p1.feature_maps import (CORRELATION_CAP, choose_channels, colour_names, colour_shares, describe_map,
                                      image_cues, normalise_map, pick_layers, record_activations)
from problems.p1.result import (Discussion, FeatureMap, Layers, P1Result, SkippedChannel, TopClass, discuss,
                                ordinal, rule_text)

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


def pixels_sha256(img) -> str:
    """SHA-256 of a PIL RGB image's size and decoded 8-bit pixels (the same picture in any file gives the
    same key; the hand-written notes about the default image are keyed by it)."""
    w, h = img.size
    return hashlib.sha256(f"{w}x{h}:".encode() + img.convert("RGB").tobytes()).hexdigest()


def run(image, model_name: str = "tf_efficientnet_lite0", topk: int = 3, n_maps: int = 5, seed: int = 0,
        data_dir: str | None = None, command: str = "", log=_quiet, cap: float = CORRELATION_CAP) -> P1Run:
    """Top-`topk` classes of the image file `image`, then `n_maps` feature maps at an early, a middle and a
    late layer, read by forward hooks during one ordinary forward pass of the whole network, chosen by
    feature_maps.choose_channels with the correlation cap `cap` and measured by describe_map."""
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
    seen = pre.geometric(img)
    pixels = np.asarray(seen)
    names = colour_names(pixels)
    depths, shown, skipped = [], [], []
    for depth, layer in layers.items():
        a = acts[layer][0].float().cpu().numpy()
        choice = choose_channels(a, n_maps, cap)
        cues = image_cues(pixels, *a.shape[1:])
        depths.append(DepthMaps(depth, layer, tuple(a.shape), choice.channels,
                                [normalise_map(a[c]) for c in choice.channels],
                                [f"ch {c} (mean {a[c].mean():.2f})" for c in choice.channels]))
        for c, rank, max_r, filled in zip(choice.channels, choice.ranks, choice.max_r, choice.filled):
            why = f"{ordinal(rank)} by mean activation" + (
                "; fills a place no distinct channel was left for" if filled else
                f"; |r| at most {max_r:.2f} with the maps kept before it" if max_r is not None else "; the first kept")
            shown.append(FeatureMap(depth=depth, layer=layer, channel=c, shape=tuple(a.shape[1:]), rule=why,
                                    rank=rank, max_r=max_r, filled=filled, **describe_map(a[c], pixels, cues, names)))
        skipped += [SkippedChannel(depth=depth, channel=c, rank=rank, copies=like, r=r)
                    for c, rank, like, r in choice.skipped]

    result = P1Result(
        command=command, seed=seed, model=ModelInfo(**{k: info[k] for k in ("name", "library", "weights")}),
        preprocessing=Preprocessing(**info["preprocessing"]), image=portable_path(image, data_dir),
        image_size=tuple(img.size), image_sha256=pixels_sha256(img),
        image_colours=colour_shares(names), top=[TopClass(**t) for t in top], feature_maps=shown,
        feature_map_rule=rule_text(n_maps, cap), correlation_cap=cap, skipped=skipped,
        layers=Layers(**layers), layer_channels={d.depth: int(d.shape[0]) for d in depths}, figures={},
        discussion=Discussion("", "", "", "", ""), seconds=round(time.time() - started, 2))
    result.discussion = discuss(result)
    return P1Run(result, depths, seen, started)
