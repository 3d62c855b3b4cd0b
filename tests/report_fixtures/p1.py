"""P1's fixture results for the report tests: a synthetic P1Result and tiny figures, as the script writes them."""
from pathlib import Path

from problems.common.pretrained import ModelInfo, Preprocessing
from problems.p1.result import Discussion, FeatureMap, Layers, P1Result, TopClass

from .common import _png


def result(figures: dict | None = None) -> P1Result:
    """EfficientNet-Lite0 on peppers: three classes, two channels at each depth."""
    depths = (("early", "bn1", (112, 112)), ("middle", "blocks.3.2.bn1", (14, 14)), ("late", "bn2", (7, 7)))
    maps = [FeatureMap(depth=d, layer=layer, channel=c, shape=s, mean_activation=1.0,
                       rule="strongest mean activation") for d, layer, s in depths for c in (3, 5)]
    return P1Result(
        command="problems/p1_pretrained.py", seed=0,
        model=ModelInfo(name="tf_efficientnet_lite0", library="timm", weights="ImageNet-1k"),
        preprocessing=Preprocessing(resize_short_side=256, interpolation="bicubic", center_crop=224,
                                    scale="pixels / 255 -> [0, 1]", mean=[0.5] * 3, std=[0.5] * 3,
                                    text="resize 256, crop 224"),
        image="/d/peppers.png", image_size=(512, 384),
        top=[TopClass(rank=1, class_id=945, name="bell pepper", prob=0.6756),
             TopClass(rank=2, class_id=943, name="cucumber", prob=0.0536),
             TopClass(rank=3, class_id=582, name="grocery store", prob=0.0073)],
        feature_maps=maps, feature_map_rule="strongest mean activation",
        layers=Layers(early="bn1", middle="blocks.3.2.bn1", late="bn2"), figures=figures or {},
        discussion=Discussion(early="Edges.", middle="Textures.", late="Abstract.", summary="Deeper is coarser."),
        seconds=1.5)


def write(root: Path) -> None:
    """P1's results under root, as its script writes them."""
    p1 = root / "p1"
    figures = {d: _png(p1 / f"fm_{d}.png", 100, 20) for d in ("early", "middle", "late")}
    result(figures).write(p1 / "results.json")
