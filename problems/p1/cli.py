"""P1: a pretrained ImageNet CNN on an image: top-k classes, then feature maps from three depths.

    python problems/p1_pretrained.py [--image PATH] [--model NAME] [--topk 3] [--data-dir D] [--out DIR] [--seed S]
    python -m problems.p1 ...           (the same)

Part 1 prints one line per rank (``1. bell pepper (945): 0.676``). Part 2 records the real activations of
the full network with forward hooks during one ordinary forward pass of the preprocessed image, picks five
channels at an early, a middle and a late layer by a stated rule (greedy by mean activation, passing over
near-duplicates: |r| > 0.6 with a channel already kept), measures what each map responds to on the image,
normalises each map to [0, 1] and saves one figure per depth (the input, the maps, the maps as heat maps
over the input) plus a combined figure. ``DIR/results.json`` and ``DIR/results.md`` hold the numbers, the
chosen maps, their measurements and the discussion made from them.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from problems.common.assets import peppers_path
from problems.common.cli import add_common_args, command_line, positive_int, seed_everything
from problems.p1.feature_maps import CORRELATION_CAP, combined_figure, depth_figure
from problems.p1.run import P1Run, run
from scratchnet.io import write_text

MAX_MAPS = 32


def write_figures(out: Path, r: P1Run, n_maps: int) -> dict:
    """One figure per depth and a combined one into `out`; -> {role: file name relative to results.json}."""
    figures = {}
    image = np.asarray(r.seen)
    for d in r.depths:
        path = out / f"feature_maps_{d.depth}.png"
        depth_figure(path, image, d.maps, d.titles)
        figures[d.depth] = path.name
    path = out / "feature_maps_all.png"
    top = r.result.top[0]
    combined_figure(path, image, [(f"{d.depth}: {d.layer}", d.maps, d.titles) for d in r.depths], n_maps,
                    f"{r.result.model.name}: top-1 {top.name} ({100 * top.prob:.2f}%); per depth the maps "
                    "(min-max) and the maps over the input")
    figures["combined"] = path.name
    return figures


def main(argv=None):
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=None, help="image file (default: DATA/peppers.png, else the copy in problems/assets/)")
    ap.add_argument("--model", default="tf_efficientnet_lite0",
                    help="tf_efficientnet_lite0 (offline default), tf_efficientnet_lite1/2 or a torchvision "
                         "classification model name (needs cached weights or the network)")
    ap.add_argument("--topk", type=positive_int, default=3, help="how many classes to print (default 3)")
    ap.add_argument("--maps", type=positive_int, default=5,
                    help=f"feature maps per depth, 1 to {MAX_MAPS} (default 5)")
    ap.add_argument("--cap", type=float, default=CORRELATION_CAP,
                    help=f"channel rule: pass over a channel whose map has |r| above this with one already "
                         f"kept, 0 < cap <= 1 (default {CORRELATION_CAP:g}; 1 keeps the plain top by mean)")
    add_common_args(ap, "p1")
    args = ap.parse_args(argv)
    if args.maps > MAX_MAPS:  # one figure column per map; the earliest layer of Lite0 has 32 channels
        ap.error(f"--maps {args.maps}: expected 1 to {MAX_MAPS}")
    if not 0 < args.cap <= 1:
        ap.error(f"--cap {args.cap:g}: expected a number above 0 and at most 1")
    seed_everything(args.seed)

    import matplotlib
    matplotlib.use("Agg")
    image = args.image or peppers_path(args.data_dir)
    r = run(image, args.model, args.topk, args.maps, seed=args.seed, data_dir=args.data_dir,
            command=command_line(), log=print, cap=args.cap)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    result = r.result
    result.figures = write_figures(out, r, args.maps)
    result.seconds = round(time.time() - r.started, 2)
    result.write(out / "results.json")
    write_text(out / "results.md", result.markdown())
    print(f"wrote {out / 'results.json'} and figures {', '.join(Path(f).name for f in result.figures.values())}")
