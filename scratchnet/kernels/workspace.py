"""The kernels' workspace: window geometry, reused scratch buffers and the split of a batch into chunks.

conv (im2col), winograd and pool sit on this module and on nothing of each other's:
    output_size, windows      the geometry of sliding windows (a strided view, no copy)
    pad_hw, place             zero padding, cropping and dilation of NHWC arrays
    scratch                   reused per-thread buffers, so a chunk's copies land in cache-warm memory
    image_chunks              which images each chunk of a batch holds, shared out between CPU threads
"""
from __future__ import annotations

import os
import threading

from ..backend import get_array_module, on_cpu, strided_view
from ..parallel import num_threads, split


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Ho = floor((H + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def windows(x_padded, kh: int, kw: int, stride: int):
    """A strided view (no copy) of every kh x kw window: shape (N, Ho, Wo, kh, kw, C)."""
    n, hp, wp, c = x_padded.shape
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    sn, sh, sw, sc = x_padded.strides
    return strided_view(x_padded, (n, ho, wo, kh, kw, c), (sn, stride * sh, stride * sw, sh, sw, sc))


def pad_hw(x, before: int, after: int | None = None):
    """Zero-pad (or, for negative amounts, crop) the H and W axes of an NHWC array."""
    after = before if after is None else after
    if before == 0 and after == 0:
        return x
    xp = get_array_module(x)
    if before >= 0 and after >= 0:
        return xp.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
    n, h, width, c = x.shape  # at least one side crops: crop first, then pad what remains positive
    x = x[:, max(-before, 0):h - max(-after, 0), max(-before, 0):width - max(-after, 0), :]
    return pad_hw(x, max(before, 0), max(after, 0))


def place(buf, src, top: int, left: int, stride: int):
    """buf[:, top + s*i, left + s*j] = src[:, i, j] wherever that lands inside buf; other entries untouched.

    One assignment does zero padding (top/left > 0), cropping (< 0) and dilation (s > 1). The caller keeps
    one buffer per (shape, top, left, stride), so the untouched entries are always the zeros it began with.
    """
    def span(offset, n_src, n_buf):
        first = max(0, -(offset // stride))            # first i with offset + s*i >= 0
        last = min(n_src - 1, (n_buf - 1 - offset) // stride)
        return first, last

    (i0, i1), (j0, j1) = span(top, src.shape[1], buf.shape[1]), span(left, src.shape[2], buf.shape[2])
    if i1 >= i0 and j1 >= j0:
        buf[:, top + stride * i0:top + stride * i1 + 1:stride, left + stride * j0:left + stride * j1 + 1:stride] = \
            src[:, i0:i1 + 1, j0:j1 + 1]


# Reused scratch arrays (CPU only: cupy's memory pool already recycles), keyed by thread, purpose, shape,
# dtype and zero pattern. Past MAX_BUFFERS of them (e.g. many batch sizes over a long session) start afresh.
_buffers: dict = {}
MAX_BUFFERS = 256


def scratch(xp, key, shape, dtype, zeroed: bool = True):
    """A reused zero-initialised buffer (numpy) of the calling thread; a fresh array on a GPU.

    Keyed by thread, so that threads running kernels at the same time (our workers, or a user's own
    threads) never share a buffer. key names the purpose and must include whatever makes the buffer's
    zero entries stay zero between uses. zeroed=False: the caller overwrites all of it (on a GPU that
    saves a memset of the whole buffer; on the CPU the reused buffer is as it was left).
    """
    if not on_cpu(xp):
        return xp.zeros(shape, dtype=dtype) if zeroed else xp.empty(shape, dtype=dtype)
    full_key = (threading.get_ident(), key, tuple(shape), xp.dtype(dtype).str)
    buf = _buffers.get(full_key)
    if buf is None:
        if len(_buffers) >= MAX_BUFFERS:
            _buffers.clear()  # callers hold their own references, so buffers in use stay valid
        buf = _buffers[full_key] = xp.zeros(shape, dtype=dtype)
    return buf


# Why chunks: a whole-batch im2col matrix (or Winograd's transformed tiles) runs to tens of MB per layer
# (GBs at large batches); written into fresh memory it costs page faults and a trip through DRAM between
# the copy and the GEMM. A chunk of a few MB lands in a reused buffer and is read back while still in cache.
# How big: too small and the GEMMs get short (Winograd's 36 GEMMs have a chunk's tiles as rows) and the
# per-chunk Python calls add up; too big and the chunk leaves the core's cache. The budget is a multiple of
# the per-core L2 cache (read from Linux's sysfs; 2 MB where it cannot be read), between MIN and MAX.
CHUNK_L2_MULTIPLE = 3
MIN_CHUNK_BYTES, MAX_CHUNK_BYTES, FALLBACK_CHUNK_BYTES = 1 << 20, 8 << 20, 2 << 20


def l2_cache_bytes(cache_dir: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """The first CPU's level-2 (data or unified) cache in bytes, from sysfs; None where it is not readable."""
    try:
        for index in sorted(os.listdir(cache_dir)):
            path = os.path.join(cache_dir, index)
            with open(os.path.join(path, "level")) as f:
                level = f.read().strip()
            with open(os.path.join(path, "type")) as f:
                kind = f.read().strip()
            if level == "2" and kind in ("Unified", "Data"):
                with open(os.path.join(path, "size")) as f:
                    size = f.read().strip()
                units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
                return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    except (OSError, ValueError):
        return None
    return None


def chunk_budget(l2_bytes: int | None) -> int:
    """CHUNK_L2_MULTIPLE x the L2 cache, clamped to [MIN_CHUNK_BYTES, MAX_CHUNK_BYTES]; the fallback if unknown."""
    if not l2_bytes:
        return FALLBACK_CHUNK_BYTES
    return min(MAX_CHUNK_BYTES, max(MIN_CHUNK_BYTES, CHUNK_L2_MULTIPLE * l2_bytes))


CHUNK_BYTES = chunk_budget(l2_cache_bytes())  # the default budget of one chunk; conv passes its own (conv.CHUNK_BYTES)


def image_chunks(xp, n: int, bytes_per_image: int, chunk_bytes: int | None = None):
    """(lo, hi) image ranges of about chunk_bytes (default CHUNK_BYTES) of work each, at least one image each.

    A batch that fits in one chunk is one chunk; so is any batch on a GPU (its memory pool and bandwidth
    make chunking pointless). Otherwise, on the CPU, the number of chunks is a multiple of the thread count,
    so that every thread gets equal work.
    """
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    if not on_cpu(xp) or n * bytes_per_image <= chunk_bytes:
        return [(0, n)]
    threads = num_threads()
    per_round = max(1, threads * chunk_bytes // max(1, bytes_per_image))  # images per round of T chunks
    rounds = -(-n // per_round)
    return split(n, rounds * threads)
