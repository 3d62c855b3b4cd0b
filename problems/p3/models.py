"""P3's CIFAR-10 networks, built from scratchnet modules (inputs NHWC (N, 32, 32, 3)), and their descriptions
as the results file and the report give them.

small_cnn:    conv 3->64 11x11 (stride 1, no padding) -> ReLU -> max pool 2x2 -> conv 64->128 3x3 (pad 1)
              -> ReLU -> conv 128->128 3x3 (pad 1) -> ReLU -> global average pool -> linear 128->10
small_cnn(batch_norm=True): batch norm between each conv and its ReLU (those convs drop their bias,
              which BN's shift makes redundant).
Spatial sizes: 32 -> 22 (11x11, no padding: half the FLOPs of 'same' padding) -> 11 -> 11 -> 11 -> 1.
better_net:   part 3, see its docstring and docs/p3_better.md.
"""
from __future__ import annotations

from scratchnet import nn
from scratchnet.backend import to_numpy
from scratchnet.init import dirac_init, seeded_rngs

MODELS = ("small", "small_bn")        # parts 1 and 2 ('both' trains these two)
ALL_MODELS = MODELS + ("better",)     # part 3

ARCHITECTURE = {
    "small": ["conv 11x11, 3->64, stride 1, no padding (32x32 -> 22x22), ReLU",
              "max pool 2x2, stride 2 (22x22 -> 11x11)",
              "conv 3x3, 64->128, stride 1, padding 1, ReLU",
              "conv 3x3, 128->128, stride 1, padding 1, ReLU",
              "global average pool (11x11 -> 1x1)", "linear 128->10, softmax"],
    "better": ["conv 2x2, 3->24, no padding, fixed patch-whitening filters (trained bias), GELU (32 -> 31)",
               "block 24->64: conv 3x3 (Dirac init) -> max pool 2 -> BN (frozen scale) -> GELU -> conv 3x3 -> BN -> GELU (31 -> 15)",
               "block 64->256: the same (15 -> 7)", "block 256->256: the same (7 -> 3)",
               "max pool 3x3 (3 -> 1), linear 256->10 (no bias, zero init), logits x 1/9, softmax"],
}
ARCHITECTURE["small_bn"] = [line.replace(", ReLU", ", batch norm, ReLU (no conv bias)")
                            for line in ARCHITECTURE["small"]]
INITIALISATION = ("He/Kaiming normal: every conv and linear weight ~ N(0, 2/fan_in), fan_in = kh*kw*C_in "
                  "or in_features; biases 0; batch norm gamma 1, beta 0 (running mean 0, var 1, momentum 0.1)")
BETTER_INITIALISATION = ("first layer: fixed 2x2 patch-whitening filters (eigenvectors of the covariance of "
                         "5,000 random training images' patches scaled by 1/sqrt(eigenvalue + 5e-4), each also "
                         "negated; bias 0, trained); "
                         "3x3 convs: He normal, then Dirac (identity) on the first min(C_in, C_out) filters; "
                         "batch norm scale frozen at 1, shift 0 (momentum 0.4); linear head zero, logits x 1/9")


AIRBENCH_INITIALISATION = ("first layer: fixed 2x2 patch-whitening filters (eigenvectors of the uncentered second "
                           "moment of every 2x2 patch of 5,000 random training images, scaled by 1/sqrt(eigenvalue + "
                           "5e-4), each also negated; bias 0, trained for the first 3 epochs); 3x3 convs: He "
                           "normal, then Dirac (identity) on the first min(C_in, C_out) filters; batch norm scale "
                           "frozen at 1, shift 0 (eps 1e-12, momentum 0.4); linear head zero, logits x 1/9")


def initialisation_for(model: str, recipe: str = "default") -> str:
    if model == "better":
        return AIRBENCH_INITIALISATION if recipe == "airbench" else BETTER_INITIALISATION
    return INITIALISATION


def small_cnn(batch_norm: bool = False, num_classes: int = 10, seed: int = 0) -> nn.Sequential:
    r = seeded_rngs(seed, 4)
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


def better_net(whitening=None, widths=(64, 256, 256), num_classes: int = 10, seed: int = 0,
               bn_momentum: float = 0.4, dirac: bool = True, train_whitening: bool = False,
               logit_scale: float = 1 / 9, bn_eps: float = 1e-5) -> nn.Sequential:
    """Part 3: a small, fast-training net in the style of the fastest known CIFAR-10 recipes.

    whiten: 2x2 conv 3 -> 24, weights fixed to patch_whitening_filters(training images) (not trained;
            its bias trains), GELU                                  32x32 -> 31x31
    block i (widths 64, 256, 256): conv 3x3 (Dirac init, no bias) -> max pool 2 -> batch norm (scale
            frozen at 1, shift trained) -> GELU -> conv 3x3 -> batch norm -> GELU   31 -> 15 -> 7 -> 3
    head:   max pool 3 (3x3 -> 1x1) -> flatten -> linear 256 -> 10 (no bias, zero init) -> x 1/9
    Why the fixed 1/9 on the logits: the max-pooled features are O(1) in each of 256 channels, so at the
    recipe's large learning rate one SGD step on the head alone made logits of size ~10 and the loss
    diverged; scaling the output by 1/9 makes the head's effective learning rate 81x smaller while the
    body keeps the large one.
    The switches dirac, train_whitening (He-init first layer, trained) and logit_scale exist for the
    ablation (problems/p3/ablation.py); the defaults are the recipe. bn_eps: batch norm's epsilon (the
    airbench recipe's 1e-12).
    """
    r = seeded_rngs(seed, 2 + 2 * len(widths))
    whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True, rng=r[0])
    if whitening is not None:
        whiten.weight.data = to_numpy(whitening).astype(whiten.weight.dtype)  # built on the host; .to() moves it
    if not train_whitening:
        nn.freeze(whiten, "weight")  # fixed whitening: saved with the model, never trained
    layers = [("whiten", whiten), ("act0", nn.GELU())]
    c_in = 24
    for i, w in enumerate(widths, start=1):
        conv1 = nn.Conv2d(c_in, w, 3, padding=1, bias=False, rng=r[2 * i])
        conv2 = nn.Conv2d(w, w, 3, padding=1, bias=False, rng=r[2 * i + 1])
        if dirac:
            conv1, conv2 = dirac_init(conv1), dirac_init(conv2)
        layers += [(f"block{i}_conv1", conv1), (f"block{i}_pool", nn.MaxPool2d(2, 2)),
                   (f"block{i}_bn1", nn.BatchNorm2d(w, momentum=bn_momentum, eps=bn_eps, train_scale=False)),
                   (f"block{i}_act1", nn.GELU()), (f"block{i}_conv2", conv2),
                   (f"block{i}_bn2", nn.BatchNorm2d(w, momentum=bn_momentum, eps=bn_eps, train_scale=False)),
                   (f"block{i}_act2", nn.GELU())]
        c_in = w
    fc = nn.Linear(c_in, num_classes, bias=False, rng=r[1])
    fc.weight.data[...] = 0.0  # zero-init head: uniform predictions at the start; max-pooled features are large
    layers += [("head_pool", nn.MaxPool2d(3, 3)), ("flatten", nn.Flatten()), ("fc", fc),
               ("logit_scale", nn.Scale(logit_scale))]
    return nn.Sequential(*layers)


def build(model: str, seed: int = 0, whitening=None, **better_options) -> nn.Sequential:
    """The network `model` ('small', 'small_bn' or 'better'), freshly initialised from `seed`."""
    if model == "better":
        return better_net(whitening, seed=seed, **better_options)
    return small_cnn(batch_norm=(model == "small_bn"), seed=seed)


def layer_table_for(model: str) -> list:
    """Per-layer output shapes, parameters and FLOPs (one image) of the network `model`."""
    return nn.layer_table(build(model))
