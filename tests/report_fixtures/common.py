"""Shared pieces of the report's fixture results: tiny PNGs and JSON writing."""
import json
from pathlib import Path

import numpy as np


def _png(path: Path, w=48, h=32):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path.name


def _write(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
