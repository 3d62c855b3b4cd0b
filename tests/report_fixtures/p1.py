"""P1's fixture results for the report tests."""
from pathlib import Path

from .common import _png, _write


def write(root: Path) -> None:
    """P1's results under root, as its script writes them."""
    p1 = root / "p1"
    maps = [{"depth": d, "layer": l, "channel": c, "shape": s, "mean_activation": 1.0}
            for d, l, s in (("early", "bn1", [112, 112]), ("middle", "blocks.3.2.bn1", [14, 14]), ("late", "bn2", [7, 7]))
            for c in (3, 5)]
    _write(p1 / "results.json", {
        "command": "problems/p1_pretrained.py", "model": {"name": "tf_efficientnet_lite0", "library": "timm",
                                                          "weights": "ImageNet-1k"},
        "preprocessing": {"text": "resize 256, crop 224"}, "image": "/d/peppers.png", "image_size": [512, 384],
        "top": [{"rank": 1, "class_id": 945, "name": "bell pepper", "prob": 0.6756},
                {"rank": 2, "class_id": 943, "name": "cucumber", "prob": 0.0536},
                {"rank": 3, "class_id": 582, "name": "grocery store", "prob": 0.0073}],
        "feature_maps": maps, "feature_map_rule": "strongest mean activation",
        "layers": {"early": "bn1", "middle": "blocks.3.2.bn1", "late": "bn2"},
        "figures": {d: _png(p1 / f"fm_{d}.png", 100, 20) for d in ("early", "middle", "late")},
        "discussion": {"early": "Edges.", "middle": "Textures.", "late": "Abstract.", "summary": "Deeper is coarser."}})
