"""Feature maps of a pretrained CNN: which layers to read, forward hooks, channel choice, figures.

* :func:`pick_layers` -- an early, a middle and a late stage output (first / middle / last of the model's
  4-D stage outputs, :func:`candidate_layers`).
* :func:`record_activations` -- ``{layer: (N, C, H, W) tensor}`` from forward hooks during one ordinary
  forward pass of the whole model (plus ``"__logits__"``).
* :func:`select_channels` -- the k channels with the largest spatial mean; :func:`normalise_map` -- min-max
  to [0, 1].
* :func:`depth_figure`, :func:`combined_figure` -- the saved figures.

torch and matplotlib are imported inside the functions so that importing this module stays cheap.
"""
from __future__ import annotations

import numpy as np

from problems.common.cli import UserError

DEPTH_FRACTIONS = {"early": 0.0, "middle": 0.5, "late": 1.0}


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


def select_channels(act, k: int = 5) -> list[int]:
    """The rule: the k channels of a (C, H, W) activation with the largest spatial mean, strongest first."""
    m = act.float().mean(dim=(1, 2))
    return [int(i) for i in m.topk(min(k, m.numel())).indices]


# ------------------------------------------------------------------------------------------- figures
def plot_depth(ax_row, maps, titles):
    for ax, m, t in zip(ax_row, maps, titles):
        ax.imshow(m, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(t, fontsize=8)
        ax.axis("off")


def depth_figure(path, maps, titles, title):
    """One row of maps (each already in [0, 1]) under `title`, saved to `path`."""
    import matplotlib.pyplot as plt
    from problems.common.plots import save_figure
    fig, axs = plt.subplots(1, len(maps), figsize=(2.4 * len(maps), 2.8))
    plot_depth(np.atleast_1d(axs), maps, titles)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110, bbox_inches=None)
    plt.close(fig)


def combined_figure(path, image, rows, n_maps: int, title):
    """One row per depth: the model's input `image` (PIL) labelled `label`, then up to `n_maps` maps.

    rows: [(label, maps, titles)], maps each (H, W) in [0, 1].
    """
    import matplotlib.pyplot as plt
    from problems.common.plots import save_figure
    fig, axs = plt.subplots(len(rows), n_maps + 1, figsize=(2.2 * (n_maps + 1), 7.2), squeeze=False)
    for r, (label, maps, titles) in enumerate(rows):
        ax = axs[r, 0]
        ax.imshow(image)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
        plot_depth(axs[r, 1:], maps, titles)
        for ax in axs[r, 1 + len(maps):]:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110, bbox_inches=None)
    plt.close(fig)
