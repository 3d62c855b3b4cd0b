"""The CIFAR-10 networks of problem 3, built from scratchnet modules (inputs NHWC (N, 32, 32, 3)).

small_cnn:    conv 3->64 11x11 (stride 1, no padding) -> ReLU -> max pool 2x2 -> conv 64->128 3x3 (pad 1)
              -> ReLU -> conv 128->128 3x3 (pad 1) -> ReLU -> global average pool -> linear 128->10
small_cnn(batch_norm=True): batch norm between each conv and its ReLU (those convs drop their bias,
              which BN's shift makes redundant).
Spatial sizes: 32 -> 22 (11x11, no padding: half the FLOPs of 'same' padding) -> 11 -> 11 -> 11 -> 1.
"""
from __future__ import annotations

import numpy as np

from . import nn


def _rngs(seed, n):
    """n independent generators from one seed, so each layer's init is reproducible on its own."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def small_cnn(batch_norm: bool = False, num_classes: int = 10, seed: int = 0) -> nn.Sequential:
    r = _rngs(seed, 4)
    bias = not batch_norm
    layers = [("conv1", nn.Conv2d(3, 64, 11, stride=1, padding=0, bias=bias, rng=r[0]))]
    layers += [("bn1", nn.BatchNorm2d(64))] if batch_norm else []
    layers += [("relu1", nn.ReLU()), ("pool", nn.MaxPool2d(2, 2)),
               ("conv2", nn.Conv2d(64, 128, 3, stride=1, padding=1, bias=bias, rng=r[1]))]
    layers += [("bn2", nn.BatchNorm2d(128))] if batch_norm else []
    layers += [("relu2", nn.ReLU()), ("conv3", nn.Conv2d(128, 128, 3, stride=1, padding=1, bias=bias, rng=r[2]))]
    layers += [("bn3", nn.BatchNorm2d(128))] if batch_norm else []
    layers += [("relu3", nn.ReLU()), ("gap", nn.GlobalAvgPool2d()), ("fc", nn.Linear(128, num_classes, rng=r[3]))]
    return nn.Sequential(*layers)


def airbench_style(widths=(64, 256, 256), num_classes: int = 10, seed: int = 0) -> nn.Sequential:
    """A net in the style of the fast CIFAR-10 recipes: 2x2 'whitening' conv (3 -> 24, no padding),
    then per block conv 3x3 -> max pool 2 -> BN -> ReLU -> conv 3x3 -> BN -> ReLU, widths 64/256/256,
    then a global max pool (here: max pool over the last 3x3 map) and a linear classifier.
    Spatial sizes: 32 -> 31 (2x2 conv) -> 15 -> 7 -> 3 -> 1.
    """
    r = _rngs(seed, 2 + 2 * len(widths))
    layers = [("whiten", nn.Conv2d(3, 24, 2, padding=0, bias=True, rng=r[0])), ("act0", nn.ReLU())]
    c_in = 24
    for i, w in enumerate(widths, start=1):
        layers += [(f"b{i}conv1", nn.Conv2d(c_in, w, 3, padding=1, bias=False, rng=r[2 * i])),
                   (f"b{i}pool", nn.MaxPool2d(2, 2)), (f"b{i}bn1", nn.BatchNorm2d(w)), (f"b{i}act1", nn.ReLU()),
                   (f"b{i}conv2", nn.Conv2d(w, w, 3, padding=1, bias=False, rng=r[2 * i + 1])),
                   (f"b{i}bn2", nn.BatchNorm2d(w)), (f"b{i}act2", nn.ReLU())]
        c_in = w
    layers += [("head_pool", nn.MaxPool2d(3, 3)), ("flatten", nn.Flatten()),
               ("fc", nn.Linear(c_in, num_classes, bias=False, rng=r[1]))]
    return nn.Sequential(*layers)
