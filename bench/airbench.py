"""The airbench-style CIFAR-10 net the training-step bench times beside P3's nets (the bench's own: nothing
else uses it)."""
from __future__ import annotations

from scratchnet import nn
from scratchnet.init import seeded_rngs


def airbench_style(widths=(64, 256, 256), num_classes: int = 10, seed: int = 0) -> nn.Sequential:
    """A net in the style of the fast CIFAR-10 recipes: 2x2 'whitening' conv (3 -> 24, no padding),
    then per block conv 3x3 -> max pool 2 -> BN -> ReLU -> conv 3x3 -> BN -> ReLU, widths 64/256/256,
    then a global max pool (here: max pool over the last 3x3 map) and a linear classifier.
    Spatial sizes: 32 -> 31 (2x2 conv) -> 15 -> 7 -> 3 -> 1.
    """
    r = seeded_rngs(seed, 2 + 2 * len(widths))
    layers = [("whiten", nn.Conv2d(3, 24, 2, padding=0, bias=True, rng=r[0])), ("act0", nn.ReLU())]
    c_in = 24
    for i, w in enumerate(widths, start=1):
        layers += [(f"b{i}conv1", nn.Conv2d(c_in, w, 3, padding=1, bias=False, rng=r[2 * i])),
                   (f"b{i}pool", nn.MaxPool2d(2, 2)), (f"b{i}bn1", nn.BatchNorm2d(w)), (f"b{i}act1", nn.ReLU()),
                   (f"b{i}conv2", nn.Conv2d(w, w, 3, padding=1, bias=False, rng=r[2 * i + 1])),
                   (f"b{i}bn2", nn.BatchNorm2d(w)), (f"b{i}act2", nn.ReLU())]
        c_in = w
    fc = nn.Linear(c_in, num_classes, bias=False, rng=r[1])
    fc.weight.data[...] = 0.0  # zero-init head: uniform predictions at the start; max-pooled features are large
    layers += [("head_pool", nn.MaxPool2d(3, 3)), ("flatten", nn.Flatten()), ("fc", fc)]
    return nn.Sequential(*layers)
