"""P1: a pretrained ImageNet CNN on an image: top-k classes, then feature maps from three depths.

    python problems/p1_pretrained.py [--image PATH] [--model NAME] [--topk 3] [--data-dir D] [--out DIR] [--seed S]

Part 1 prints one line per rank (``1. bell pepper (945): 0.676``). Part 2 records the real activations of
the full network with forward hooks during one ordinary forward pass of the preprocessed image, picks five
channels at an early, a middle and a late layer by a stated rule (strongest mean activation), normalises
each map to [0, 1] and saves one figure per depth plus a combined figure. ``DIR/results.json`` and
``DIR/results.md`` hold the numbers, the chosen maps and a short discussion.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from problems.common.assets import peppers_path
from problems.common.cli import (UserError, add_common_args, command_line, portable_path, positive_int,
                                 run_main, seed_everything)
from problems.common.feature_maps import (combined_figure, depth_figure, normalise_map, pick_layers,
                                          record_activations, select_channels)
from scratchnet.io import write_json, write_text

RULE = ("strongest mean activation: the 5 channels whose feature map has the largest spatial mean "
        "(the channels this image drives hardest)")

DISCUSSION = {
    "early": ("Early maps ({layer}: {c} channels at {h}x{w}, right after the stem convolution) are at "
              "half the input resolution and still look like the photo: each channel is a small local "
              "filter, so the strongest ones respond to edges at one orientation, to bright or dark "
              "regions and to colour contrasts (e.g. the red/green/yellow pepper skins against each other), "
              "and the outlines of the peppers are sharp."),
    "middle": ("Middle maps ({layer}: {c} channels at {h}x{w}) have a receptive field of tens of pixels; "
               "they no longer follow single edges but fire on textures and parts: glossy highlights, "
               "curved skin surfaces, stems, the boundaries between whole peppers. Blobs replace lines, and "
               "different channels cover different regions of the image."),
    "late": ("Late maps ({layer}: {c} channels at {h}x{w}, just before global pooling and the classifier) "
             "are coarse: each cell sees most of the image, so a map only says roughly where a high-level "
             "pattern (something pepper-like, a shiny vegetable surface, a market-stall texture) is, not "
             "what it looks like. They are hard to interpret by eye because each channel is one of "
             "{c} abstract directions that the classifier combines linearly, the 7x7 grid hides any "
             "shape, and min-max normalisation exaggerates small differences; their meaning shows in "
             "what the classifier does with them (the top classes), not in the picture."),
}


MAX_MAPS = 32


def main(argv=None):
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=None, help="image file (default: DATA/peppers.png, else the copy in problems/assets/)")
    ap.add_argument("--model", default="tf_efficientnet_lite0",
                    help="tf_efficientnet_lite0 (offline default), tf_efficientnet_lite1/2 or a torchvision "
                         "classification model name (needs cached weights or the network)")
    ap.add_argument("--topk", type=positive_int, default=3, help="how many classes to print (default 3)")
    ap.add_argument("--maps", type=positive_int, default=5,
                    help=f"feature maps per depth, 1 to {MAX_MAPS} (default 5)")
    add_common_args(ap, "p1")
    args = ap.parse_args(argv)
    if args.maps > MAX_MAPS:  # one figure column per map; the earliest layer of Lite0 has 32 channels
        ap.error(f"--maps {args.maps}: expected 1 to {MAX_MAPS}")
    seed_everything(args.seed)

    import matplotlib
    matplotlib.use("Agg")
    import torch
    from problems.common.pretrained import load_image_rgb, load_pretrained, predict_topk, preprocessing_info
    torch.manual_seed(args.seed)

    image = args.image or peppers_path(args.data_dir)
    img = load_image_rgb(image)
    if args.topk > 1000:
        raise UserError(f"--topk must be at most 1000, got {args.topk}")
    t0 = time.time()
    model, pre, names = load_pretrained(args.model)
    info = preprocessing_info(model)
    x = pre(img).unsqueeze(0)

    # Part 1: top-k
    top = predict_topk(model, x[0], names, args.topk)
    for t in top:
        print(f"{t['rank']}. {t['name']} ({t['class_id']}): {t['prob']:.3f}")

    # Part 2: feature maps from hooks on the full network's forward pass
    layers = pick_layers(model, x)
    acts = record_activations(model, x, list(layers.values()))
    assert torch.allclose(acts["__logits__"], model(x)), "hooked forward pass must be the ordinary one"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    figures, shown, discussion = {}, [], {}
    per_depth = {}
    for depth, layer in layers.items():
        a = acts[layer][0]
        chans = select_channels(a, args.maps)
        maps = [normalise_map(a[c].cpu().numpy()) for c in chans]
        titles = [f"{layer} ch {c}" for c in chans]
        per_depth[depth] = (layer, chans, maps, titles, tuple(a.shape))
        for c in chans:
            shown.append({"depth": depth, "layer": layer, "channel": c, "shape": list(a.shape[1:]),
                          "mean_activation": float(a[c].mean()), "rule": RULE})
        path = out / f"feature_maps_{depth}.png"
        depth_figure(path, maps, titles, f"{depth} feature maps ({layer}, {a.shape[0]} ch, "
                     f"{a.shape[1]}x{a.shape[2]}), each normalised to [0, 1]")
        figures[depth] = path.name  # relative to results.json
        discussion[depth] = DISCUSSION[depth].format(layer=layer, c=a.shape[0], h=a.shape[1], w=a.shape[2])

    path = out / "feature_maps_all.png"
    combined_figure(path, pre.geometric(img),
                    [(f"input ({d}: {per_depth[d][0]})", per_depth[d][2], per_depth[d][3]) for d in layers],
                    args.maps, f"{info['name']}: top-1 {top[0]['name']} ({top[0]['prob']:.3f}); feature maps "
                    "chosen by strongest mean activation, each normalised to [0, 1]")
    figures["combined"] = path.name
    discussion["summary"] = (
        "Going deeper, resolution falls (112 -> 14 -> 7 for EfficientNet-Lite0) while channels and "
        "receptive fields grow: maps move from image-like edge and colour detectors to texture/part "
        "detectors to coarse, abstract class evidence. Maps are read from forward hooks on the real "
        "activations of one ordinary forward pass of the whole network (batch norm and activations "
        "included), never by re-running only the convolutions. For EfficientNet the maps are activated "
        "layers (BatchNorm + ReLU6): the stem, the expansion inside the middle stage's last block and the "
        "1280-channel head before pooling; each map is min-max normalised on its own.")

    results = {
        "command": command_line(), "seed": args.seed,
        "model": {k: info[k] for k in ("name", "library", "weights")},
        "preprocessing": info["preprocessing"],
        "image": portable_path(image, args.data_dir), "image_size": list(img.size),
        "top": top,
        "feature_maps": shown, "feature_map_rule": RULE, "layers": layers,
        "figures": figures, "discussion": discussion,
        "seconds": round(time.time() - t0, 2),
    }
    write_json(out / "results.json", results)
    md = [f"# P1: {info['name']} on {Path(image).name}", "",
          f"Preprocessing: {info['preprocessing']['text']}", "",
          "| rank | class | id | probability |", "| --- | --- | --- | --- |"]
    md += [f"| {t['rank']} | {t['name']} | {t['class_id']} | {t['prob']:.3f} |" for t in top]
    md += ["", f"Feature maps: {RULE}.", ""]
    md += [f"- **{d}** ({layers[d]}): channels {per_depth[d][1]}. {discussion[d]}" for d in layers]
    md += ["", discussion["summary"], ""]
    write_text(out / "results.md", "\n".join(md))
    print(f"wrote {out / 'results.json'} and figures {', '.join(Path(f).name for f in figures.values())}")


if __name__ == "__main__":
    sys.exit(run_main(main))
