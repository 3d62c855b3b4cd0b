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


def built_html(results: Path, out: Path) -> str:
    """The report's HTML (no code, no PDF) built from `results`, entities unescaped, for text checks."""
    import html

    import build_report  # report/ is on sys.path in the report tests
    return html.unescape(build_report.build(results, out, no_code=True, pdf=False)["html"].read_text())


def rename_field(path: Path, old: str, new: str) -> None:
    """Rename one top-level field of a results JSON file, as a producer that renamed it would write it."""
    obj = json.loads(path.read_text())
    obj[new] = obj.pop(old)
    path.write_text(json.dumps(obj))
