"""Feature maps of a pretrained CNN: which layers to read, forward hooks, channel choice, measurements, figures.

* :func:`pick_layers` -- an early, a middle and a late stage output (first / middle / last of the model's
  4-D stage outputs, :func:`candidate_layers`).
* :func:`record_activations` -- ``{layer: (N, C, H, W) tensor}`` from forward hooks during one ordinary
  forward pass of the whole model (plus ``"__logits__"``).
* :func:`choose_channels` -- the rule: channels in order of their spatial mean activation, each kept only
  when its map's absolute Pearson correlation with every map already kept is at most ``cap`` (no
  near-duplicates), until k are kept; :func:`select_channels` -- just the kept channels.
* :func:`describe_map` -- what a map responds to, measured on the image the network saw: where it is high
  (share of the image, which part, which colours) and its correlation with simple image cues
  (brightness, saturation, colour opponents, edges) at the map's resolution.
* :func:`normalise_map` -- min-max to [0, 1]; :func:`upsample` -- a map resized to the input (bilinear).
* :func:`depth_figure`, :func:`combined_figure` -- the saved figures: the input, the maps, and the maps as
  heat maps over the input.

torch and matplotlib are imported inside the functions so that importing this module stays cheap.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from problems.common.cli import UserError

DEPTH_FRACTIONS = {"early": 0.0, "middle": 0.5, "late": 1.0}
CORRELATION_CAP = 0.6    # a channel whose map has |r| > this with a kept one is a near-duplicate
HIGH = 0.5               # a map is "high" where its min-max normalised value is at least this
CUES = ("brightness", "saturation", "red-green", "yellow-blue", "edges", "x-edges", "y-edges")
# colour names for pixels (HSV): dark and unsaturated pixels first, then hue ranges (upper bound, degrees);
# a yellow hue below value 0.6 looks olive
COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "olive", "green", "cyan", "blue", "purple")
HUES = ((15, "red"), (40, "orange"), (70, "yellow"), (170, "green"), (200, "cyan"), (260, "blue"),
        (330, "purple"), (361, "red"))


# ------------------------------------------------------------------------------------ layers and hooks
def candidate_layers(model) -> list[str]:
    """Names of the modules whose outputs are the network's stage outputs, in forward order."""
    names = dict(model.named_modules())
    if "conv_stem" in names and "blocks" in names:  # timm EfficientNet family
        # stem activation, then in each stage the last block's first activated layer (bn1 = BN + ReLU6 after
        # the expansion / depthwise conv; block outputs themselves are linear bottlenecks), then the head
        stages = ["bn1"] + [f"blocks.{i}.{len(s) - 1}.bn1" for i, s in enumerate(model.blocks)]
        if "bn2" in names:
            stages.append("bn2")
        return stages
    if "features" in names:  # torchvision VGG / MobileNet / EfficientNet / DenseNet ...
        return [f"features.{n}" for n, _ in model.features.named_children()]
    if "layer1" in names:  # ResNet family
        return [n for n in ["relu", "layer1", "layer2", "layer3", "layer4"] if n in names]
    return [n for n, _ in model.named_children()]


def pick_layers(model, x) -> dict:
    """{'early'|'middle'|'late': layer name}: among stage outputs that are 4-D maps, first/middle/last."""
    shapes = record_activations(model, x, candidate_layers(model))
    four_d = [n for n in candidate_layers(model) if n in shapes and len(shapes[n].shape) == 4]
    if len(four_d) < 3:
        raise UserError("this model has fewer than three 4-D stage outputs; pick another --model")
    return {d: four_d[round(f * (len(four_d) - 1))] for d, f in DEPTH_FRACTIONS.items()}


def record_activations(model, x, layer_names) -> dict:
    """One forward pass of the full model on batch `x`; returns {layer: output tensor} from forward hooks."""
    import torch
    mods = dict(model.named_modules())
    missing = [n for n in layer_names if n not in mods]
    if missing:
        raise ValueError(f"no such layers: {missing}")
    store, handles = {}, []
    for n in layer_names:
        handles.append(mods[n].register_forward_hook(
            lambda m, inp, out, n=n: store.__setitem__(n, out.detach() if torch.is_tensor(out) else out)))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    store["__logits__"] = logits
    return store


def normalise_map(a: np.ndarray) -> np.ndarray:
    """Min-max normalise one 2-D map to [0, 1]; a constant map becomes all zeros."""
    a = np.asarray(a, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo < 1e-12:
        return np.zeros_like(a)
    return (a - lo) / (hi - lo)


# ------------------------------------------------------------------------------------- channel choice
@dataclass
class Choice:
    """The outcome of the channel rule at one layer. ranks: each kept channel's rank by spatial mean (1 =
    strongest); max_r: its largest |r| with the channels kept before it (None for the first); filled: True
    for a channel that does not pass the cap but fills a place the layer had no passing channel for;
    skipped: (channel, rank, the kept channel it copies, |r|) for each channel passed over before the last
    kept one (copies and |r| None for a constant map)."""
    channels: list
    ranks: list
    max_r: list
    filled: list
    skipped: list


def _rows(act) -> np.ndarray:
    """A (C, H, W) activation (torch tensor or array) as a float64 (C, H*W) array."""
    if hasattr(act, "detach"):
        act = act.detach().float().cpu().numpy()
    a = np.asarray(act, dtype=np.float64)
    return a.reshape(a.shape[0], -1)


def pearson(a, b) -> float:
    """Pearson correlation of two equally shaped arrays (0.0 when either is constant)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    d = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / d) if d > 1e-12 else 0.0


def choose_channels(act, k: int = 5, cap: float = CORRELATION_CAP) -> Choice:
    """The rule: walk the channels of a (C, H, W) activation from the largest spatial mean down; keep one
    when its map is not constant and its absolute Pearson correlation (over the map's cells) with each map
    kept so far is at most `cap`; stop at k kept. When fewer than k channels pass (a flat input, a narrow
    layer), the strongest passed-over channels fill the remaining places, marked in `filled`."""
    f = _rows(act)
    means = f.mean(axis=1)
    order = np.argsort(-means, kind="stable")
    centred = f - means[:, None]
    norms = np.linalg.norm(centred, axis=1)
    unit = centred / np.maximum(norms, 1e-12)[:, None]
    out = Choice([], [], [], [], [])
    for rank, c in enumerate(order, start=1):
        if len(out.channels) >= k:
            break
        c = int(c)
        if norms[c] <= 1e-9 * max(1.0, float(np.abs(f[c]).max()) * np.sqrt(f.shape[1])):  # constant map
            out.skipped.append((c, rank, None, None))
            continue
        rs = [abs(float(unit[c] @ unit[o])) for o in out.channels]
        if rs and max(rs) > cap:
            j = int(np.argmax(rs))
            out.skipped.append((c, rank, out.channels[j], round(rs[j], 3)))
            continue
        out.channels.append(c)
        out.ranks.append(rank)
        out.max_r.append(round(max(rs), 3) if rs else None)
        out.filled.append(False)
    while len(out.channels) < min(k, f.shape[0]) and out.skipped:  # too few distinct maps: the strongest others
        c, rank, _, _ = out.skipped.pop(0)
        rs = [abs(float(unit[c] @ unit[o])) for o in out.channels]
        out.channels.append(c)
        out.ranks.append(rank)
        out.max_r.append(round(max(rs), 3) if rs else None)
        out.filled.append(True)
    return out


def select_channels(act, k: int = 5, cap: float = CORRELATION_CAP) -> list[int]:
    """The channels :func:`choose_channels` keeps, in the order kept (the first has the largest mean)."""
    return choose_channels(act, k, cap).channels


# ------------------------------------------------------------------------------------------ measuring
def _resize(a, size, resample) -> np.ndarray:
    """A 2-D float map resized to size = (width, height) with PIL (mode F)."""
    from PIL import Image
    return np.asarray(Image.fromarray(np.asarray(a, dtype=np.float32), mode="F").resize(tuple(size), resample),
                      dtype=np.float64)


def upsample(m, size) -> np.ndarray:
    """A (H, W) map resized to the input's size = (width, height), bilinear, as the overlays show it."""
    from PIL import Image
    return _resize(m, size, Image.BILINEAR)


def image_cues(seen, h: int, w: int) -> dict:
    """Simple cues of the (S, S, 3) uint8 image the network saw, each averaged over the input pixels under
    every cell of an (h, w) map: brightness (luma), saturation (HSV), red-green (R - G), yellow-blue
    ((R + G) / 2 - B), edges (gradient magnitude of luma), x-edges / y-edges (the signed luma gradient
    to the right / downwards)."""
    from PIL import Image
    x = np.asarray(seen, dtype=np.float64) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    hi, lo = x.max(axis=-1), x.min(axis=-1)
    gy, gx = np.gradient(luma)
    full = {"brightness": luma, "saturation": np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-12), 0.0),
            "red-green": r - g, "yellow-blue": (r + g) / 2 - b, "edges": np.hypot(gx, gy),
            "x-edges": gx, "y-edges": gy}
    return {k: _resize(v, (w, h), Image.BOX) for k, v in full.items()}


def colour_names(seen) -> np.ndarray:
    """Per pixel of an (H, W, 3) uint8 image, an index into COLOURS (HSV: value < 0.2 black; else
    saturation < 0.2 white (value > 0.75) or grey; else by hue (HUES), a yellow hue with value < 0.6 olive)."""
    x = np.asarray(seen, dtype=np.float64) / 255.0
    v = x.max(axis=-1)
    c = v - x.min(axis=-1)
    s = np.where(v > 0, c / np.maximum(v, 1e-12), 0.0)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    safe = np.maximum(c, 1e-12)
    hue = np.where(v == r, ((g - b) / safe) % 6, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    bounds = np.array([t for t, _ in HUES])
    by_hue = np.array([COLOURS.index(n) for _, n in HUES])[np.minimum(np.searchsorted(bounds, hue, side="right"),
                                                                     len(HUES) - 1)]
    by_hue = np.where((by_hue == COLOURS.index("yellow")) & (v < 0.6), COLOURS.index("olive"), by_hue)
    unsat = np.where(v > 0.75, COLOURS.index("white"), COLOURS.index("grey"))
    return np.where(v < 0.2, COLOURS.index("black"), np.where(s < 0.2, unsat, by_hue))


def colour_shares(names, mask=None, top: int | None = None, floor: float = 0.01) -> dict:
    """{colour: share of the pixels (inside `mask`)}, largest first, shares below `floor` left out."""
    sel = np.asarray(names) if mask is None else np.asarray(names)[mask]
    if sel.size == 0:
        return {}
    counts = np.bincount(sel.ravel(), minlength=len(COLOURS)) / sel.size
    order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] >= floor]
    return {COLOURS[i]: round(float(counts[i]), 3) for i in order[:top]}


PARTS = ("upper left", "top centre", "upper right", "left middle", "centre", "right middle",
         "lower left", "bottom centre", "lower right")
ROWS, COLUMNS = ("top", "middle", "bottom"), ("left side", "centre", "right side")


def where(mask) -> str:
    """Where a boolean mask lies, on a 3x3 grid of the image: "mostly in the <ninth>" (PARTS) when one third
    of the rows and one third of the columns each hold more than half of it, "in a band across the <row>"
    or "in a strip down the <column>" when only one of them does, else "spread over the image"; "" if empty."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return ""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    rows = np.bincount(np.minimum(3 * ys // h, 2), minlength=3) / ys.size
    cols = np.bincount(np.minimum(3 * xs // w, 2), minlength=3) / xs.size
    r, c = int(np.argmax(rows)), int(np.argmax(cols))
    if rows[r] > 0.5 and cols[c] > 0.5:
        return f"mostly in the {PARTS[3 * r + c]}"
    if rows[r] > 0.5:
        return f"in a band across the {ROWS[r]}"
    if cols[c] > 0.5:
        return f"in a strip down the {COLUMNS[c]}"
    return "spread over the image"


def describe_map(m, seen, cues: dict | None = None, names=None) -> dict:
    """Measurements of one (H, W) activation map `m` on the (S, S, 3) image the network saw: mean and max
    activation; plateau (share of cells at the map's maximum); high_fraction (share of the image where the
    upsampled, min-max normalised map is >= HIGH); location (where that region lies, :func:`where`); colours / low_colours (the 3 commonest colour names of the image inside that region / outside
    it, with their shares); cues
    (Pearson r of the map with each of image_cues at the map's resolution)."""
    m = np.asarray(m, dtype=np.float64)
    seen = np.asarray(seen)
    h, w = m.shape
    cues = cues if cues is not None else image_cues(seen, h, w)
    names = names if names is not None else colour_names(seen)
    mask = normalise_map(upsample(m, (seen.shape[1], seen.shape[0]))) >= HIGH
    if float(m.max() - m.min()) < 1e-12:  # a constant map is high nowhere
        mask = np.zeros_like(mask)
    top = float(m.max())
    return {"mean_activation": round(float(m.mean()), 4), "max_activation": round(top, 4),
            "plateau": round(float((m >= top - 1e-6 * max(1.0, abs(top))).mean()), 3),
            "high_fraction": round(float(mask.mean()), 3), "location": where(mask),
            "colours": colour_shares(names, mask, top=3), "low_colours": colour_shares(names, ~mask, top=3),
            "cues": {k: round(pearson(m, cues[k]), 3) for k in CUES}}


# ------------------------------------------------------------------------------------------- figures
FIG_WIDTH = 6.9          # inches: the report's text width, so figure text prints at its nominal size
HEAT = "turbo"


def _show_input(ax, image, label, grid=None):
    ax.imshow(image)
    if grid:  # the map's cells drawn over the input
        gh, gw = grid
        h, w = np.asarray(image).shape[:2]
        for y in np.arange(1, gh) * h / gh:
            ax.axhline(y - 0.5, color="white", lw=0.3, alpha=0.8)
        for x in np.arange(1, gw) * w / gw:
            ax.axvline(x - 0.5, color="white", lw=0.3, alpha=0.8)
    ax.set_title(label, fontsize=7)
    ax.axis("off")


def _cells_label(image, shape) -> str:
    h, w = np.asarray(image).shape[:2]
    gh, gw = shape
    if h % gh == 0 and w % gw == 0:
        return f"one cell = {h // gh}x{w // gw} px"
    return f"{gh}x{gw} cells"


def _maps_rows(axs_maps, axs_over, image, maps, titles):
    """A row of maps (each in [0, 1], nearest-neighbour at their own resolution) and a row of the same maps
    as heat maps over the greyscale input (upsampled bilinearly to the input's size)."""
    grey = np.asarray(image, dtype=np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    h, w = grey.shape
    for ax, ax2, m, t in zip(axs_maps, axs_over, maps, titles):
        ax.imshow(m, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(t, fontsize=7)
        ax2.imshow(grey, cmap="gray", vmin=0, vmax=1)
        ax2.imshow(normalise_map(upsample(m, (w, h))), cmap=HEAT, vmin=0, vmax=1, alpha=0.55)
    for ax in list(axs_maps) + list(axs_over):
        ax.axis("off")


def _rows_for(axs, r0, image, label, maps, titles):
    shape = np.asarray(maps[0]).shape if maps else (1, 1)
    _show_input(axs[r0, 0], image, label)
    grid = shape if np.asarray(image).shape[0] / shape[0] >= 6 else None   # finer grids would hide the image
    _show_input(axs[r0 + 1, 0], image, _cells_label(image, shape), grid=grid)
    _maps_rows(axs[r0, 1:], axs[r0 + 1, 1:], image, maps, titles)


def depth_figure(path, image, maps, titles, title=None):
    """Two rows: the input `image` (the crop the network saw) then the maps (each already in [0, 1]); the input
    with the map's cell grid then each map as a heat map over the greyscale input; `title` above, if given
    (the report's caption says what the figure is, so the report's figures have none)."""
    import matplotlib.pyplot as plt
    from problems.common.plots import save_figure
    n = max(len(maps), 1)
    cell = FIG_WIDTH / (n + 1)
    top = 0.36 if title else 0.17
    height = 2 * cell + top + 0.2
    fig, axs = plt.subplots(2, n + 1, figsize=(FIG_WIDTH, height), squeeze=False)
    _rows_for(axs, 0, image, "input ({}x{})".format(*np.asarray(image).shape[1::-1]), maps, titles)
    if title:
        fig.suptitle(title, fontsize=8, y=1 - 0.06 / height)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=1 - top / height, wspace=0.05,
                        hspace=0.2 / cell * 1.1)
    save_figure(fig, path, dpi=170, bbox_inches=None)
    plt.close(fig)


def combined_figure(path, image, rows, n_maps: int, title):
    """Two rows per depth (the maps, then the maps as heat maps over the input), the input first in each.

    rows: [(label, maps, titles)], maps each (H, W) in [0, 1].
    """
    import matplotlib.pyplot as plt
    from problems.common.plots import save_figure
    n = max(n_maps, 1)
    cell = FIG_WIDTH / (n + 1)
    height = 2 * len(rows) * (cell + 0.12) + 0.5
    fig, axs = plt.subplots(2 * len(rows), n + 1, figsize=(FIG_WIDTH, height), squeeze=False)
    for r, (label, maps, titles) in enumerate(rows):
        _rows_for(axs, 2 * r, image, label, maps, titles)
    fig.suptitle(title, fontsize=8, y=1 - 0.06 / height)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=1 - 0.42 / height, wspace=0.05, hspace=0.2)
    save_figure(fig, path, dpi=120, bbox_inches=None)   # not in the report: smaller
    plt.close(fig)
