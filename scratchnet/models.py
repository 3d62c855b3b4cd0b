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
from .backend import backend_of, to_backend, to_numpy


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
    fc = nn.Linear(c_in, num_classes, bias=False, rng=r[1])
    fc.weight.data[...] = 0.0  # zero-init head: uniform predictions at the start; max-pooled features are large
    layers += [("head_pool", nn.MaxPool2d(3, 3)), ("flatten", nn.Flatten()), ("fc", fc)]
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------------- the better net
def patch_whitening_filters(images, kernel: int = 2, eps: float = 5e-4, max_patches: int = 200_000, seed: int = 0):
    """Conv filters that whiten kernel x kernel patches: HWIO (k, k, C, 2*k*k*C).

    Collect patches p (k*k*C values) from training images (N, H, W, C float), form their covariance
    S = V diag(lam) V^T, and use each eigenvector scaled by 1/sqrt(lam + eps) as a filter: the outputs
    v_i . p / sqrt(lam_i) are uncorrelated with unit variance (the covariance of the filtered patches
    is the identity, up to eps). Each filter is also used negated, so a ReLU-like activation after it
    keeps both signs of every component.
    """
    from .kernels.conv import windows
    x = to_numpy(images).astype(np.float64, copy=False)
    n, h, w, c = x.shape
    win = windows(x, kernel, kernel, 1)                       # (N, H-k+1, W-k+1, k, k, C)
    patches = win.reshape(-1, kernel * kernel * c)
    if len(patches) > max_patches:
        patches = patches[np.random.default_rng(seed).choice(len(patches), max_patches, replace=False)]
    patches = patches - patches.mean(axis=0)
    cov = patches.T @ patches / len(patches)
    lam, vecs = np.linalg.eigh(cov)                           # ascending eigenvalues
    lam, vecs = lam[::-1], vecs[:, ::-1]                      # strongest component first
    filters = vecs / np.sqrt(lam + eps)                       # (k*k*C, k*k*C), one filter per column
    filters = np.concatenate([filters, -filters], axis=1)
    return filters.reshape(kernel, kernel, c, -1)


def dirac_init(conv, scale: float = 1.0):
    """Make the first min(C_in, C_out) output channels of a conv pass their own input channel through
    (centre tap = scale, all other taps of that filter 0); the other output channels keep their init.
    A stack of such convs starts close to the identity, so signals and gradients pass even when deep."""
    k, _, c_in, c_out = conv.weight.shape
    m = min(c_in, c_out)
    w = to_numpy(conv.weight.data).copy()
    w[:, :, :, :m] = 0.0
    w[k // 2, k // 2, np.arange(m), np.arange(m)] = scale
    conv.weight.data = to_backend(w.astype(conv.weight.dtype), backend_of(conv.weight.data))  # stays where it was
    return conv


def better_net(whitening=None, widths=(64, 256, 256), num_classes: int = 10, seed: int = 0,
               bn_momentum: float = 0.4, dirac: bool = True, train_whitening: bool = False,
               logit_scale: float = 1 / 9) -> nn.Sequential:
    """P3 part 3: a small, fast-training net in the style of the fastest known CIFAR-10 recipes.

    whiten: 2x2 conv 3 -> 24, weights fixed to patch_whitening_filters(training images) (not trained;
            its bias trains), GELU                                  32x32 -> 31x31
    block i (widths 64, 256, 256): conv 3x3 (Dirac init, no bias) -> max pool 2 -> batch norm (scale
            frozen at 1, shift trained) -> GELU -> conv 3x3 -> batch norm -> GELU   31 -> 15 -> 7 -> 3
    head:   max pool 3 (3x3 -> 1x1) -> flatten -> linear 256 -> 10 (no bias, zero init) -> x 1/9
    Why the fixed 1/9 on the logits: the max-pooled features are O(1) in each of 256 channels, so at the
    recipe's large learning rate one SGD step on the head alone made logits of size ~10 and the loss
    diverged (measured: lr 0.1 and 0.4 both blew up without it); scaling the output by 1/9 makes the
    head's effective learning rate 81x smaller while the body keeps the large one.
    The switches dirac, train_whitening (He-init first layer, trained) and logit_scale exist for the
    ablation (problems/p3_better_ablation.py); the defaults are the recipe.
    """
    r = _rngs(seed, 2 + 2 * len(widths))
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
                   (f"block{i}_bn1", nn.BatchNorm2d(w, momentum=bn_momentum, train_scale=False)),
                   (f"block{i}_act1", nn.GELU()), (f"block{i}_conv2", conv2),
                   (f"block{i}_bn2", nn.BatchNorm2d(w, momentum=bn_momentum, train_scale=False)),
                   (f"block{i}_act2", nn.GELU())]
        c_in = w
    fc = nn.Linear(c_in, num_classes, bias=False, rng=r[1])
    fc.weight.data[...] = 0.0  # zero-init head: uniform predictions at the start; max-pooled features are large
    layers += [("head_pool", nn.MaxPool2d(3, 3)), ("flatten", nn.Flatten()), ("fc", fc),
               ("logit_scale", nn.Scale(logit_scale))]
    return nn.Sequential(*layers)


def layer_table(model: nn.Sequential, input_shape=(32, 32, 3)) -> list[dict]:
    """One row per layer of a Sequential: output shape (for one image, NHWC), trained parameters, fixed
    (frozen) weights, and multiply-adds x 2 (FLOPs) of its convolution or matrix product for one image.
    Elementwise layers (activations, batch norm, pooling) are counted as 0 FLOPs: their cost is memory
    traffic, not arithmetic. Runs one forward pass on a zero image in eval mode.
    """
    from .autograd import Tensor, no_grad
    was_training = model.training
    model.eval()
    rows, x = [], Tensor(np.zeros((1,) + tuple(input_shape), dtype=np.float32))
    try:
        with no_grad():
            for name, layer in model.named_children():
                x = layer(x)
                flops = 0
                if isinstance(layer, nn.Conv2d):
                    kh, kw, c_in, c_out = layer.weight.shape
                    flops = 2 * x.shape[1] * x.shape[2] * kh * kw * c_in * c_out
                elif isinstance(layer, nn.Linear):
                    flops = 2 * layer.weight.shape[0] * layer.weight.shape[1]
                params = list(layer.parameters())
                trained = sum(int(p.data.size) for p in params)
                weight = getattr(layer, "weight", None) if isinstance(layer, (nn.Conv2d, nn.Linear)) else None
                frozen = weight is not None and not any(weight is p for p in params)  # nn.freeze: a plain array
                fixed = int(np.size(weight.data if isinstance(weight, Tensor) else weight)) if frozen else 0
                rows.append({"layer": name, "type": type(layer).__name__, "output_shape": list(x.shape[1:]),
                             "parameters": trained, "fixed_weights": fixed, "flops": int(flops)})
    finally:
        model.train(was_training)
    return rows
