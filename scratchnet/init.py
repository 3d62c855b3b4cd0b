"""Initialisers beyond the layers' own He-normal default: per-layer seeds, Dirac (identity) convolutions,
and fixed patch-whitening filters computed from training images.
"""
from __future__ import annotations

import numpy as np

from .backend import backend_of, to_backend, to_numpy


def seeded_rngs(seed, n: int) -> list[np.random.Generator]:
    """n independent generators from one seed, so each layer's init is reproducible on its own."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def patch_whitening_filters(images, kernel: int = 2, eps: float = 5e-4, max_patches: int | None = 200_000,
                            seed: int = 0, center: bool = True):
    """Conv filters that whiten kernel x kernel patches: HWIO (k, k, C, 2*k*k*C).

    Collect patches p (k*k*C values) from training images (N, H, W, C float), form their covariance
    S = V diag(lam) V^T, and use each eigenvector scaled by 1/sqrt(lam + eps) as a filter: the outputs
    v_i . p / sqrt(lam_i) are uncorrelated with unit variance (the covariance of the filtered patches
    is the identity, up to eps). Each filter is also used negated, so a ReLU-like activation after it
    keeps both signs of every component.
    max_patches: at most this many patches, drawn at random (`seed`) when there are more; None: every
    patch (accumulated over chunks of images, so memory stays small). center=False uses the patches'
    second moment E[p p^T] instead of their covariance (as the airbench recipe does; on inputs normalised
    to zero mean per channel the two differ little).
    """
    x = to_numpy(images).astype(np.float64, copy=False)
    if max_patches is None:
        cov = _patch_second_moment(x, kernel, center)
    else:
        from .kernels.workspace import windows
        n, h, w, c = x.shape
        win = windows(x, kernel, kernel, 1)                       # (N, H-k+1, W-k+1, k, k, C)
        patches = win.reshape(-1, kernel * kernel * c)
        if len(patches) > max_patches:
            patches = patches[np.random.default_rng(seed).choice(len(patches), max_patches, replace=False)]
        if center:
            patches = patches - patches.mean(axis=0)
        cov = patches.T @ patches / len(patches)
    c = x.shape[-1]
    lam, vecs = np.linalg.eigh(cov)                           # ascending eigenvalues
    lam, vecs = lam[::-1], vecs[:, ::-1]                      # strongest component first
    filters = vecs / np.sqrt(lam + eps)                       # (k*k*C, k*k*C), one filter per column
    filters = np.concatenate([filters, -filters], axis=1)
    return filters.reshape(kernel, kernel, c, -1)


def _patch_second_moment(x, kernel: int, center: bool, chunk: int = 256):
    """The covariance (center) or second moment of all kernel x kernel patches of x, over image chunks."""
    from .kernels.workspace import windows
    d = kernel * kernel * x.shape[-1]
    count, total, outer = 0, np.zeros(d), np.zeros((d, d))
    for start in range(0, len(x), chunk):
        p = windows(x[start:start + chunk], kernel, kernel, 1).reshape(-1, d)
        count += len(p)
        total += p.sum(axis=0)
        outer += p.T @ p
    if center:
        mean = total / count
        return outer / count - np.outer(mean, mean)
    return outer / count


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
