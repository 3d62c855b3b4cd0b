"""Vectorised image augmentation and batching for NHWC batches, on NumPy or CuPy arrays unchanged.

All randomness is drawn on the host from a seeded `numpy.random.Generator`, never from the array
library: a NumPy run and a CuPy run with the same seed then see the same crops, flips and batches.
No Python loop over images: per-image crop offsets become one gather with computed indices.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module


def _index_to(xp, idx: np.ndarray):
    """Host index array -> an index array of the array library `xp` (a copy to the GPU for CuPy)."""
    return idx if xp is np else xp.asarray(idx)


def random_crop(x, padding: int, rng: np.random.Generator, mode: str = "zero", return_offsets: bool = False):
    """Pad each image by `padding` pixels on every side, then cut a random HxW window, each image its own.

    x: (N, H, W, C) any dtype. mode: 'zero' (constant 0; after `normalize` 0 is the mean colour) or
    'reflect' (mirror without repeating the edge pixel). With offsets (dy, dx) in [0, 2p]^2 drawn per image:
        out[n, i, j, :] = padded[n, i + dy[n], j + dx[n], :]
    Returns (N, H, W, C) of x's dtype and library; with return_offsets also the host (N, 2) int offsets.
    """
    xp = get_array_module(x)
    n, h, w, c = x.shape
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if mode not in ("zero", "reflect"):
        raise ValueError(f"mode must be 'zero' or 'reflect', got {mode!r}")
    if mode == "reflect" and padding >= min(h, w):
        raise ValueError(f"reflect padding {padding} needs images larger than it, got {h}x{w}")
    offsets = rng.integers(0, 2 * padding + 1, size=(n, 2))
    if padding == 0:
        out = x.copy()
        return (out, offsets) if return_offsets else out
    pad_width = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    padded = xp.pad(x, pad_width, mode="constant" if mode == "zero" else "reflect")
    hp, wp = h + 2 * padding, w + 2 * padding
    # Flat row index into padded viewed as (N*Hp*Wp, C): one gather copies all N windows at once.
    rows = offsets[:, 0, None] + np.arange(h)                       # (N, H)
    cols = offsets[:, 1, None] + np.arange(w)                       # (N, W)
    flat = (np.arange(n)[:, None, None] * hp + rows[:, :, None]) * wp + cols[:, None, :]  # (N, H, W)
    out = xp.take(padded.reshape(n * hp * wp, c), _index_to(xp, flat.reshape(-1)), axis=0)
    out = out.reshape(n, h, w, c)
    return (out, offsets) if return_offsets else out


def random_flip(x, rng: np.random.Generator, p: float = 0.5, return_mask: bool = False):
    """Mirror each image left-right with probability p: out[n, i, j] = x[n, i, W-1-j] where flipped.

    x: (N, H, W, C). Returns a new array (x is not modified); with return_mask also the host bool (N,) mask.
    """
    xp = get_array_module(x)
    mask = rng.random(x.shape[0]) < p
    out = x.copy()
    idx = np.flatnonzero(mask)
    if idx.size:
        gidx = _index_to(xp, idx)
        out[gidx] = x[gidx, :, ::-1]
    return (out, mask) if return_mask else out


def cutout(x, size: int, rng: np.random.Generator, fill=0, return_corners: bool = False):
    """Blank one size x size square in each image (Cutout, DeVries & Taylor 2017), each image its own.

    x: (N, H, W, C). The square's top-left corner (cy, cx) is uniform over the positions that keep the square
    inside the image, as the airbench recipes draw it:
        out[n, i, j, :] = fill   where cy[n] <= i < cy[n] + size and cx[n] <= j < cx[n] + size
        out[n, i, j, :] = x[n, i, j, :]   elsewhere
    fill: a scalar or a per-channel (C,) value (before normalisation, the mean colour makes the square 0 after
    it). Returns a new array of x's dtype and library; with return_corners also the host (N, 2) corners.
    """
    xp = get_array_module(x)
    n, h, w, c = x.shape
    if not 0 < size <= min(h, w):
        raise ValueError(f"cutout size must be in 1..{min(h, w)} for {h}x{w} images, got {size}")
    corners = np.stack([rng.integers(0, h - size + 1, size=n), rng.integers(0, w - size + 1, size=n)], axis=1)
    # Two 1-D interval masks per image, combined by broadcasting: one (N, H, W) mask, no loop over images.
    in_rows = (np.arange(h) >= corners[:, :1]) & (np.arange(h) < corners[:, :1] + size)     # (N, H)
    in_cols = (np.arange(w) >= corners[:, 1:]) & (np.arange(w) < corners[:, 1:] + size)     # (N, W)
    mask = _index_to(xp, (in_rows[:, :, None] & in_cols[:, None, :])[..., None])            # (N, H, W, 1)
    out = xp.where(mask, xp.asarray(np.asarray(fill), dtype=x.dtype), x)
    return (out, corners) if return_corners else out


def augment_batch(x, rng: np.random.Generator, padding: int = 4, flip: bool = True, mode: str = "zero"):
    """The usual CIFAR training augmentation: random crop with `padding`, then random horizontal flip."""
    out = random_crop(x, padding, rng, mode=mode) if padding else x
    return random_flip(out, rng) if flip else out


def channel_stats(train_uint8, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 NHWC images on the [0, 1] scale (x / 255).

    mean_c = E[x_c], std_c = sqrt(E[x_c^2] - mean_c^2) over all images and pixels, summed in float64
    in chunks of images so 50,000 images never need a float64 copy (1.2 GB). Returns host float64 (C,).
    """
    xp = get_array_module(train_uint8)
    c = train_uint8.shape[-1]
    total = xp.zeros(c, dtype=xp.float64)
    total_sq = xp.zeros(c, dtype=xp.float64)
    for start in range(0, train_uint8.shape[0], chunk):
        part = train_uint8[start:start + chunk].reshape(-1, c).astype(xp.float64) / 255.0
        total += part.sum(axis=0)
        total_sq += (part * part).sum(axis=0)
    count = train_uint8.size // c
    mean = total / count
    var = xp.maximum(total_sq / count - mean * mean, 0.0)
    std = xp.sqrt(var)
    if xp is not np:
        mean, std = xp.asnumpy(mean), xp.asnumpy(std)
    return mean, std


def normalize(x_uint8, mean, std, dtype=np.float32):
    """(x / 255 - mean) / std per channel, as `dtype`; x uint8 (..., C), mean/std (C,) on the [0, 1] scale.

    Computed as x * (1 / (255 std)) + (-mean / std): one multiply-add over the batch.
    """
    xp = get_array_module(x_uint8)
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    if np.any(std <= 0):
        raise ValueError(f"std must be > 0 per channel, got {std}")
    scale = xp.asarray((1.0 / (255.0 * std)).astype(dtype))
    shift = xp.asarray((-mean / std).astype(dtype))
    return x_uint8.astype(dtype) * scale + shift


def iterate_minibatches(n: int, batch_size: int, rng: np.random.Generator | None = None,
                        shuffle: bool = True, drop_last: bool = False):
    """Yield host int64 index arrays covering range(n) in batches of `batch_size`.

    shuffle: a fresh permutation from `rng` (required then); drop_last: skip a final short batch
    (keeps batch-norm statistics and img/s measurements on full batches).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shuffle:
        if rng is None:
            raise ValueError("shuffle=True needs a numpy Generator rng")
        order = rng.permutation(n)
    else:
        order = np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def alternating_flip(x, indices, epoch: int, n_total: int, seed: int = 0):
    """Deterministic flips that alternate between epochs: image i is mirrored in even epochs if its
    fixed random bit is 1, and in odd epochs if it is 0. Every image is seen both ways every two epochs,
    with less repetition than independent coin flips give.

    x: (N, H, W, C) batch; indices: the dataset indices of its images (host ints); n_total: dataset size.
    """
    xp = get_array_module(x)
    bits = (np.random.default_rng(seed).random(n_total) < 0.5)[indices]
    mask = bits if epoch % 2 == 0 else ~bits
    out = x.copy()
    idx = np.flatnonzero(mask)
    if idx.size:
        sel = _index_to(xp, idx)
        out[sel] = x[sel, :, ::-1]
    return out


def mirror(x):
    """The batch mirrored left-right, out[n, i, j] = x[n, i, W-1-j] (a view, no copy): a test-time view."""
    return x[:, :, ::-1]


def shift(x, dy: int, dx: int):
    """The batch moved by dy rows and dx columns (positive: down and right), edges reflected: a test-time
    view. out[n, i, j] = x[n, i - dy, j - dx], with indices outside the image mirrored back in."""
    xp = get_array_module(x)
    p = max(abs(dy), abs(dx))
    if p == 0:
        return x
    h, w = x.shape[1:3]
    padded = xp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    return padded[:, p - dy:p - dy + h, p - dx:p - dx + w]
